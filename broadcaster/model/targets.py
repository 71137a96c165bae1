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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers

__all__ = [
    "AddressSpec",
    "Contact",
    "ContactProblem",
    "TargetNode",
    "TargetTree",
    "mask_phone",
    "parse_phone",
    "recipient_hash",
]


@dataclass(frozen=True)
class Contact:
    """One person on a target's list; `number` is E.164 and never shown."""

    number: str = field(repr=False)
    display: str
    name: str = ""


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


def parse_phone(raw: str) -> str | None:
    """A mainland mobile or landline number in E.164, or None when it is not one."""
    text = str(raw).strip().replace(" ", "").replace("-", "")
    if not text:
        return None
    try:
        parsed = phonenumbers.parse(text, "CN")
    except phonenumbers.NumberParseException:
        return None
    if parsed.country_code != 86 or not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def recipient_hash(address: str, key: bytes) -> str:
    """Keyed hash of an address: lets an auditor find a person without storing the number."""
    return hmac.new(key, address.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
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
    contacts: list[Contact] = []
    problems: list[ContactProblem] = []
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        return [], [
            ContactProblem(shown, None, f"无法读取 cannot read contacts file: {exc.strerror}")
        ]
    with handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "phone" not in reader.fieldnames:
            return [], [
                ContactProblem(
                    shown, 1, "缺少 phone 列 expected a header row with a 'phone' column"
                )
            ]
        seen: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            raw = (row.get("phone") or "").strip()
            number = parse_phone(raw)
            if number is None:
                problems.append(
                    ContactProblem(
                        shown,
                        line,
                        f"phone: 号码无效 not a mainland mobile or landline number: {mask_phone(raw) if raw else '(empty)'}",
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
            contacts.append(Contact(number, mask_phone(number), (row.get("name") or "").strip()))
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
        filtering = bool(tags or all_tags or audiences or under)
        scope: set[str] | None = None
        if under:
            scope = set().union(*(self.subtree(u) for u in under if u in self.nodes))
        excluded = (
            set().union(*(self.subtree(e) for e in exclude if e in self.nodes))
            if exclude
            else set()
        )
        chosen = set(ids)
        if filtering:
            for node in self.nodes.values():
                if scope is not None and node.id not in scope:
                    continue
                if tags and not (tags & node.tags):
                    continue
                if all_tags and not all_tags <= node.tags:
                    continue
                if audiences and node.audience not in audiences:
                    continue
                chosen.add(node.id)
        return tuple(i for i in self.order if i in chosen and i not in excluded)
