"""The approval ledger: which template versions are approved, as a YAML file kept with the
config (审核记录, `approval.file`, default `approvals.yaml` beside schedules.yaml).

`broadcaster approve` and the console write each approval twice: into the log's
append-only `approvals` table (the audit record, covered by the log's chain) and onto
this file, so that `validate`, which touches no database, can refuse unapproved content
anywhere the config is checked (a laptop, CI). Entries are only ever appended.
No SQL here: `validate` imports this module.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from broadcaster.model.campaign import Campaign

__all__ = [
    "LedgerEntry",
    "Version",
    "append_entry",
    "attach_ledger",
    "is_urgent",
    "ledger_path",
    "offline_refusals",
    "read_ledger",
    "refusals",
    "versions_of",
    "when_text",
]

SHA = re.compile(r"[0-9a-f]{64}")
HEADER = (
    "# 审核记录 content approvals — written by `broadcaster approve` and the console; each entry\n"
    "# approves one exact template version (sha256 of the template and its fragments).\n"
    "# Append only: an edited template is a new version and needs a new approval.\n"
    "approvals:\n"
)


@dataclass(frozen=True)
class LedgerEntry:
    template: str
    version: str
    by: str
    at: str
    note: str
    state: str = "approved"


@dataclass
class Version:
    """One template version the campaign's rules can send."""

    template: str  # "sms/loan.j2"
    template_sha: str
    file: str  # as shown: "messages/sms/loan.j2"
    rules: frozenset[str] = frozenset()
    approval: Any = None  # the approving row (ApprovalRow) or ledger entry, when there is one
    urgent: Any = None  # the record of an urgent send before approval

    @property
    def approved(self) -> bool:
        return self.approval is not None

    @property
    def short(self) -> str:
        return self.template_sha[:12]


def versions_of(campaign: Campaign) -> list[Version]:
    """Every template version the enabled rules can send (rendered at load: every topic of
    every theme a rule can pick, per kind of target), in template order."""
    found: dict[tuple[str, str], tuple[str, set[str]]] = {}
    for v in campaign.variants:
        key = (v.template, v.template_sha)
        found.setdefault(key, (v.template_file, set()))[1].add(v.rule_id)
    return [
        Version(t, sha, file, frozenset(rules)) for (t, sha), (file, rules) in sorted(found.items())
    ]


def is_urgent(campaign: Campaign, template: str) -> bool:
    """Whether the config lets this template go out before approval (urgent alerts)."""
    setting = campaign.config.approval
    name = template.rsplit("/", 1)[-1].removesuffix(".j2").split(".", 1)[0]
    return template in setting.urgent or name in setting.urgent


def ledger_path(campaign: Campaign) -> Path:
    return campaign.base_dir / campaign.config.approval.file


def read_ledger(path: Path, shown: str) -> tuple[list[LedgerEntry], list[str]]:
    """The entries of the ledger file and what is wrong with it (file: entry n: key: ...)."""
    if not path.exists():
        return [], []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        return [], [f"{shown}: 无法读取审核记录 cannot read the approval ledger: {exc}"]
    items = data.get("approvals") if isinstance(data, dict) else None
    if items is None:
        items = []
    if not isinstance(items, list):
        return [], [f"{shown}: approvals: 应为列表 expected a list of approvals"]
    entries: list[LedgerEntry] = []
    problems: list[str] = []
    for n, item in enumerate(items, start=1):
        where = f"{shown}: approvals[{n}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: 应为映射 expected template, version, by, at, note")
            continue
        unknown = set(item) - {"template", "version", "by", "at", "note", "state"}
        if unknown:
            problems.append(f"{where}: 未知键 unknown keys {', '.join(sorted(unknown))}")
        version = str(item.get("version", ""))
        if not SHA.fullmatch(version):
            problems.append(
                f"{where}.version: 应为 64 位十六进制 expected a sha256 (64 hex digits)"
            )
            continue
        if not str(item.get("template", "")) or not str(item.get("by", "")).strip():
            problems.append(f"{where}: template 和 by 不能为空 template and by are required")
            continue
        entries.append(
            LedgerEntry(
                str(item["template"]),
                version,
                str(item["by"]).strip(),
                str(item.get("at", "")),
                str(item.get("note", "") or ""),
                str(item.get("state", "approved")),
            )
        )
    return entries, problems


def append_entry(path: Path, entry: LedgerEntry) -> None:
    """Append one entry (creating the file with its header)."""
    lines = [
        f"  - template: {yaml.safe_dump(entry.template, allow_unicode=True).splitlines()[0]}\n",
        f"    version: {entry.version}\n",
        f"    by: {yaml.safe_dump(entry.by, allow_unicode=True).splitlines()[0]}\n",
        f"    at: '{entry.at}'\n",
        f"    note: {yaml.safe_dump(entry.note, allow_unicode=True, width=1000).splitlines()[0]}\n",
    ]
    if entry.state != "approved":
        lines.append(f"    state: {entry.state}\n")
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if not text.strip():
        text = HEADER
    elif not text.endswith("\n"):
        text += "\n"
    if "approvals: []" in text:
        text = text.replace("approvals: []", "approvals:")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "".join(lines), encoding="utf-8")


def attach_ledger(versions: list[Version], entries: list[LedgerEntry]) -> list[Version]:
    """Mark the versions the ledger approves (an approval already found is kept)."""
    approved = {(e.template, e.version): e for e in entries if e.state == "approved"}
    for v in versions:
        if v.approval is None:
            v.approval = approved.get((v.template, v.template_sha))
    return versions


def refusals(campaign: Campaign, versions: list[Version]) -> list[str]:
    """One line per version a rule may send that is not approved (urgent ones excepted)."""
    out = []
    for v in versions:
        if v.approved or is_urgent(campaign, v.template):
            continue
        rules = ", ".join(sorted(v.rules))
        out.append(
            f"{v.file}: 内容未审核 template version {v.short} is not approved (rules: {rules});"
            f" approve it: broadcaster approve {v.template} --by NAME --note TEXT"
        )
    return out


def now_text(at: dt.datetime) -> str:
    return at.replace(microsecond=0).isoformat()


def when_text(at: object, tz: Any) -> str:
    """An approval's time as shown: a table row's datetime or a ledger entry's text."""
    if isinstance(at, dt.datetime):
        return f"{at.astimezone(tz):%Y-%m-%d %H:%M}"
    try:
        return f"{dt.datetime.fromisoformat(str(at)).astimezone(tz):%Y-%m-%d %H:%M}"
    except ValueError:
        return str(at)


def offline_refusals(campaign: Campaign) -> list[str]:
    """What `validate` refuses, from the ledger file alone (no database)."""
    if not campaign.config.approval.required:
        return []
    path = ledger_path(campaign)
    try:
        shown = str(path.relative_to(campaign.base_dir))
    except ValueError:
        shown = str(path)
    entries, problems = read_ledger(path, shown)
    return problems + refusals(campaign, attach_ledger(versions_of(campaign), entries))
