"""Report periods and due dates: the 5th, 20th and 25th and the weekly Thursday, each moved
to the first working day after a holiday, with the 调休 working days counted."""

from __future__ import annotations

import datetime as dt

import pytest

from broadcaster.model.calendar import ChinaCalendar
from broadcaster.reports.periods import PeriodError, deadlines, parse_period

CAL = ChinaCalendar.load()
D = dt.date


def test_parse() -> None:
    p = parse_period("monthly", "2026-02")
    assert (p.first, p.last, p.label) == (D(2026, 2, 1), D(2026, 2, 28), "2026-02")
    w = parse_period("weekly", "2026-w48")
    assert (w.first, w.last, w.label) == (D(2026, 11, 23), D(2026, 11, 29), "2026-W48")
    assert [b[0] for b in w.buckets()][:2] == ["11-23", "11-24"]
    with pytest.raises(PeriodError, match="has no ISO week 53"):
        parse_period("weekly", "2027-W53")
    with pytest.raises(PeriodError, match="expected a month YYYY-MM"):
        parse_period("monthly", "2026-W48")


def test_monthly_deadlines_across_national_day_and_mid_autumn() -> None:
    due = {d.nominal: d.due for d in deadlines(parse_period("monthly", "2026-09"), CAL)}
    assert due == {
        D(2026, 9, 20): D(2026, 9, 20),  # a Sunday, but a 调休 working day for 国庆节
        D(2026, 9, 25): D(2026, 9, 28),  # 中秋节 9-25..27
        D(2026, 10, 5): D(2026, 10, 8),  # 国庆节 10-01..07
    }
    plain = deadlines(parse_period("monthly", "2026-11"), CAL)
    assert [(d.due, d.moved) for d in plain] == [
        (D(2026, 11, 20), False),
        (D(2026, 11, 25), False),
        (D(2026, 12, 7), True),  # the 5th is a Saturday
    ]
    assert "原定 nominally 12-05" in plain[2].line()


def test_weekly_deadline_is_the_thursday_after_or_the_next_working_day() -> None:
    (normal,) = deadlines(parse_period("weekly", "2026-W48"), CAL)
    assert (normal.due, normal.moved) == (D(2026, 12, 3), False)
    (holiday,) = deadlines(parse_period("weekly", "2026-W39"), CAL)  # Thursday 10-01: 国庆节
    assert (holiday.nominal, holiday.due, holiday.estimated) == (
        D(2026, 10, 1),
        D(2026, 10, 8),
        False,
    )
    (unknown,) = deadlines(parse_period("weekly", "2030-W10"), CAL)
    assert unknown.estimated and "估 estimated" in unknown.line()


def test_run_sends_the_report_reminder_on_the_reports_due_date() -> None:
    """The sample's report-monthly rule (a fixed template through the `reports` channel) fires
    on the day `broadcaster report` says last month's data is due, a Saturday or a holiday
    moving both alike."""
    from broadcaster.model.plan import Planner
    from tests.conftest import REPO
    from tests.reports.fixtures import TZ, sample_campaign

    campaign = sample_campaign(REPO / "schedules.yaml")
    spec = campaign.rule("report-monthly")
    assert spec.rule.template == "report_monthly" and spec.rule.channels == ["reports"]
    planner = Planner(campaign)
    moved = 0
    for month in ("2026-11", "2027-04", "2027-09"):
        (due,) = [d for d in deadlines(parse_period("monthly", month), CAL) if "次月5日" in d.what]
        start = dt.datetime.combine(due.nominal.replace(day=1), dt.time(), tzinfo=TZ)
        fired = [
            o.at.date()
            for o in planner.rule_occurrences(spec, start, start + dt.timedelta(days=28))
        ]
        assert fired == [due.due], month
        moved += due.moved
    assert moved >= 1  # 2026-12-05 is a Saturday
