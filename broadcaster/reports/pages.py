"""HTML pages the reports write (printable lookup record, report page): Jinja2 with
autoescaping, from the package's `templates/` folder; nothing loads from a network."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, select_autoescape

from broadcaster.reports.chain import LogSeal
from broadcaster.reports.lookup import Subject

__all__ = ["environment", "lookup_record"]

_ENV: Environment | None = None


def environment() -> Environment:
    global _ENV
    if _ENV is None:
        _ENV = Environment(
            loader=PackageLoader("broadcaster.reports", "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
    return _ENV


def lookup_record(
    subject: Subject,
    seal: LogSeal,
    *,
    campaign: str,
    office: str,
    tz: ZoneInfo,
    printed: dt.datetime,
    rows_per_section: int = 12,
) -> str:
    """A one-page printable record of a lookup, with the log's chain head."""

    def local(when: dt.datetime) -> str:
        return f"{when.astimezone(tz):%Y-%m-%d %H:%M}"

    reached: list[Any] = [r for r in subject.rows if r.reached]
    return (
        environment()
        .get_template("record.html")
        .render(
            subject=subject,
            seal=seal,
            campaign=campaign,
            office=office,
            printed=local(printed),
            local=local,
            first=subject.first_reached(),
            last=subject.last_reached(),
            reached_count=len(reached),
            rows_per_section=rows_per_section,
        )
    )
