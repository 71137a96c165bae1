"""The audience tree and target selection.

Targets form a tree (county → township → village → grid or group; school → grade →
class or parent group). Each node has tags; its audience is inherited from the
nearest ancestor that sets one. Contact lists (phone numbers) are validated with
`phonenumbers` and only ever shown masked (138****5678).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import phonenumbers

from broadcaster.led.playlist import ScreenSpec

__all__ = [
    "AddressSpec",
    "Contact",
    "ContactFilter",
    "ContactProblem",
    "TargetNode",
    "TargetTree",
    "contact_filter",
    "load_contacts_csv",
    "mask_phone",
    "parse_contacts_csv",
    "parse_phone",
    "reachable",
    "recipient_hash",
]


_MOBILE_E164 = re.compile(r"\+861[3-9][0-9]{9}")


@dataclass(frozen=True, slots=True)
class Contact:
    """One number on a target's list; `number` is E.164 and never shown.

    `area` is the person's place below the target (e.g. 三组), `tags` their groups
    (老年人, 学生家长); `optout`: on the office's opt-out list, never sent to.
    """

    number: str = field(repr=False)
    display: str
    name: str = ""
    area: str = ""
    tags: frozenset[str] = frozenset()
    optout: bool = False

    @property
    def mobile(self) -> bool:
        return _MOBILE_E164.fullmatch(self.number) is not None


@dataclass(frozen=True)
class ContactFilter:
    """Which of a target's people a rule reaches: any of `tags`, in or below one of `areas`,
    and only mobiles when `mobile_only` (SMS)."""

    tags: frozenset[str] = frozenset()
    areas: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.tags or self.areas)

    def matches(self, contact: Contact) -> bool:
        if self.tags and self.tags.isdisjoint(contact.tags):
            return False
        return not self.areas or any(in_area(contact.area, a) for a in self.areas)


def in_area(area: str, wanted: str) -> bool:
    """Whether `area` (东村/三组) is `wanted` (东村) or below it."""
    area, wanted = area.strip("/"), wanted.strip("/")
    return area == wanted or area.startswith(wanted + "/")


def contact_filter(rule: Any) -> ContactFilter | None:
    """A rule's `recipients:` filter, or None when it reaches everyone on the lists."""
    spec = getattr(rule, "recipients", None)
    if spec is None or not (spec.tags or spec.areas):
        return None
    return ContactFilter(frozenset(spec.tags), tuple(spec.areas))


def reachable(
    contacts: tuple[Contact, ...], *, mobile_only: bool, only: ContactFilter | None = None
) -> tuple[Contact, ...]:
    """The contacts a channel reaches: mobiles only for SMS, then the rule's filter."""
    if not mobile_only and not only:
        return contacts
    return tuple(
        c for c in contacts if (not mobile_only or c.mobile) and (not only or only.matches(c))
    )


@dataclass(frozen=True)
class AddressSpec:
    """A target's address on one channel as configured: text, or environment variables.

    `parts` are (name, text, env) with exactly one of text and env set; the part named
    "key" is the address itself, the others (a signing secret) travel beside it.
    """

    parts: tuple[tuple[str, str | None, str | None], ...]

    @classmethod
    def from_config(cls, value: object) -> AddressSpec:
        def env_of(v: object) -> str | None:
            if isinstance(v, dict) and set(v) == {"env"}:
                return str(v["env"])
            return getattr(v, "env", None)

        def part(name: str, v: object) -> tuple[str, str | None, str | None]:
            env = env_of(v)
            return (name, None, env) if env is not None else (name, str(v), None)

        if isinstance(value, dict) and env_of(value) is None:
            return cls(tuple(part(k, v) for k, v in value.items()))
        return cls((part("key", value),))

    @property
    def env_names(self) -> list[str]:
        return [env for _, _, env in self.parts if env is not None]

    @property
    def secret(self) -> bool:
        """Whether any part comes from the environment (and so must never be shown)."""
        return bool(self.env_names)

    def resolve(self, environ: Mapping[str, str]) -> tuple[str, dict[str, str]] | None:
        """(address, other parts) with environment values read; None when one is unset."""
        values: dict[str, str] = {}
        for name, text, env in self.parts:
            value = text if env is None else environ.get(env)
            if value is None:
                return None
            values[name] = value.strip()
        return values.pop("key"), values


