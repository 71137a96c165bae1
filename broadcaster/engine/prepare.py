"""From an occurrence to deliveries, and from logged keys back to sendable deliveries.

`Preparer` renders each plan item of an occurrence (text and parameters), lets the
channel prepare the message once per distinct text (split it into parts, make its
audio or image), resolves recipients (numbers from contact lists, a target's address
from the config or the environment), and keys every delivery: a keyed hash of
(campaign, occurrence, channel, target, recipient), so the same number on two lists
is two deliveries and nothing reveals the number.

`Resolver` turns the keys of a `SendTask` back into deliveries in any process: the
text and payload from the log, the address from the config by its keyed hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from broadcaster.channel import Artefact, Channel, Delivery, Message, Recipient
from broadcaster.engine.artefacts import FileArtefactStore
from broadcaster.engine.channels import ChannelProfile
from broadcaster.log import DeliveryLog, DeliveryRecord, DeliveryState
from broadcaster.model.campaign import Campaign, RuleSpec
from broadcaster.model.plan import Occurrence, Planner
from broadcaster.vocab import Addressing, MessageKind

__all__ = ["Prepared", "Preparer", "Resolver", "delivery_key"]

CONTENT_CACHE = 10_000  # texts and payloads a resolver keeps, by sha256

log = logging.getLogger("broadcaster.dispatch")


def delivery_key(
    secret: bytes, campaign: str, occurrence_id: str, channel_id: str, target_id: str, address: str
) -> str:
    """The idempotency key: keyed, so it reveals nothing about the address it covers."""
    data = f"{campaign}\x1f{occurrence_id}\x1f{channel_id}\x1f{target_id}\x1f{address}".encode()
    return hmac.new(secret, data, hashlib.sha256).hexdigest()[:32]


def endpoint_hash(endpoint: str) -> str:
    return hashlib.sha256(endpoint.encode("utf-8")).hexdigest()[:16]


def title_of(kind: MessageKind, text: str) -> str:
    if kind is MessageKind.BOT and text.startswith("#"):
        return text.splitlines()[0].lstrip("#").strip()
    return ""


@dataclass(frozen=True)
class Prepared:
    """One delivery ready to log and send; `problem` when the channel could not prepare it."""

    delivery: Delivery
    record: DeliveryRecord
    endpoint: str  # the real endpoint (may hold a key): never logged, only its hash
    problem: str | None = None


class Preparer:
    """Deliveries of occurrences for one campaign and its channels."""

    def __init__(
        self,
        campaign: Campaign,
        profiles: Mapping[str, ChannelProfile],
        log_store: DeliveryLog,
        *,
        hash_key: bytes,
        environ: Mapping[str, str],
        artefacts: FileArtefactStore,
        channel: Callable[[str], Channel],
    ):
        self.campaign = campaign
        self.profiles = profiles
        self.log = log_store
        self.hash_key = hash_key
        self.environ = environ
        self.artefacts = artefacts
        self.channel = channel
        self.planner = Planner(campaign)
        self._messages: dict[tuple[str, str, str], tuple[Message, str | None]] = {}
        self._lock = threading.Lock()

    def recipients(self, profile: ChannelProfile, target_id: str) -> list[Recipient]:
        """Who one target is on this channel: its people, or the target itself."""
        node = self.campaign.targets[target_id]
        if profile.addressing is Addressing.CONTACTS:
            return [Recipient(target_id, c.number, c.display) for c in node.contacts]
        spec = dict(node.address).get(profile.id)
        if spec is None:
            return [Recipient(target_id, target_id, node.name)]
        resolved = spec.resolve(self.environ)
        if resolved is None:
            return []  # validate reports it; a disabled channel logs the target as skipped
        address, extra = resolved
        return [Recipient(target_id, address, node.name, extra)]

    def message(self, profile: ChannelProfile, message: Message) -> tuple[Message, str | None]:
        """The channel's prepared form of a message (parts, artefacts), once per content."""
        key = (profile.id, message.text_sha256, json.dumps(dict(message.params), sort_keys=True))
        with self._lock:
            found = self._messages.get(key)
        if found is not None:
            return found
        result: tuple[Message, str | None]
        if not profile.enabled:
            result = (message, None)
        else:
            try:
                result = (self.channel(profile.id).prepare(message, self.artefacts), None)
            except Exception as exc:  # a message the channel cannot make is failed, not raised
                log.exception("prepare on %s failed", profile.id)
                result = (message, f"渠道无法准备消息 the channel could not prepare it: {exc}")
        with self._lock:
            if len(self._messages) > 50_000:
                self._messages.clear()
            self._messages[key] = result
        return result

    def prepare(
        self,
        occurrence: Occurrence,
        rule: RuleSpec | None = None,
        extra_vars: dict[str, Any] | None = None,
    ) -> Iterator[Prepared]:
        """Every delivery of one occurrence, one at a time (a fan-out to 100,000 numbers is
        never all in memory)."""
        campaign = self.campaign
        renderer = campaign.renderer
        for item in self.planner.expand(occurrence, render=False, spec=rule):
            if item.template is None:
                continue  # validate refuses such a config; nothing to render
            profile = self.profiles[item.channel_id]
            text, params = self.planner.text_and_params(
                item.template,
                occurrence,
                item.channel_id,
                item.target_id,
                item.theme,
                item.occasion,
                item.topic,
                extra_vars=extra_vars,
            )
            message, problem = self.message(
                profile,
                Message(
                    kind=profile.kind,
                    text=text,
                    template=item.template,
                    template_sha=renderer.sha(item.template),
                    theme=item.theme,
                    topic=item.topic,
                    title=title_of(profile.kind, text),
                    params=params,
                ),
            )
            payload = _payload(message)
            text_sha = message.text_sha256  # once per message, not once per recipient
            payload_sha = hashlib.sha256(payload.encode("utf-8")).hexdigest() if payload else None
            node = campaign.targets[item.target_id]
            channel = self.channel(profile.id) if profile.enabled else None
            for recipient in self.recipients(profile, item.target_id):
                key = delivery_key(
                    self.hash_key,
                    campaign.id,
                    occurrence.id,
                    profile.id,
                    item.target_id,
                    recipient.address,
                )
                endpoint = channel.endpoint(recipient) if channel is not None else profile.id
                delivery = Delivery(
                    key,
                    occurrence.id,
                    occurrence.rule_id,
                    profile.id,
                    recipient,
                    message,
                    occurrence.at,
                    campaign=campaign.id,
                )
                record = DeliveryRecord(
                    key=key,
                    campaign=campaign.id,
                    occurrence_id=occurrence.id,
                    rule_id=occurrence.rule_id,
                    channel_id=profile.id,
                    endpoint=endpoint_hash(endpoint),
                    target_id=item.target_id,
                    recipient_display=recipient.display,
                    recipient_hash=self.log.recipient_hash(recipient.address),
                    kind=profile.kind.value,
                    template=item.template,
                    template_sha=message.template_sha,
                    text_sha256=text_sha,
                    text=text,
                    scheduled_at=occurrence.at,
                    target_path="/".join(node.path),
                    payload=payload,
                    payload_sha256=payload_sha,
                )
                yield Prepared(delivery, record, endpoint, problem)


