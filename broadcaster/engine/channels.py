"""Configured channels resolved against their plugins, and the checks only plugins can make.

The model knows a channel instance as the config wrote it (`ChannelSpec`); here it
meets its plugin: settings validated, capabilities merged with the config's own
(quiet hours, length, limits), ready or disabled with the reason. The checks run at
`validate` over plugin classes with no I/O (an offline session, a fixed clock): the
plugin's message rules over every rendered variant, a channel's schedule over a
period, quiet hours against every rule time, addresses of target-addressed channels.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from broadcaster.channel import (
    BaseChannel,
    Capabilities,
    Channel,
    ChannelContext,
    ChannelSettings,
    Message,
    Recipient,
    ScheduledSend,
)
from broadcaster.engine.registry import Registry
from broadcaster.errors import ChannelError, ConfigIssue
from broadcaster.model.campaign import Campaign, ChannelSpec
from broadcaster.model.config.explain import did_you_mean, explain
from broadcaster.model.config.source import Document, Path_
from broadcaster.model.plan import Planner
from broadcaster.vocab import Addressing

__all__ = [
    "ChannelProfile",
    "OfflineHTTP",
    "check_campaign",
    "resolve_channels",
]

SCHEDULE_CHECK_DAYS = 366  # how far ahead `validate` runs a channel's schedule check


class OfflineHTTP:
    """The session plugins get while being checked: configurable, but it never sends."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.params: dict[str, str] = {}
        self.proxies: dict[str, str] = {}
        self.auth: Any = None
        self.verify: Any = True
        self.cert: Any = None

    def mount(self, prefix: str, adapter: Any) -> None:
        return None

    def close(self) -> None:
        return None

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise ChannelError("检查时不联网 no network during checks: the plugin tried to send")

    request = get = post = put = patch = delete = head = options = send = _refuse


@dataclass(frozen=True)
class ChannelProfile:
    """A configured channel with its plugin: validated settings, effective capabilities."""

    spec: ChannelSpec
    plugin: type[Channel]
    settings: ChannelSettings
    capabilities: Capabilities
    enabled: bool
    disabled_reason: str | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def type(self) -> str:
        return self.spec.type

    @property
    def kind(self) -> Any:
        return self.spec.kind

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def addressing(self) -> Addressing:
        return self.spec.addressing

    def secrets(self) -> list[str]:
        """The secret values of its settings, for the log to scrub wherever they appear."""
        return [s.value for _, s in self.settings.secret_fields() if s.value]

    def open(self, context: ChannelContext) -> Channel:
        return self.plugin(self.settings, context)

    def open_offline(self, base_dir: Path, state_dir: Path, now: dt.datetime) -> Channel:
        """An instance for checks: no network, a fixed clock."""
        context = ChannelContext(
            self.id,
            OfflineHTTP(),  # type: ignore[arg-type]
            lambda: now,
            state_dir / "channels" / self.id,
            base_dir,
        )
        return self.open(context)

    def message_problems(self, channel: Channel, message: Message) -> list[str]:
        """The length budget, then the plugin's own rules (billing, charset, keywords)."""
        problems = []
        limit = self.capabilities.max_length
        if limit is not None and len(message.text) > limit:
            problems.append(
                f"超出长度预算 {len(message.text)} characters, over channel '{self.id}'"
                f" max_length {limit}"
            )
        try:
            problems += channel.check_message(message)
        except Exception as exc:  # a plugin bug is reported, not raised
            problems.append(f"渠道检查失败 channel check failed: {exc!r}")
        return problems


def _merged(caps: Capabilities, spec: ChannelSpec) -> Capabilities:
    """The plugin's capabilities with what the config sets on the instance."""
    changes: dict[str, Any] = {}
    if spec.quiet_hours is not None:
        changes["quiet_hours"] = spec.quiet_hours
    if spec.max_length is not None:
        changes["max_length"] = spec.max_length
    if spec.concurrency is not None:
        changes["concurrency"] = spec.concurrency
    if spec.rate_limit is not None:
        changes["rate_limit"] = spec.rate_limit
    return dataclasses.replace(caps, **changes) if changes else caps