@dataclass(frozen=True)
class ContactProblem:
    file: str
    line: int | None
    message: str


def mask_phone(number: str) -> str:
    """Show a phone number as 138****5678 (mobile) or 0571****6666 (landline)."""
    digits = number.removeprefix("+86")
    if len(digits) == 11 and digits.startswith("1"):
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) >= 9 and digits.isdigit():  # a landline: area code with its trunk 0
        digits = digits if digits.startswith("0") else "0" + digits
        area = 3 if digits[1] in "12" else 4  # 010, 02x; else 0xxx
        return f"{digits[:area]}****{digits[-4:]}"
    return f"**** ({len(digits)} digits)"


def _phone_slow(text: str) -> str | None:
    try:
        parsed = phonenumbers.parse(text, "CN")
    except phonenumbers.NumberParseException:
        return None
    if parsed.country_code != 86 or not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


_TYPE_ORDER = (  # the order of phonenumbers' _number_type_helper
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)


def _mobile_checks() -> tuple[re.Pattern[str] | None, list[re.Pattern[str]], re.Pattern[str]]:
    """phonenumbers' own CN patterns that can match an 11-digit national number: the
    general description and every number type, and its national prefix for parsing (a
    number starting with one goes the slow way). No metadata: everything goes the slow way."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region("CN")
    if meta is None:
        return None, [], re.compile("")

    def usable(desc: Any) -> re.Pattern[str] | None:
        if desc is None or not desc.national_number_pattern:
            return None
        if desc.possible_length and 11 not in desc.possible_length:
            return None
        return re.compile(desc.national_number_pattern)

    types = [p for k in _TYPE_ORDER if (p := usable(getattr(meta, k)))]
    prefix = re.compile(meta.national_prefix_for_parsing or "(?!)")
    return usable(meta.general_desc), types, prefix


_FAST_FORM = re.compile(r"(?:\+86)?(1[3-9][0-9]{9})")
_GENERAL, _TYPES, _NATIONAL_PREFIX = _mobile_checks()


def _whole(pattern: re.Pattern[str], digits: str) -> bool:
    """phonenumbers' match: the pattern's first match from the start must cover it all."""
    m = pattern.match(digits)
    return m is not None and m.end() == len(digits)


def parse_phone(raw: str) -> str | None:
    """A mainland mobile or landline number in E.164, or None when it is not one.

    Plain mobile numbers (13812345678, +8613812345678) are checked against phonenumbers'
    own CN patterns directly, with the same result as `phonenumbers.parse` and
    `is_valid_number` at a fraction of the cost; everything else goes through them.
    """
    text = str(raw).strip().replace(" ", "").replace("-", "")
    if not text:
        return None
    fast = _FAST_FORM.fullmatch(text)
    if fast is None or _GENERAL is None or _NATIONAL_PREFIX.match(fast.group(1)):
        return _phone_slow(text)
    digits = fast.group(1)
    if _whole(_GENERAL, digits) and any(_whole(p, digits) for p in _TYPES):
        return "+86" + digits
    return None


def recipient_hash(address: str, key: bytes) -> str:
    """Keyed hash of an address: lets an auditor find a person without storing the number."""
    return hmac.new(key, address.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class TargetNode:
    """A target with everything derived from the tree resolved."""

    id: str
    name: str
    tags: frozenset[str]
    audience: str | None
    parent: str | None
    ancestors: tuple[str, ...]  # ids, root first
    path: tuple[str, ...]  # names, root first, this node last
    contacts: tuple[Contact, ...] = ()
    address: tuple[tuple[str, AddressSpec], ...] = ()  # channel id -> address
    vars: tuple[tuple[str, object], ...] = ()
    children: tuple[str, ...] = ()
    screen: ScreenSpec | None = None  # an LED screen (`screen:` in the config)

    def as_context(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "audience": self.audience,
            "tags": sorted(self.tags),
            "path": list(self.path),
        }


def load_contacts_csv(path: Path, shown: str) -> tuple[list[Contact], list[ContactProblem]]:
    """Read a CSV with a `phone` column; every bad row is reported, none is dropped silently."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return [], [
            ContactProblem(shown, None, f"无法读取 cannot read contacts file: {exc.strerror}")
        ]
    return parse_contacts_csv(raw, shown)