def _payload(message: Message) -> str | None:
    body = message.payload()
    if body is None:
        return None
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Resolver:
    """Logged deliveries as sendable ones, in whatever process runs the task."""

    def __init__(
        self,
        campaign: Campaign,
        preparer: Preparer,
        log_store: DeliveryLog,
        artefacts_dir: Path,
    ):
        self.campaign = campaign
        self.preparer = preparer
        self.log = log_store
        self.artefacts_dir = artefacts_dir
        self._by_hash: dict[str, dict[str, Recipient]] = {}
        self._content: dict[str, Any] = {}
        self._lock = threading.Lock()

    def recipient(self, state: DeliveryState) -> Recipient | None:
        """The recipient a logged delivery names, found by its keyed hash; None when the
        target, the contact or the channel left the config."""
        profile = self.preparer.profiles.get(state.channel_id)
        if profile is None or state.target_id not in self.campaign.targets:
            return None
        cache_key = f"{state.channel_id}\x1f{state.target_id}"
        with self._lock:
            index = self._by_hash.get(cache_key)
        if index is None:
            index = {
                self.log.recipient_hash(r.address): r
                for r in self.preparer.recipients(profile, state.target_id)
            }
            with self._lock:
                self._by_hash[cache_key] = index
        return index.get(state.recipient_hash)

    def _stored(self, sha256: str, read: Callable[[str], Any]) -> Any:
        """A text or payload by its hash: content-addressed, so read once per process."""
        with self._lock:
            if sha256 in self._content:
                return self._content[sha256]
        value = read(sha256)
        with self._lock:
            if len(self._content) > CONTENT_CACHE:
                self._content.clear()
            self._content[sha256] = value
        return value

    def delivery(self, state: DeliveryState) -> Delivery | None:
        """The delivery as logged (its text, parts and files), addressed from the config."""
        recipient = self.recipient(state)
        if recipient is None:
            return None
        return self.build(state, recipient)

    def build(self, state: DeliveryState, recipient: Recipient) -> Delivery:
        text = self._stored(state.text_sha256, self.log.text) or ""
        payload = (
            self._stored(state.payload_sha256, self.log.payload) if state.payload_sha256 else None
        )
        payload = payload or {}
        artefacts = tuple(
            Artefact(
                a["name"],
                a["sha256"],
                self.artefacts_dir / "files" / a["sha256"],
                a["media_type"],
                a["size"],
            )
            for a in payload.get("artefacts", ())
        )
        kind = MessageKind(state.kind)
        message = Message(
            kind=kind,
            text=text,
            template=state.template,
            template_sha=state.template_sha,
            theme=payload.get("theme"),
            topic=payload.get("topic"),
            title=title_of(kind, text),
            params=payload.get("params", {}),
            parts=tuple(payload.get("parts", ())),
            artefacts=artefacts,
        )
        return Delivery(
            state.key,
            state.occurrence_id,
            state.rule_id,
            state.channel_id,
            recipient,
            message,
            state.scheduled_at,
            provider_id=state.provider_id,
            first_part=state.parts_done,
            campaign=state.campaign,
        )

    def unaddressed(self, state: DeliveryState) -> Delivery:
        """A delivery whose recipient left the config: enough to ask the provider about it."""
        return self.build(state, Recipient(state.target_id, "", state.recipient_display))


def with_first_part(delivery: Delivery, parts_done: int | None) -> Delivery:
    if not parts_done or parts_done <= delivery.first_part:
        return delivery
    return replace(delivery, first_part=parts_done)