def resolve_channels(
    campaign: Campaign,
    *,
    registry: Registry,
    environ: Mapping[str, str],
    state_dir: Path,
    now: dt.datetime,
) -> tuple[dict[str, ChannelProfile], list[ConfigIssue]]:
    """Every configured channel against its plugin; the issues found on the way."""
    doc = campaign.doc
    issues: list[ConfigIssue] = []
    out: dict[str, ChannelProfile] = {}

    def error(path: Path_, message: str, hint: str | None = None) -> None:
        issues.append(doc.issue(path, message, hint=hint))

    for cid, spec in campaign.channels.items():
        path: Path_ = ("channels", cid)
        info = registry.get(spec.type)
        if info is None or info.cls is None:
            if info is not None and info.error:
                error(
                    (*path, "type"),
                    f"渠道插件不可用 channel plugin '{spec.type}' is unavailable: {info.error}",
                )
            else:
                names = registry.names()
                error(
                    (*path, "type"),
                    f"未知的渠道类型 unknown channel type: expected one of {', '.join(names)};"
                    f" got '{spec.type}'",
                    did_you_mean(spec.type, names),
                )
            continue
        plugin = info.cls
        try:
            settings = plugin.Settings.model_validate(
                dict(spec.settings), context={"environ": environ}
            )
        except ValidationError as exc:
            issues += explain(
                exc, doc, plugin.Settings, prefix=(*path, "settings"), data=dict(spec.settings)
            )
            continue
        profile = ChannelProfile(spec, plugin, settings, Capabilities(frozenset()), True)
        try:
            caps = _merged(
                profile.open_offline(campaign.base_dir, state_dir, now).capabilities, spec
            )
        except Exception as exc:  # a plugin bug must not take the loader down
            error(path, f"渠道插件初始化失败 plugin '{spec.type}' failed to start: {exc!r}")
            continue
        if spec.kind not in caps.kinds:
            kinds = ", ".join(sorted(k.value for k in caps.kinds))
            error(
                (*path, "kind"),
                f"渠道不支持该消息类型 '{spec.type}' sends {kinds}; got '{spec.kind.value}'",
            )
            continue
        if caps.addressing is not None and caps.addressing is not spec.addressing:
            error(
                (*path, "addressing"),
                f"发送对象不符 '{spec.type}' sends to "
                + ("people (contacts)" if caps.addressing is Addressing.CONTACTS else "targets")
                + f"; write addressing: {caps.addressing.value}",
            )
            continue
        enabled, reason = True, None
        missing = [(name, s) for name, s in settings.secret_fields() if s.value is None]
        missing_env = [s.env for _, s in missing] + _missing_address_env(
            campaign, cid, caps, environ
        )
        if spec.enabled is False:
            enabled, reason = False, "配置中停用 disabled in the config (enabled: false)"
        elif missing_env:
            if spec.enabled == "auto":
                envs = ", ".join(dict.fromkeys(missing_env))
                enabled, reason = False, f"缺少环境变量 environment variable {envs} not set"
            else:
                for name, secret in missing:
                    error(
                        (*path, "settings", *name.split(".")),
                        f"缺少环境变量 environment variable {secret.env} is not set",
                        "set it, or write enabled: auto to run without this channel",
                    )
                _address_env_errors(campaign, cid, caps, environ, issues)
                continue
        out[cid] = dataclasses.replace(
            profile, capabilities=caps, enabled=enabled, disabled_reason=reason
        )
    return out, issues


def _users(campaign: Campaign, channel_id: str) -> Iterator[str]:
    """Targets some enabled rule sends to through `channel_id` (relay hops included)."""
    from broadcaster.model.relay import plan_hops

    seen: set[str] = set()
    for spec in campaign.rules:
        if not spec.rule.enabled:
            continue
        if channel_id in spec.rule.channels:
            for tid in spec.targets:
                if tid not in seen:
                    seen.add(tid)
                    yield tid
        relay = spec.rule.relay
        if relay is not None and relay.via == channel_id:
            for root in spec.targets:
                for hop in plan_hops(campaign.targets, root, relay)[1]:
                    if hop.target_id not in seen:
                        seen.add(hop.target_id)
                        yield hop.target_id


def _missing_address_env(
    campaign: Campaign, channel_id: str, caps: Capabilities, environ: Mapping[str, str]
) -> list[str]:
    if not caps.requires_address:
        return []
    missing: list[str] = []
    for tid in _users(campaign, channel_id):
        spec = dict(campaign.targets[tid].address).get(channel_id)
        if spec is not None:
            missing += [env for env in spec.env_names if env not in environ]
    return missing


def _target_paths(doc: Document) -> dict[str, Path_]:
    """Target id -> its key path in the config (for file and line), children included."""
    out: dict[str, Path_] = {}

    def walk(items: Any, path: Path_) -> None:
        for i, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict):
                here = (*path, i)
                out.setdefault(str(item.get("id")), here)
                walk(item.get("children"), (*here, "children"))

    walk(doc.data.get("targets"), ("targets",))
    return out


