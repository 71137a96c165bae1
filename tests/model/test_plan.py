from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger

from broadcaster.model.config import load_campaign
from broadcaster.model.plan import Planner
from tests.conftest import MINI, TZ, write_campaign

YEAR_START = dt.datetime(2026, 1, 1, tzinfo=TZ)
YEAR_END = dt.datetime(2027, 1, 1, tzinfo=TZ)


def planner_for(tmp_path: Path, text: str = MINI, **kw: object) -> Planner:
    return Planner(load_campaign(write_campaign(tmp_path, text, **kw), today=dt.date(2026, 3, 2)))


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=TZ)


def test_weekday_rule_fires_exactly_when_cron_does(tmp_path: Path) -> None:
    planner = planner_for(tmp_path)
    spec = planner.campaign.rule("twice-weekly")
    ours = [o.at for o in planner.rule_occurrences(spec, YEAR_START, YEAR_END)]
    trigger = CronTrigger(day_of_week="tue,fri", hour=10, minute=0, timezone=TZ)
    theirs, prev = [], None
    nxt = trigger.get_next_fire_time(None, YEAR_START)
    while nxt and nxt < YEAR_END:
        theirs.append(nxt)
        prev = nxt
        nxt = trigger.get_next_fire_time(prev, prev + dt.timedelta(seconds=1))
    assert ours == theirs
    assert len(ours) == 104


def test_monthly_rule_rolls_to_the_next_working_day(tmp_path: Path) -> None:
    planner = planner_for(tmp_path)
    spec = planner.campaign.rule("sms-monthly")
    days = [o.at.date() for o in planner.rule_occurrences(spec, YEAR_START, YEAR_END)]
    assert dt.date(2026, 2, 5) in days  # a Thursday: stays
    assert dt.date(2026, 4, 7) in days  # Sunday 5 April inside 清明 4-6 April: Tuesday the 7th
    assert dt.date(2026, 10, 8) in days  # 国庆 1-7 October
    assert dt.date(2026, 7, 6) in days  # Sunday 5 July: Monday
    assert len(days) == 12
    assert all(planner.campaign.calendar.is_working_day(d) for d in days)
    assert not any(o.estimated for o in planner.rule_occurrences(spec, YEAR_START, YEAR_END))


def test_rolled_dates_that_collide_fire_once(tmp_path: Path) -> None:
    text = MINI.replace("monthdays: [5]", "monthdays: [3, 4, 5]")
    planner = planner_for(tmp_path, text)
    spec = planner.campaign.rule("sms-monthly")
    october = [o.at for o in planner.rule_occurrences(spec, at(2026, 10, 1), at(2026, 11, 1))]
    assert october == [at(2026, 10, 8, 9)]  # 3, 4 and 5 October all roll to the 8th


def test_skip_and_previous_working_day_policies(tmp_path: Path) -> None:
    planner = planner_for(
        tmp_path, MINI.replace("on_holiday: next_working_day", "on_holiday: skip")
    )
    days = [
        o.at.date()
        for o in planner.rule_occurrences(
            planner.campaign.rule("sms-monthly"), YEAR_START, YEAR_END
        )
    ]
    assert dt.date(2026, 4, 7) not in days and dt.date(2026, 4, 5) not in days
    # skipped: 5 April (Sunday, 清明), 5 May (劳动节), 5 July, 5 September, 5 December (weekends), 5 October (国庆)
    assert len(days) == 6
    planner = planner_for(
        tmp_path, MINI.replace("on_holiday: next_working_day", "on_holiday: previous_working_day")
    )
    days = [
        o.at.date()
        for o in planner.rule_occurrences(
            planner.campaign.rule("sms-monthly"), YEAR_START, YEAR_END
        )
    ]
    assert dt.date(2026, 4, 3) in days  # Friday before 清明
    assert dt.date(2026, 9, 30) in days  # before 国庆


def test_daily_repeat_and_quiet_free_times(tmp_path: Path) -> None:
    text = MINI.replace(
        'when: {weekdays: [tue, fri], at: "10:00"}',
        'when: {daily: true, at: "08:00", repeat: {every: 2h, until: "20:00"}}',
    )
    planner = planner_for(tmp_path, text)
    day = [
        o.at.hour
        for o in planner.rule_occurrences(
            planner.campaign.rule("twice-weekly"), at(2026, 3, 3), at(2026, 3, 4)
        )
    ]
    assert day == [8, 10, 12, 14, 16, 18, 20]


def test_nothing_fires_outside_the_campaign_or_the_rules_phases(tmp_path: Path) -> None:
    text = MINI.replace(
        "  - {id: main, name: 集中宣传, start: 2026-01-01, end: 2026-12-31}",
        "  - {id: prep, name: 动员, start: 2026-01-01, end: 2026-01-31}\n  - {id: main, name: 集中宣传, start: 2026-02-01, end: 2026-06-30}",
    ).replace("channels: [handoff]", "channels: [handoff]\n    phases: [main]")
    planner = planner_for(tmp_path, text)
    occurrences = list(
        planner.rule_occurrences(planner.campaign.rule("twice-weekly"), YEAR_START, YEAR_END)
    )
    assert occurrences[0].at.date() == dt.date(2026, 2, 3)
    assert occurrences[-1].at.date() == dt.date(2026, 6, 30)


