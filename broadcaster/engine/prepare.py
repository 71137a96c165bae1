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

import datetime as dt
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
from broadcaster.log.relay import RelayHop
from broadcaster.model.campaign import Campaign, RuleSpec
from broadcaster.model.plan import Occurrence, PlanItem, Planner
from broadcaster.model.relay import PlannedHop, plan_hops
from broadcaster.model.targets import Contact, ContactFilter, contact_filter, reachable
from broadcaster.vocab import Addressing, ErrorClass, MessageKind

__all__ = ["OPTOUT_REASON", "Prepared", "Preparer", "Resolver", "delivery_key"]

OPTOUT_REASON = "已退订，不发送 suppressed: on the opt-out list"

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
    suppress: tuple[ErrorClass, str] | None = None  # logged skipped, never sent (an opt-out)
    hop: RelayHop | None = None  # a relayed hop: the delivery it depends on, its deadline


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

    def address_secrets(self) -> list[str]:
        """Values of target addresses read from the environment (bot keys, signing secrets),
        for the log to scrub wherever a provider echoes them."""
        found: list[str] = []
        for node in self.campaign.targets.nodes.values():
            for channel_id, spec in node.address:
                if channel_id not in self.profiles or not spec.secret:
                    continue
                for _, _, env in spec.parts:
                    value = self.environ.get(env) if env is not None else None
                    if value and value.strip():
                        found.append(value.strip())
        return found

    def recipients(
        self, profile: ChannelProfile, target_id: str, only: ContactFilter | None = None
    ) -> list[Recipient]:
        """Who one target is on this channel: its people (SMS: mobiles; `only`: a rule's
        filter), or the target itself."""
        node = self.campaign.targets[target_id]
        if profile.addressing is Addressing.CONTACTS:
            contacts = reachable(
                node.contacts, mobile_only=profile.kind is MessageKind.SMS, only=only
            )
            return [Recipient(target_id, c.number, c.display) for c in contacts]
        spec = dict(node.address).get(profile.id)
        if spec is None:
            return [Recipient(target_id, target_id, node.name)]
        resolved = spec.resolve(self.environ)
        if resolved is None:
            return []  # validate reports it; a disabled channel logs the target as skipped
        address, extra = resolved
        return [Recipient(target_id, address, node.name, extra)]

    def _addressed(
        self, profile: ChannelProfile, target_id: str, only: ContactFilter | None
    ) -> Iterator[tuple[Recipient, Contact | None]]:
        """Each recipient with the contact it came from (None: the target itself)."""
        if profile.addressing is not Addressing.CONTACTS:
            for recipient in self.recipients(profile, target_id):
                yield recipient, None
            return
        node = self.campaign.targets[target_id]
        mobile_only = profile.kind is MessageKind.SMS
        for c in reachable(node.contacts, mobile_only=mobile_only, only=only):
            yield Recipient(target_id, c.number, c.display), c

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
        if rule is None:
            rule = next((r for r in campaign.rules if r.id == occurrence.rule_id), None)
        only = contact_filter(rule.rule) if rule is not None else None
        relay = rule.rule.relay if rule is not None else None
        relayed: set[str] = set()  # targets whose hops are made
        for item in self.planner.expand(occurrence, render=False, spec=rule):
            if item.template is None:
                continue  # validate refuses such a config; nothing to render
            profile = self.profiles[item.channel_id]
            say, hops = "", list[PlannedHop]()
            if relay is not None:
                say, hops = plan_hops(campaign.targets, item.target_id, relay)
            first: str | None = None
            for p in self._item(
                occurrence, item, profile, item.template, extra_vars, say, only=only
            ):
                first = first or p.record.key
                p = self._handoff(occurrence, p)
                yield p
                yield from self._companions(occurrence, p)
            if (
                relay is not None
                and rule is not None
                and first is not None
                and item.channel_id == rule.rule.channels[0]  # the push the hops depend on
                and item.target_id not in relayed
            ):
                relayed.add(item.target_id)
                yield from self._hops(occurrence, item, rule, first, hops, extra_vars)

    def _hops(
        self,
        occurrence: Occurrence,
        item: PlanItem,
        rule: RuleSpec,
        parent: str,
        hops: list[PlannedHop],
        extra_vars: dict[str, Any] | None,
    ) -> Iterator[Prepared]:
        """The relayed hops below one pushed target, each depending on the one above."""
        relay = rule.rule.relay
        assert relay is not None
        profile = self.profiles.get(relay.via)
        if profile is None:
            return
        keys: dict[str, str] = {item.target_id: parent}
        renderer = self.campaign.renderer
        name = rule.rule.template or item.topic
        for hop in hops:
            node = self.campaign.targets[hop.target_id]
            template = renderer.template_name(profile.kind, name, node.audience) if name else None
            up = keys.get(hop.parent_target, parent)
            if template is None:
                keys[hop.target_id] = up
                continue
            made = list(
                self._item(
                    occurrence,
                    replace(item, channel_id=profile.id, target_id=hop.target_id),
                    profile,
                    template,
                    extra_vars,
                    hop.say,
                    marker=f"relay:{hop.level}",
                )
            )
            keys[hop.target_id] = made[0].record.key if made else up
            for p in made:
                person = self._confirmer(p)
                relay_hop = RelayHop(
                    p.record.key,
                    self.campaign.id,
                    occurrence.id,
                    up,
                    hop.level,
                    hop.tag,
                    occurrence.at + hop.due_after,
                    person[0] if person else "",
                    profile.capabilities.late_outcomes,  # a hand-off: when confirmed
                )
                prepared = replace(p, hop=relay_hop)
                yield prepared
                yield from self._companions(occurrence, prepared)

    def _confirmer(self, prepared: Prepared) -> tuple[str, dt.timedelta] | None:
        """Who confirms a delivery by hand, and the time they have (a hand-off's person)."""
        profile = self.profiles[prepared.delivery.channel_id]
        if not profile.enabled or prepared.problem:
            return None
        ask = getattr(self.channel(profile.id), "confirmer", None)
        return ask(prepared.delivery) if ask is not None else None

    def _handoff(self, occurrence: Occurrence, prepared: Prepared) -> Prepared:
        """A hand-off sent directly (no relay) is recorded with its person and deadline."""
        person = self._confirmer(prepared)
        if person is None:
            return prepared
        name, within = person
        hop = RelayHop(
            prepared.record.key,
            self.campaign.id,
            occurrence.id,
            "",
            0,
            "",
            occurrence.at + within,
            name,
            True,
        )
        return replace(prepared, hop=hop)

    def _companions(self, occurrence: Occurrence, prepared: Prepared) -> Iterator[Prepared]:
        """Deliveries a channel asks for beside one of its own: a hand-off's notification
        with the person's link, through another (target-addressed) channel."""
        source = self.profiles[prepared.delivery.channel_id]
        if not source.enabled or prepared.problem:
            return
        ask = getattr(self.channel(source.id), "companions", None)
        if ask is None:
            return
        try:
            wanted = list(ask(prepared.delivery))
        except Exception as exc:  # no link can be made: the notification fails, visibly
            log.exception("companions of %s failed", source.id)
            notify = getattr(source.settings, "notify", None)
            if not isinstance(notify, str):
                return
            reason = f"无法生成通知 the notification could not be made: {exc}"
            wanted = [(notify, f"({reason})")]
            failed: str | None = reason
        else:
            failed = None
        for channel_id, text in wanted:
            profile = self.profiles.get(channel_id)
            if profile is None:
                continue  # validate refuses an unknown notify channel
            template = f"{source.id}:{channel_id}"
            message, problem = self.message(
                profile,
                Message(
                    kind=profile.kind,
                    text=text,
                    template=template,
                    template_sha=hashlib.sha256(template.encode()).hexdigest(),
                ),
            )
            problem = problem or failed
            if profile.addressing is Addressing.CONTACTS:
                problem = (
                    f"通知渠道须按对象发送 notify channel '{channel_id}' must send to the"
                    " target's own address (addressing: target), not to its contact list"
                )
            yield from self._deliveries(
                occurrence,
                profile,
                prepared.delivery.recipient.target_id,
                message,
                text,
                template,
                problem,
                marker=f"notify:{prepared.record.key}",
            )

    def _item(
        self,
        occurrence: Occurrence,
        item: PlanItem,
        profile: ChannelProfile,
        template: str,
        extra_vars: dict[str, Any] | None,
        say: str,
        marker: str = "",
        only: ContactFilter | None = None,
    ) -> Iterator[Prepared]:
        """The deliveries of one plan item (one channel, one target; `only`: a rule's filter
        of the target's contacts)."""
        campaign = self.campaign
        renderer = campaign.renderer
        text, params = self.planner.text_and_params(
            template,
            occurrence,
            item.channel_id,
            item.target_id,
            item.theme,
            item.occasion,
            item.topic,
            extra_vars=extra_vars,
        )
        if say:  # the relay instruction for the level below
            text = f"{text.rstrip()}\n\n{say}"
        message, problem = self.message(
            profile,
            Message(
                kind=profile.kind,
                text=text,
                template=template,
                template_sha=renderer.sha(template),
                theme=item.theme,
                topic=item.topic,
                title=title_of(profile.kind, text),
                params=params,
            ),
        )
        yield from self._deliveries(
            occurrence, profile, item.target_id, message, text, template, problem, marker, only
        )

    def _deliveries(
        self,
        occurrence: Occurrence,
        profile: ChannelProfile,
        target_id: str,
        message: Message,
        text: str,
        template: str,
        problem: str | None,
        marker: str = "",
        only: ContactFilter | None = None,
    ) -> Iterator[Prepared]:
        """One delivery per recipient of a target on a channel, keyed (with `marker` when the
        same target and channel may also be sent to directly: a hop, a notification); an
        opted-out contact's delivery is logged skipped, never sent."""
        campaign = self.campaign
        payload = _payload(message)
        text_sha = message.text_sha256  # once per message, not once per recipient
        payload_sha = hashlib.sha256(payload.encode("utf-8")).hexdigest() if payload else None
        node = campaign.targets[target_id]
        channel = self.channel(profile.id) if profile.enabled else None
        node_path = "/".join(node.path)
        for recipient, contact in self._addressed(profile, target_id, only):
            target_path = node_path
            suppress = None
            if contact is not None:
                if contact.area:
                    target_path = f"{node_path}/{contact.area.strip('/')}"
                if contact.optout:
                    suppress = (ErrorClass.OPTOUT, OPTOUT_REASON)
            key = delivery_key(
                self.hash_key,
                campaign.id,
                occurrence.id,
                profile.id,
                target_id,
                f"{recipient.address}\x1f{marker}" if marker else recipient.address,
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
                target_id=target_id,
                recipient_display=recipient.display,
                recipient_hash=self.log.recipient_hash(recipient.address),
                kind=profile.kind.value,
                template=template,
                template_sha=message.template_sha,
                text_sha256=text_sha,
                text=text,
                scheduled_at=occurrence.at,
                target_path=target_path,
                payload=payload,
                payload_sha256=payload_sha,
            )
            yield Prepared(delivery, record, endpoint, problem, suppress)


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