def _address_env_errors(
    campaign: Campaign,
    channel_id: str,
    caps: Capabilities,
    environ: Mapping[str, str],
    issues: list[ConfigIssue],
) -> None:
    if not caps.requires_address:
        return
    paths = _target_paths(campaign.doc)
    for tid in _users(campaign, channel_id):
        spec = dict(campaign.targets[tid].address).get(channel_id)
        for env in spec.env_names if spec else []:
            if env not in environ:
                issues.append(
                    campaign.doc.issue(
                        (*paths.get(tid, ("targets",)), "address", channel_id),
                        f"缺少环境变量 environment variable {env} is not set",
                        hint="set it, or write enabled: auto to run without this channel",
                    )
                )


def _notify_errors(
    campaign: Campaign, profiles: Mapping[str, ChannelProfile], issues: list[ConfigIssue]
) -> None:
    """A channel's `notify:` (a hand-off's link sent to its person) names a channel that
    sends to each target's own address, and every target it is used for has one there."""
    doc = campaign.doc
    paths = _target_paths(doc)
    for cid, profile in profiles.items():
        notify = getattr(profile.settings, "notify", None)
        if not isinstance(notify, str):
            continue
        where: Path_ = ("channels", cid, "settings", "notify")
        other = profiles.get(notify)
        if other is None or notify == cid:
            issues.append(
                doc.issue(
                    where,
                    f"未知的通知渠道 unknown channel '{notify}'; expected another of"
                    f" {', '.join(c for c in profiles if c != cid)}",
                    hint=did_you_mean(notify, [c for c in profiles if c != cid]),
                )
            )
            continue
        if other.addressing is Addressing.CONTACTS:
            issues.append(
                doc.issue(
                    where,
                    f"通知渠道须按对象发送 channel '{notify}' sends to contact lists; the link"
                    " must go to each target's responsible person: give it addressing: target"
                    " and an address on each target",
                )
            )
            continue
        if not other.capabilities.requires_address:
            continue
        for tid in _users(campaign, cid):
            if dict(campaign.targets[tid].address).get(notify) is None:
                issues.append(
                    doc.issue(
                        (*paths.get(tid, ("targets",)), "address"),
                        f"缺少地址 target '{tid}' has no address on channel '{notify}', which"
                        f" sends the hand-off link of channel '{cid}' to its person",
                    )
                )


def _relay_link_errors(
    campaign: Campaign, profiles: Mapping[str, ChannelProfile], issues: list[ConfigIssue]
) -> None:
    """A relay's hops must be due before the links of its channel expire (`link_hours`)."""
    for spec in campaign.rules:
        relay = spec.rule.relay
        profile = profiles.get(relay.via) if relay is not None else None
        hours = getattr(profile.settings, "link_hours", None) if profile is not None else None
        if relay is None or not isinstance(hours, int | float):
            continue
        minutes = 0
        for k, level in enumerate(relay.levels):
            minutes += level.minutes
            if minutes > hours * 60:
                issues.append(
                    campaign.doc.issue(
                        ("rules", spec.index, "relay", "levels", k, "within"),
                        f"期限晚于链接有效期 this level is due {minutes / 60:g} h after the push,"
                        f" but the links of channel '{relay.via}' expire after {hours:g} h"
                        " (link_hours)",
                    )
                )
                break


