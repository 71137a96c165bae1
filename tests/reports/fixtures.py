"""A delivery log for the shipped sample campaign, written through `DeliveryLog` as the
engine writes it: each delivery with its text, masked recipient and keyed hash, then its
status events in the state machine's order."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from broadcaster.engine.app import open_log
from broadcaster.log import DeliveryLog, DeliveryRecord, Event
from broadcaster.model.campaign import Campaign
from broadcaster.model.config import load_campaign
from broadcaster.model.targets import mask_phone, parse_phone
from broadcaster.vocab import ErrorClass, Status
from tests.conftest import REPO

TZ = ZoneInfo("Asia/Shanghai")
KIND = {
    "sms_gateway": "sms",
    "voice_gateway": "loudspeaker",
    "group_handoff": "bot",
    "cadres_bot": "bot",
    "loudspeaker_scripts": "loudspeaker",
    "led_items": "led",
    "reports": "bot",
}


@dataclass(frozen=True)
class Sent:
    """One delivery of the test log: when, how, to which target (and number), how far."""

    at: dt.datetime
    channel: str
    target: str
    status: Status
    topic: str = "order_brushing"
    number: str | None = None
    rule: str = "test-rule"


def copy_sample(folder: Path) -> Path:
    """A copy of the shipped sample campaign in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "schedules.yaml", folder / "schedules.yaml")
    shutil.copytree(REPO / "schedules.d", folder / "schedules.d")
    return folder / "schedules.yaml"


@functools.cache
def sample_campaign(config: Path) -> Campaign:
    return load_campaign(config, today=dt.date(2026, 12, 1))


def text_of(sent: Sent) -> str:
    return f"【示范县反诈】{sent.topic} 提醒 {sent.target} {sent.at:%m-%d}"


def write_log(log: DeliveryLog, campaign: Campaign, sends: list[Sent]) -> list[str]:
    """Write the deliveries and their events; return their keys in order."""
    records: list[DeliveryRecord] = []
    events: list[Event] = []
    for i, s in enumerate(sends):
        node = campaign.targets[s.target]
        number = parse_phone(s.number) if s.number else None
        address = number or f"target:{s.target}"
        key = hashlib.sha256(f"{i}|{s.channel}|{s.target}|{address}|{s.at}".encode()).hexdigest()[
            :32
        ]
        text = text_of(s)
        kind = KIND[s.channel]
        records.append(
            DeliveryRecord(
                key=key,
                campaign=campaign.id,
                occurrence_id=f"{s.rule}@{s.at.isoformat()}",
                rule_id=s.rule,
                channel_id=s.channel,
                endpoint="e",
                target_id=s.target,
                recipient_display=mask_phone(number) if number else node.name,
                recipient_hash=log.recipient_hash(address),
                kind=kind,
                template=f"{kind}/{s.topic}.j2",
                template_sha=hashlib.sha256(s.topic.encode()).hexdigest(),
                text_sha256=hashlib.sha256(text.encode()).hexdigest(),
                text=text,
                scheduled_at=s.at,
                target_path="/".join(node.path),
            )
        )
        later = s.at + dt.timedelta(minutes=1)
        if s.status is Status.PLANNED:
            continue
        if s.status is Status.SKIPPED:
            events.append(Event(key, Status.SKIPPED, later, ErrorClass.DISABLED, "disabled"))
            continue
        events.append(Event(key, Status.SENDING, later))
        if s.status is Status.FAILED:
            events.append(Event(key, Status.FAILED, later, ErrorClass.RECIPIENT, "rejected"))
        elif s.status in (Status.ACCEPTED, Status.DELIVERED):
            events.append(Event(key, Status.ACCEPTED, later))
            if s.status is Status.DELIVERED:
                events.append(Event(key, Status.DELIVERED, later + dt.timedelta(minutes=1)))
    first = min(s.at for s in sends)
    log.add_deliveries(records, first)
    log.append(events)
    log.flush()
    return [r.key for r in records]


def fill(config: Path, state_dir: Path, sends: list[Sent]) -> list[str]:
    campaign = sample_campaign(config)
    log, _ = open_log(None, state_dir)
    try:
        return write_log(log, campaign, sends)
    finally:
        log.close()


def at(day: str, hm: str = "10:00") -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{hm}").replace(tzinfo=TZ)


def chain_of(state_dir: Path) -> tuple[str, int]:
    """The chain head and record count of the log in `state_dir`, as verify-log prints them."""
    log, _ = open_log(None, state_dir)
    try:
        return log.chain_head()
    finally:
        log.close()
