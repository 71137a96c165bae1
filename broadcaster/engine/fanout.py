"""How long a fan-out takes under each endpoint's rate limit, for `plan`.

A group-bot channel sends each group's message (every part of it) to that group's
own bot, which takes so many messages a minute; rules firing at the same time share
the bots. For every firing time and rate-limited, target-addressed channel this
counts the groups and posts (parts included, as the plugin splits them) and
estimates the time to the last post: the longest any one bot needs under its limit
(its posts from every channel at that time counted together), or the channel's
posts over its concurrency at an assumed answer time, whichever is longer.

Bots are told apart by their address as configured (the environment variable, or
the text), so planning needs no secret and touches no network.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from broadcaster.channel import Channel, Message
from broadcaster.engine.channels import ChannelProfile
from broadcaster.model.campaign import Campaign
from broadcaster.model.plan import PlanItem, Planner
from broadcaster.vocab import Addressing, MessageKind, RateLimit

__all__ = ["ANSWER_SECONDS", "FanOut", "FanOutPlanner", "limit_seconds"]

ANSWER_SECONDS = 0.2  # assumed time a provider takes to answer one post


def limit_seconds(posts: int, limit: RateLimit) -> float:
    """Seconds from the first to the last of `posts` sends under a sliding-window limit."""
    if posts <= 0:
        return 0.0
    return ((posts - 1) // limit.count) * limit.per_seconds


@dataclass
class FanOut:
    """One channel's fan-out at one firing time."""

    at: dt.datetime
    channel_id: str
    limit: RateLimit
    groups: int = 0  # distinct endpoints (bots)
    posts: int = 0  # requests, parts included
    busiest: int = 0  # posts to the busiest bot, from every channel at this time
    seconds: float = 0.0  # estimated time to the last post

    def label(self) -> str:
        return duration_label(self.seconds)


@dataclass
class _Moment:
    posts: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    by_channel: dict[str, dict[tuple[str, str], int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )


class FanOutPlanner:
    """Collects plan items (`add`), then answers the fan-outs (`results`)."""

    def __init__(
        self,
        campaign: Campaign,
        profiles: Mapping[str, ChannelProfile],
        planner: Planner,
        channels: Mapping[str, Channel],
    ):
        self.campaign = campaign
        self.planner = planner
        self.profiles = {
            cid: p
            for cid, p in profiles.items()
            if p.capabilities.rate_limit is not None
            and p.kind is MessageKind.BOT
            and p.capabilities.requires_address
            and p.addressing is Addressing.TARGET
        }
        self.channels = channels
        self._moments: dict[dt.datetime, _Moment] = defaultdict(_Moment)
        self._parts: dict[tuple[str, str], int] = {}

    def wanted(self, channel_id: str) -> bool:
        return channel_id in self.profiles

    def add(self, item: PlanItem) -> None:
        """Count one plan item (ignored unless its channel is a rate-limited bot channel)."""
        profile = self.profiles.get(item.channel_id)
        if profile is None or item.template is None:
            return
        moment = self._moments[item.occurrence.at]
        bot = self._bot(profile, item.target_id)
        posts = self._pieces(profile, item)
        moment.posts[bot] += posts
        moment.by_channel[item.channel_id][bot] += posts

    def _bot(self, profile: ChannelProfile, target_id: str) -> tuple[str, str]:
        spec = dict(self.campaign.targets[target_id].address).get(profile.id)
        if spec is None:
            return (profile.type, f"target:{target_id}")
        key = next(((text, env) for name, text, env in spec.parts if name == "key"), None)
        if key is None:
            return (profile.type, f"target:{target_id}")
        text, env = key
        return (profile.type, f"env:{env}" if env is not None else f"text:{text}")

    def _pieces(self, profile: ChannelProfile, item: PlanItem) -> int:
        assert item.template is not None
        text = self.planner.text(
            item.template,
            item.occurrence,
            item.channel_id,
            item.target_id,
            item.theme,
            item.occasion,
            item.topic,
        )
        cache = (item.channel_id, text)
        found = self._parts.get(cache)
        if found is None:
            message = Message(profile.kind, text, item.template, "")
            try:
                prepared = self.channels[item.channel_id].prepare(message, _NoArtefacts())
                found = len(prepared.pieces)
            except Exception:  # a message the plugin cannot split: counted whole
                found = 1
            self._parts[cache] = found
        return found * max(1, item.recipients)

    def results(self) -> list[FanOut]:
        out = []
        for at in sorted(self._moments):
            moment = self._moments[at]
            for cid in sorted(moment.by_channel):
                profile = self.profiles[cid]
                limit = profile.capabilities.rate_limit
                assert limit is not None
                bots = moment.by_channel[cid]
                busiest = max(moment.posts[b] for b in bots)
                posts = sum(bots.values())
                lanes = max(1, profile.capabilities.concurrency)
                seconds = max(
                    max(limit_seconds(moment.posts[b], limit) for b in bots),
                    math.ceil(posts / lanes) * ANSWER_SECONDS,
                )
                out.append(FanOut(at, cid, limit, len(bots), posts, busiest, seconds))
        return out


class _NoArtefacts:
    """Planning makes no files: a plugin asking for one counts its message whole."""

    def make(self, cache_key: str, name: str, media_type: str, build: Callable[[], bytes]) -> Any:
        raise RuntimeError("plan makes no artefacts")


def duration_label(seconds: float) -> str:
    """A duration as people read it: 40 秒 40 s, 3 分 3 min, 1 小时 5 分 1 h 5 min."""
    if seconds < 60:
        return f"{math.ceil(seconds)} 秒 {math.ceil(seconds)} s"
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"{minutes} 分 {minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} 小时 {rest} 分 {hours} h {rest} min"