def check_campaign(
    campaign: Campaign,
    profiles: Mapping[str, ChannelProfile],
    *,
    base_dir: Path,
    state_dir: Path,
    now: dt.datetime,
    schedule_days: int = SCHEDULE_CHECK_DAYS,
) -> list[ConfigIssue]:
    """What only the plugins can tell: quiet hours, addresses, message rules, schedules."""
    issues: list[ConfigIssue] = []
    doc = campaign.doc
    opened: dict[str, Channel] = {}

    def channel(cid: str) -> Channel:
        if cid not in opened:
            opened[cid] = profiles[cid].open_offline(base_dir, state_dir, now)
        return opened[cid]

    _notify_errors(campaign, profiles, issues)
    _relay_link_errors(campaign, profiles, issues)
    for rule in campaign.rules:
        if not rule.rule.enabled:
            continue
        for cid in rule.rule.channels:
            profile = profiles.get(cid)
            if profile is None:
                continue
            quiet = profile.capabilities.quiet_hours
            for t in Planner.times(rule.rule.when) if quiet else ():
                if quiet is not None and quiet.contains(t):
                    at_index = next((k for k, a in enumerate(rule.rule.when.at) if a == t), None)
                    where: Path_ = (
                        ("rules", rule.index, "when", "at", at_index)
                        if at_index is not None
                        else ("rules", rule.index, "when", "repeat")
                    )
                    issues.append(
                        doc.issue(
                            where,
                            f"处于渠道免打扰时段 {t:%H:%M} is inside channel '{cid}'"
                            f" quiet hours {quiet}",
                        )
                    )
    paths = _target_paths(doc)
    for cid, profile in profiles.items():
        caps = profile.capabilities
        if not caps.requires_address or profile.addressing is Addressing.CONTACTS:
            continue
        for tid in _users(campaign, cid):
            spec = dict(campaign.targets[tid].address).get(cid)
            target_path = paths.get(tid, ("targets",))
            name = campaign.targets[tid].name
            if spec is None:
                issues.append(
                    doc.issue(
                        (*target_path, "address"),
                        f"缺少地址 target '{tid}' ({name}) has no address for channel '{cid}',"
                        f" which sends to each target's own address",
                    )
                )
            elif caps.secret_address and not spec.secret:
                issues.append(
                    doc.issue(
                        (*target_path, "address", cid),
                        f"地址须来自环境变量 the address of '{tid}' on channel '{cid}' is a"
                        " credential: write {env: NAME}, never the key itself",
                    )
                )
    for cid, profile in profiles.items():  # numbers a plugin cannot reach (a landline)
        check_recipients = getattr(profile.plugin, "check_recipients", None)
        if not profile.enabled or check_recipients is None:
            continue
        if profile.addressing is not Addressing.CONTACTS:
            continue
        for tid in _users(campaign, cid):
            target = campaign.targets[tid]
            people = [Recipient(tid, c.number, c.display) for c in target.contacts]
            for problem in channel(cid).check_recipients(people):  # type: ignore[attr-defined]
                issues.append(
                    doc.issue(
                        paths.get(tid, ("targets",)),
                        f"{problem} (channel '{cid}', target '{tid}' {target.name})",
                        severity="warning",
                    )
                )
    reported: set[tuple[str, str, str]] = set()
    for variant in campaign.variants:
        profile = profiles.get(variant.channel_id)
        if profile is None or not profile.enabled:
            continue
        message = Message(
            profile.kind,
            variant.text,
            variant.template,
            variant.template_sha,
            variant.theme,
            variant.topic,
            params=variant.params,
        )
        for problem in profile.message_problems(channel(variant.channel_id), message):
            key = (variant.template, variant.channel_id, problem)
            if key in reported:
                continue
            reported.add(key)
            issues.append(
                ConfigIssue(
                    variant.template_file,
                    1,
                    "",
                    f"{problem} (rule '{variant.rule_id}', target '{variant.target_id}')",
                )
            )
    issues += check_schedules(
        campaign, profiles, channel, now, now + dt.timedelta(days=schedule_days)
    )
    return issues


def check_schedules(
    campaign: Campaign,
    profiles: Mapping[str, ChannelProfile],
    channel: Callable[[str], Channel],
    start: dt.datetime,
    end: dt.datetime,
) -> list[ConfigIssue]:
    """Each channel's own check of its planned sends over [start, end) (screens, programmes)."""
    wanted = [
        cid
        for cid, p in profiles.items()
        if p.enabled and getattr(p.plugin, "check_schedule", None) is not BaseChannel.check_schedule
    ]
    if not wanted:
        return []
    planner = Planner(campaign)
    sends: dict[str, list[ScheduledSend]] = {cid: [] for cid in wanted}
    for item in planner.items(start, end, render=False):
        if item.channel_id not in sends or item.template is None:
            continue
        text, params = planner.text_and_params(
            item.template,
            item.occurrence,
            item.channel_id,
            item.target_id,
            item.theme,
            item.occasion,
            item.topic,
        )
        message = Message(
            profiles[item.channel_id].kind,
            text,
            item.template,
            campaign.renderer.sha(item.template),
            item.theme,
            item.topic,
            params=params,
        )
        target = campaign.targets[item.target_id]
        sends[item.channel_id].append(
            ScheduledSend(
                item.occurrence.at,
                item.occurrence.rule_id,
                target.id,
                target.name,
                message,
                target.screen,
            )
        )
    issues = []
    for cid, items in sends.items():
        try:
            problems = channel(cid).check_schedule(items)
        except Exception as exc:
            problems = [f"渠道检查失败 channel check failed: {exc!r}"]
        issues += [campaign.doc.issue(("channels", cid), p) for p in problems]
    return issues