def test_working_day_occurrences_in_an_unknown_year_are_marked_estimated(tmp_path: Path) -> None:
    text = MINI.replace("end: 2026-12-31}", "end: 2027-12-31}")
    planner = planner_for(tmp_path, text)
    spec = planner.campaign.rule("sms-monthly")
    occurrences = list(planner.rule_occurrences(spec, at(2026, 12, 1), at(2027, 3, 1)))
    assert [(o.at.date(), o.estimated) for o in occurrences] == [
        (dt.date(2026, 12, 7), False),  # 5 December 2026 is a Saturday
        (dt.date(2027, 1, 5), True),
        (dt.date(2027, 2, 9), True),  # statutory 春节 2027 is 除夕 5 Feb to 8 Feb: estimated
    ]
    # the rule that ignores the calendar is not estimated
    weekly = planner.rule_occurrences(
        planner.campaign.rule("twice-weekly"), at(2027, 1, 1), at(2027, 2, 1)
    )
    assert not any(o.estimated for o in weekly)


def test_plan_is_deterministic_and_time_ordered(tmp_path: Path) -> None:
    path = write_campaign(tmp_path)
    first = [
        (i.occurrence.id, i.channel_id, i.target_id, i.topic, i.length)
        for i in Planner(load_campaign(path, today=dt.date(2026, 3, 2))).items(YEAR_START, YEAR_END)
    ]
    second = [
        (i.occurrence.id, i.channel_id, i.target_id, i.topic, i.length)
        for i in Planner(load_campaign(path, today=dt.date(2026, 3, 2))).items(YEAR_START, YEAR_END)
    ]
    assert first == second
    times = [i.split("@")[1] for i, *_ in first]
    assert times == sorted(times)


def test_a_window_gives_the_same_items_as_the_whole_year(tmp_path: Path) -> None:
    planner = planner_for(tmp_path)
    whole = [(i.occurrence.id, i.target_id, i.topic) for i in planner.items(YEAR_START, YEAR_END)]
    march = [
        (i.occurrence.id, i.target_id, i.topic)
        for i in planner.items(at(2026, 3, 1), at(2026, 4, 1))
    ]
    assert march == [x for x in whole if x[0].split("@")[1].startswith("2026-03")]


def test_topics_rotate_so_no_group_gets_the_same_one_twice_in_a_row(tmp_path: Path) -> None:
    planner = planner_for(tmp_path, MINI.replace("topics: [delta]", "topics: [delta, alpha]"))
    by_target: dict[str, list[tuple[str | None, str | None]]] = {}
    for item in planner.items(YEAR_START, YEAR_END):
        if item.channel_id == "handoff":
            by_target.setdefault(item.target_id, []).append((item.theme, item.topic))
    assert set(by_target) == {"g1", "g2"}
    for pushes in by_target.values():
        same_theme_pairs = [(a, b) for a, b in itertools.pairwise(pushes) if a[0] == b[0]]
        assert len(same_theme_pairs) > 90
        assert all(a[1] != b[1] for a, b in same_theme_pairs)
        assert {t for theme, t in pushes if theme == "routine"} == {"alpha", "beta", "gamma"}
        assert {t for theme, t in pushes if theme == "festive"} == {"delta", "alpha"}


def test_the_highest_priority_occasion_picks_the_theme(tmp_path: Path) -> None:
    text = MINI.replace(
        "occasions:\n",
        'occasions:\n  - {id: low, name: 低优先, date: "02-01", until: "02-28", priority: 10, theme: routine}\n',
    )
    planner = planner_for(tmp_path, text)
    themes = {
        i.occurrence.at.date(): (i.theme, i.occasion)
        for i in planner.items(at(2026, 2, 1), at(2026, 3, 1))
        if i.target_id == "g1"
    }
    # 春节 2026-02-17, window 7 days each side; higher priority than 'low'
    assert themes[dt.date(2026, 2, 10)] == ("festive", "spring")
    assert themes[dt.date(2026, 2, 24)] == ("festive", "spring")
    assert themes[dt.date(2026, 2, 6)] == ("routine", "low")
    assert themes[dt.date(2026, 2, 27)] == ("routine", "low")


def test_occasions_limited_to_an_audience_only_reach_it(tmp_path: Path) -> None:
    text = MINI.replace("theme: festive}", "theme: festive, audiences: [parents]}").replace(
        "      - {id: g2, name: 二组群, tags: [group]}",
        "      - {id: g2, name: 二组家长群, tags: [group], audience: parents}",
    )
    planner = planner_for(
        tmp_path,
        text,
        templates={
            "bot/delta.parents.j2": "### {{ occasion.name }}·家长请注意\n{{ topic.slogan }}"
        },
    )
    items = {
        (i.target_id, i.theme, i.template) for i in planner.items(at(2026, 2, 17), at(2026, 2, 21))
    }
    assert ("g2", "festive", "bot/delta.parents.j2") in items
    assert all(theme == "routine" for target, theme, _ in items if target == "g1")


def test_contact_channels_fan_out_to_each_number(tmp_path: Path) -> None:
    planner = planner_for(tmp_path)
    [item] = [i for i in planner.items(at(2026, 3, 1), at(2026, 4, 1)) if i.channel_id == "texts"]
    assert item.recipients == 2
    assert (
        item.length == len("凡是甲就是诈骗，请拨110")
        or item.length == len("凡是乙就是诈骗，请拨110")
        or item.length == len("凡是丙就是诈骗，请拨110")
    )


@pytest.mark.parametrize("window_days", [1, 7, 31])
def test_occurrences_merge_rules_in_time_order(tmp_path: Path, window_days: int) -> None:
    planner = planner_for(tmp_path)
    occurrences = list(
        planner.occurrences(at(2026, 3, 1), at(2026, 3, 1) + dt.timedelta(days=window_days))
    )
    assert occurrences == sorted(occurrences, key=lambda o: o.at)
