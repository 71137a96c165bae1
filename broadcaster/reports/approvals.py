"""审核把关 Content approval: a template version (the sha256 over the template and its
fragments, as the log records it per delivery) must be approved before any rule sends it.

Approvals are rows of the append-only `approvals` table in the delivery log's database:
who, when, which version, a note. With `approval: {required: true}` in the config,
`validate` and `run` refuse a campaign whose rules can send an unapproved version, and the
dispatcher holds back (logs as skipped, `content`) any delivery whose version is not
approved, such as a template edited while `run` is running. Templates the config lists
under `approval.urgent` (early-warning alerts) may go out before approval: each such
version is recorded once as `urgent` (sent before approval) and stays pending until a
person approves it after the fact.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from broadcaster.log import DeliveryLog
from broadcaster.log.engines import pg_engine, sqlite_engine
from broadcaster.log.models import approvals
from broadcaster.model.campaign import Campaign
from broadcaster.reports.ledger import (
    LedgerEntry,
    Version,
    append_entry,
    attach_ledger,
    is_urgent,
    ledger_path,
    now_text,
    read_ledger,
)
from broadcaster.vocab import ErrorClass

__all__ = ["APPROVED", "URGENT", "ApprovalGate", "ApprovalRow", "ApprovalStore", "approve"]

T = TypeVar("T")
APPROVED = "approved"
URGENT = "urgent"  # sent before approval under the urgent switch; approve after the fact


@dataclass(frozen=True)
class ApprovalRow:
    template: str
    template_sha: str
    file: str
    state: str
    by: str
    at: dt.datetime
    note: str


class ApprovalStore:
    """Reads and writes of the approvals table; writes on an engine of their own."""

    def __init__(self, log: DeliveryLog):
        self.log = log
        parsed = log.url
        busy = log.target.busy_timeout
        self._engine: Engine = (
            sqlite_engine(parsed, busy, immediate=True, pool_size=1)
            if parsed.get_backend_name() == "sqlite"
            else pg_engine(parsed, busy, pool_size=1)
        )

    def close(self) -> None:
        self._engine.dispose()

    def _write(self, fn: Callable[[Connection], T]) -> T:
        try:
            with self._engine.begin() as conn:
                return fn(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise self.log.target.translate(exc) from exc

    def rows(self, shas: Iterable[str] | None = None) -> list[ApprovalRow]:
        """Every approval row (of these versions), oldest first."""
        query = sa.select(approvals).order_by(approvals.c.id)
        if shas is not None:
            query = query.where(approvals.c.template_sha.in_(sorted(set(shas))))
        rows = self.log.read(lambda conn: list(conn.execute(query)))
        return [
            ApprovalRow(r.template, r.template_sha, r.file, r.state, r.by, r.at, r.note)
            for r in rows
        ]

    def add(
        self, version: Version, *, state: str, by: str, note: str, at: dt.datetime
    ) -> ApprovalRow:
        row = ApprovalRow(version.template, version.template_sha, version.file, state, by, at, note)
        self._write(
            lambda conn: conn.execute(
                approvals.insert().values(
                    template=row.template,
                    template_sha=row.template_sha,
                    file=row.file,
                    state=row.state,
                    by=row.by,
                    at=row.at,
                    note=row.note,
                )
            )
        )
        return row

    def attach(self, versions: list[Version], ledger: Path | None = None) -> list[Version]:
        """Fill each version's approval (the first approving row, else a ledger entry) and
        its urgent record."""
        by_key: dict[tuple[str, str], list[ApprovalRow]] = {}
        for row in self.rows(v.template_sha for v in versions):
            by_key.setdefault((row.template, row.template_sha), []).append(row)
        for v in versions:
            found = by_key.get((v.template, v.template_sha), [])
            v.approval = next((r for r in found if r.state == APPROVED), None)
            v.urgent = next((r for r in found if r.state == URGENT), None)
        if ledger is not None:
            attach_ledger(versions, read_ledger(ledger, str(ledger))[0])
        return versions


def approve(
    store: ApprovalStore,
    campaign: Campaign,
    version: Version,
    *,
    by: str,
    note: str,
    at: dt.datetime,
    state: str = APPROVED,
) -> ApprovalRow:
    """Record an approval in the log's table and on the config's ledger file."""
    row = store.add(version, state=state, by=by, note=note, at=at)
    append_entry(
        ledger_path(campaign),
        LedgerEntry(version.template, version.template_sha, by, now_text(at), note, state),
    )
    return row


class ApprovalGate:
    """The dispatcher's check per delivery: None to send, else (error class, reason) to
    hold it back (logged as skipped). Approved versions are remembered; an unknown one is
    looked up again, so an approval given while `run` runs takes effect at once."""

    def __init__(self, campaign: Campaign, store: ApprovalStore, clock: Callable[[], dt.datetime]):
        self.campaign = campaign
        self.store = store
        self.clock = clock
        self._approved: set[tuple[str, str]] = set()
        self._urgent_logged: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def check(self, template: str, template_sha: str) -> tuple[ErrorClass, str] | None:
        """None when the version may be sent (approved, or urgent), else why not; records
        nothing (the console's preview asks this)."""
        key = (template, template_sha)
        with self._lock:
            if key in self._approved:
                return None
        rows = [r for r in self.store.rows([template_sha]) if r.template == template]
        entries, _ = read_ledger(ledger_path(self.campaign), "")
        in_ledger = any((e.template, e.version) == key and e.state == APPROVED for e in entries)
        if in_ledger or any(r.state == APPROVED for r in rows):
            with self._lock:
                self._approved.add(key)
            return None
        if is_urgent(self.campaign, template):
            return None
        return (
            ErrorClass.CONTENT,
            f"内容未审核 not approved: {self._file(template)} version {template_sha[:12]}"
            f" (broadcaster approve {template})",
        )

    def __call__(self, template: str, template_sha: str) -> tuple[ErrorClass, str] | None:
        """The dispatcher's check: as `check`, and an urgent version sent before approval is
        recorded (once) as such."""
        verdict = self.check(template, template_sha)
        key = (template, template_sha)
        with self._lock:
            if verdict is not None or key in self._approved or key in self._urgent_logged:
                return verdict
            self._urgent_logged.add(key)
        rows = [r for r in self.store.rows([template_sha]) if r.template == template]
        if not any(r.state == URGENT for r in rows):
            approve(
                self.store,
                self.campaign,
                Version(template, template_sha, self._file(template)),
                state=URGENT,
                by="broadcaster",
                note="紧急预警先发后审 urgent alert sent before approval: approve it after the fact",
                at=self.clock(),
            )
        return None

    def _file(self, template: str) -> str:
        for v in self.campaign.variants:
            if v.template == template:
                return v.template_file
        try:
            return self.campaign.renderer.source(template)[1]
        except Exception:
            return template


def gate_for(campaign: Campaign, log: DeliveryLog, clock: Any) -> ApprovalGate | None:
    """The gate when the config requires approval, else None."""
    if not campaign.config.approval.required:
        return None
    return ApprovalGate(campaign, ApprovalStore(log), clock.now)