def parse_contacts_csv(raw: bytes, shown: str) -> tuple[list[Contact], list[ContactProblem]]:
    """The contacts of a CSV file's bytes (UTF-8, with or without a BOM) and its bad rows."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        try:
            raw.decode("gb18030")
            looks = "it looks like GBK/GB18030, as Excel saves it"
        except UnicodeDecodeError:
            looks = f"byte 0x{raw[exc.start]:02x} on this line"
        return [], [
            ContactProblem(
                shown,
                line,
                f"文件不是 UTF-8 编码 file is not UTF-8 ({looks}): save the file as UTF-8"
                " (Excel: CSV UTF-8)",
            )
        ]
    contacts: list[Contact] = []
    problems: list[ContactProblem] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header or "phone" not in header:
        return [], [
            ContactProblem(shown, 1, "缺少 phone 列 expected a header row with a 'phone' column")
        ]
    # as csv.DictReader reads it: the last column of a repeated name wins, blank lines skip
    phone_at = len(header) - 1 - header[::-1].index("phone")
    name_at = len(header) - 1 - header[::-1].index("name") if "name" in header else None
    seen: dict[str, int] = {}
    for row in reader:
        if not row:
            continue
        line = reader.line_num
        raw_phone = row[phone_at].strip() if phone_at < len(row) else ""
        number = parse_phone(raw_phone)
        if number is None:
            problems.append(
                ContactProblem(
                    shown,
                    line,
                    "phone: 号码无效 not a mainland mobile or landline number: "
                    + (mask_phone(raw_phone) if raw_phone else "(empty)"),
                )
            )
            continue
        if number in seen:
            problems.append(
                ContactProblem(
                    shown,
                    line,
                    f"phone: 重复号码 duplicate of line {seen[number]}: {mask_phone(number)}",
                )
            )
            continue
        seen[number] = line
        name = row[name_at].strip() if name_at is not None and name_at < len(row) else ""
        contacts.append(Contact(number, mask_phone(number), name))
    return contacts, problems


class TargetTree:
    """All targets by id, with selection by tags, audiences, subtree and id."""

    def __init__(self, nodes: Iterable[TargetNode]):
        self.nodes: dict[str, TargetNode] = {n.id: n for n in nodes}
        self.order: list[str] = list(self.nodes)
        self.tags: set[str] = {t for n in self.nodes.values() for t in n.tags}
        self.audiences: set[str] = {n.audience for n in self.nodes.values() if n.audience}

    def __getitem__(self, target_id: str) -> TargetNode:
        return self.nodes[target_id]

    def __contains__(self, target_id: object) -> bool:
        return target_id in self.nodes

    def __iter__(self) -> Iterator[TargetNode]:
        return (self.nodes[i] for i in self.order)

    def subtree(self, target_id: str) -> set[str]:
        out = {target_id}
        stack = [target_id]
        while stack:
            for child in self.nodes[stack.pop()].children:
                out.add(child)
                stack.append(child)
        return out

    def select(
        self,
        *,
        tags: Iterable[str] = (),
        all_tags: Iterable[str] = (),
        audiences: Iterable[str] = (),
        under: Iterable[str] = (),
        ids: Iterable[str] = (),
        exclude: Iterable[str] = (),
    ) -> tuple[str, ...]:
        """Targets matching the filters (tags: any of; all_tags: all of; under: in a subtree),
        plus the listed ids, minus excluded subtrees. In tree order."""
        tags, all_tags, audiences = set(tags), set(all_tags), set(audiences)
        under = list(under)
        excluded = (
            set().union(*(self.subtree(e) for e in exclude if e in self.nodes))
            if exclude
            else set()
        )
        chosen = {i for i in ids if i in self.nodes}
        if tags or all_tags or audiences or under:
            scope: set[str] | None = None
            if under:
                scope = set().union(*(self.subtree(u) for u in under if u in self.nodes))
            pool = self.nodes.values() if scope is None else [self.nodes[i] for i in scope]
            for node in pool:
                if tags and tags.isdisjoint(node.tags):
                    continue
                if all_tags and not all_tags <= node.tags:
                    continue
                if audiences and node.audience not in audiences:
                    continue
                chosen.add(node.id)
        chosen -= excluded
        if len(chosen) * 8 < len(self.order):
            return tuple(sorted(chosen, key=self._position.__getitem__))
        return tuple(i for i in self.order if i in chosen)

    @cached_property
    def _position(self) -> dict[str, int]:
        return {tid: i for i, tid in enumerate(self.order)}
