"""一案三查 reach lookup: was this person, household, group, screen or area reached, when,
on which channel, with which text.

One module for the CLI (`broadcaster lookup`) and the console's lookup page. A number is
normalised, hashed with the log's key and searched by its hash (`recipient_hash`): the
number itself is never stored or shown, only its masked form. A person is covered by
deliveries to them (SMS, voice: one per number) and by deliveries to the targets of their
area in the audience tree (the groups, hand-offs and relays, screens and loudspeakers of
the village or township their list belongs to: those are sent per target, not per person).
Every read is one index range of bounded size, newest first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from broadcaster.log.models import deliveries, delivery_state, messages
from broadcaster.model.campaign import Campaign
from broadcaster.model.targets import mask_phone, parse_phone
from broadcaster.vocab import Addressing, Status

__all__ = [
    "LookupError_",
    "ReachRow",
    "ReachSection",
    "Subject",
    "by_area",
    "by_name",
    "by_phone",
    "by_target",
    "read_sections",
]

ROWS_PER_SECTION = 200
REACHED = (Status.ACCEPTED, Status.DELIVERED)


class LookupError_(ValueError):
    """What was asked cannot be looked up: a malformed number, an unknown target."""


@dataclass(frozen=True)
class ReachRow:
    """One delivery as an auditor reads it."""

    scheduled_at: dt.datetime
    channel_id: str
    kind: str
    target_id: str
    target_path: str
    recipient: str  # masked number, or the target's name for target-addressed channels
    status: Status
    status_at: dt.datetime
    template: str
    template_sha: str
    text_sha256: str
    text: str
    key: str

    @property
    def reached(self) -> bool:
        return self.status in REACHED


@dataclass
class ReachSection:
    """Deliveries that cover the subject one way: to them, or to a target of their area."""

    title: str  # "本人 to this number", "所在区域 area: 河西村" ...
    ref: str  # a recipient hash or a target id
    by_hash: bool
    rows: list[ReachRow] = field(default_factory=list)
    truncated: bool = False


@dataclass
class Subject:
    """What was looked up, shown masked, and the sections that cover it."""

    shown: str
    sections: list[ReachSection]
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> list[ReachRow]:
        return [r for s in self.sections for r in s.rows]

    @property
    def reached(self) -> bool:
        return any(r.reached for r in self.rows)

    def first_reached(self) -> ReachRow | None:
        hits = [r for r in self.rows if r.reached]
        return min(hits, key=lambda r: r.scheduled_at) if hits else None

    def last_reached(self) -> ReachRow | None:
        hits = [r for r in self.rows if r.reached]
        return max(hits, key=lambda r: r.scheduled_at) if hits else None


def _target_addressed(campaign: Campaign) -> set[str]:
    return {cid for cid, c in campaign.channels.items() if c.addressing is not Addressing.CONTACTS}


MAX_AREA_TARGETS = 300  # targets of a person's area looked at, nearest first


def _area_sections(campaign: Campaign, list_ids: Iterable[str]) -> list[ReachSection]:
    """Targets of the areas the given lists belong to: each list's parent and that parent's
    subtree (the groups, screens and loudspeakers of the village or township), nearest
    first and at most MAX_AREA_TARGETS, plus the ancestors above it (a county-wide screen
    covers everyone below it)."""
    tree = campaign.targets
    chosen: dict[str, str] = {}
    for list_id in list_ids:
        node = tree[list_id]
        area = node.parent or node.id
        queue = [area]
        while queue and len(chosen) < MAX_AREA_TARGETS:  # breadth first: siblings before cousins
            tid = queue.pop(0)
            here = tree[tid]
            queue += list(here.children)
            if tid != list_id and not here.contacts:
                chosen.setdefault(tid, f"所在区域 area {tree[area].name}: {here.name}")
        for ancestor in tree[area].ancestors:
            chosen.setdefault(ancestor, f"上级 above: {tree[ancestor].name}")
    return [ReachSection(title, tid, False) for tid, title in chosen.items()]


def by_phone(campaign: Campaign | None, raw: str, hash_of: Any) -> Subject:
    """A number (mobile or landline): deliveries to it, and to the areas of every list it is on."""
    number = parse_phone(raw)
    if number is None:
        raise LookupError_(
            f"号码无效 not a mainland mobile or landline number: {mask_phone(raw.strip())}"
        )
    shown = mask_phone(number)
    sections = [ReachSection(f"本人 to this number {shown}", hash_of(number), True)]
    notes: list[str] = []
    if campaign is not None:
        lists = [n.id for n in campaign.targets if any(c.number == number for c in n.contacts)]
        if lists:
            names = "、".join(campaign.targets[i].name for i in lists)
            notes.append(f"名单 on the lists: {names}")
            sections += _area_sections(campaign, lists)
        else:
            notes.append("当前配置的名单里没有这个号码 not on any list of the current config")
    return Subject(shown, sections, notes)


def by_name(campaign: Campaign, name: str, area: str | None, hash_of: Any) -> Subject:
    """A person (or household head) by name within a village or other area (id or name;
    None: the whole campaign)."""
    tree = campaign.targets
    areas = [n.id for n in tree if area in (n.id, n.name)] if area else [tree.order[0]]
    if area and not areas:
        raise LookupError_(f"未知村/区域 no target with id or name {area!r}")
    if not area:
        areas = [n.id for n in tree if n.parent is None]
    scope = set().union(*(tree.subtree(a) for a in areas))
    sections: list[ReachSection] = []
    lists: list[str] = []
    for node in tree:
        if node.id not in scope:
            continue
        for contact in node.contacts:
            if contact.name and contact.name == name.strip():
                sections.append(
                    ReachSection(
                        f"本人 {contact.display} ({node.name})", hash_of(contact.number), True
                    )
                )
                lists.append(node.id)
    shown = f"{name} · {tree[areas[0]].name}" if area else name
    if not sections:
        return Subject(shown, [], ["名单中没有此人 no one of that name on the lists of this area"])
    return Subject(shown, sections + _area_sections(campaign, dict.fromkeys(lists)), [])


def by_target(campaign: Campaign, ref: str, *, what: str = "group") -> Subject:
    """A group, screen or loudspeaker (id or name): the deliveries to that target."""
    tree = campaign.targets
    ids = [n.id for n in tree if ref in (n.id, n.name)]
    if not ids:
        raise LookupError_(f"未知对象 no target with id or name {ref!r}")
    label = {"group": "群 group", "screen": "显示屏 screen", "area": "区域 area"}.get(what, what)
    return Subject(
        f"{label} {tree[ids[0]].name}",
        [ReachSection(f"{tree[i].name} ({i})", i, False) for i in ids],
    )


def by_area(campaign: Campaign, ref: str) -> Subject:
    """An area (a village's loudspeakers, screens and groups): every target-addressed
    target in its subtree."""
    tree = campaign.targets
    ids = [n.id for n in tree if ref in (n.id, n.name)]
    if not ids:
        raise LookupError_(f"未知区域 no target with id or name {ref!r}")
    scope = set().union(*(tree.subtree(i) for i in ids))
    targets = [n.id for n in tree if n.id in scope and not n.contacts]
    notes = []
    if len(targets) > MAX_AREA_TARGETS:
        notes.append(
            f"区域内对象 {len(targets)} 个，只查前 {MAX_AREA_TARGETS} 个 the area has"
            f" {len(targets)} targets: the first {MAX_AREA_TARGETS} are looked up"
        )
    return Subject(
        f"区域 area {tree[ids[0]].name}",
        [ReachSection(f"{tree[t].name} ({t})", t, False) for t in targets[:MAX_AREA_TARGETS]],
        notes,
    )


def _statement(column: str, by_campaign: bool) -> sa.Select[Any]:
    """One person's (or target's) deliveries, newest first: built once, with bound
    parameters, so each lookup only runs it (an index range of at most `limit` rows)."""
    d, s, m = deliveries, delivery_state, messages
    query = (
        sa.select(
            d.c.scheduled_at,
            d.c.channel_id,
            d.c.kind,
            d.c.target_id,
            d.c.target_path,
            d.c.recipient_display,
            s.c.status,
            s.c.since,
            d.c.template,
            d.c.template_sha,
            d.c.text_sha256,
            m.c.text,
            d.c.key,
        )
        .select_from(d.join(s, s.c.delivery_id == d.c.id).join(m, m.c.sha256 == d.c.text_sha256))
        .where(d.c[column] == sa.bindparam("value"))
        .order_by(d.c.scheduled_at.desc(), d.c.id.desc())
        .limit(sa.bindparam("limit"))
    )
    if by_campaign:
        query = query.where(d.c.campaign == sa.bindparam("campaign"))
    return query


_STATEMENTS = {
    (column, by_campaign): _statement(column, by_campaign)
    for column in ("recipient_hash", "target_id")
    for by_campaign in (False, True)
}


def _rows(conn: Connection, column: str, value: str, campaign: str | None, limit: int) -> list[Any]:
    query = _STATEMENTS[(column, campaign is not None)]
    params: dict[str, Any] = {"value": value, "limit": limit + 1}
    if campaign is not None:
        params["campaign"] = campaign
    return list(conn.execute(query, params))


def read_sections(
    conn: Connection,
    subject: Subject,
    *,
    campaign: str | None = None,
    names: dict[str, str] | None = None,
    limit: int = ROWS_PER_SECTION,
) -> Subject:
    """Fill each section with its deliveries (newest first, at most `limit`); sections of
    the area with no delivery are dropped, the person's own always stays."""
    names = names or {}
    kept: list[ReachSection] = []
    for section in subject.sections:
        found = _rows(
            conn, "recipient_hash" if section.by_hash else "target_id", section.ref, campaign, limit
        )
        section.truncated = len(found) > limit
        section.rows = [
            ReachRow(
                r.scheduled_at,
                r.channel_id,
                r.kind,
                r.target_id,
                r.target_path,
                r.recipient_display or names.get(r.target_id, r.target_id),
                Status(r.status),
                r.since,
                r.template,
                r.template_sha,
                r.text_sha256,
                r.text,
                r.key,
            )
            for r in found[:limit]
        ]
        if section.rows or section.by_hash or len(subject.sections) == 1:
            kept.append(section)
    subject.sections = kept
    return subject


def subject_for(
    campaign: Campaign | None,
    hash_of: Any,
    *,
    phone: str | None = None,
    name: str | None = None,
    village: str | None = None,
    group: str | None = None,
    screen: str | None = None,
    area: str | None = None,
) -> Subject:
    """The subject of exactly one way of asking."""
    asked = [k for k, v in (("phone", phone), ("name", name), ("group", group),
                            ("screen", screen), ("area", area)) if v]  # fmt: skip
    if len(asked) != 1:
        raise LookupError_(
            "请只用一种方式查询 give exactly one of --phone, --name (with --village), --group,"
            " --screen, --area"
        )
    if phone:
        return by_phone(campaign, phone, hash_of)
    if campaign is None:
        raise LookupError_("需要有效的配置 looking up by name or target needs a valid config")
    if name:
        if not village:
            raise LookupError_("按姓名查询需要 --village looking up a name needs --village")
        return by_name(campaign, name, village, hash_of)
    if group:
        return by_target(campaign, group, what="group")
    if screen:
        return by_target(campaign, screen, what="screen")
    assert area is not None
    return by_area(campaign, area)


def names_of(campaign: Campaign | None, ids: Sequence[str] = ()) -> dict[str, str]:
    if campaign is None:
        return {}
    return {n.id: n.name for n in campaign.targets if not ids or n.id in ids}
