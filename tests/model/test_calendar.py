from __future__ import annotations

import datetime as dt
from pathlib import Path

import chinese_calendar
import holidays as holidays_pkg
import pytest

from broadcaster.errors import CalendarError
from broadcaster.model.calendar import (
    ChinaCalendar,
    load_year_file,
    lunar_dates_in_year,
    lunar_label,
    lunar_to_solar,
    solar_term_date,
    statutory_holidays,
)

CAL = ChinaCalendar.load(None)
SHIPPED = sorted(CAL.years)


def test_ships_one_file_per_year_through_2026() -> None:
    assert SHIPPED[0] == 2004
    assert SHIPPED[-1] == 2026
    assert list(range(2004, 2027)) == SHIPPED
    for year in SHIPPED:
        data = CAL.years[year]
        assert data.source_title == f"国务院办公厅关于{year}年部分节假日安排的通知"
        assert data.source_url.startswith("https://")


@pytest.mark.parametrize("year", SHIPPED)
def test_make_up_days_are_weekends_and_holidays_match_the_holidays_package(year: int) -> None:
    data = CAL.years[year]
    for d, _ in data.workdays:
        assert d.weekday() >= 5, d
        assert CAL.is_working_day(d)
    official = holidays_pkg.China(years=year)
    off_days = {d for p in data.holidays for d in p.days()}
    # every statutory holiday the holidays package knows is a rest day in our file
    for d in official:
        if d.year == year and d.weekday() < 5:
            assert d in off_days, (d, official[d])
    # and agrees day by day with chinesecalendar (the generator's source)
    d = dt.date(year, 1, 1)
    while d.year == year:
        assert CAL.is_working_day(d) == chinese_calendar.is_workday(d), d
        d += dt.timedelta(days=1)


def test_2026_spring_festival_and_its_make_up_saturdays() -> None:
    spring = next(p for p in CAL.holidays(2026) if p.name == "春节")
    assert (spring.start, spring.end) == (dt.date(2026, 2, 15), dt.date(2026, 2, 23))
    assert CAL.is_working_day(dt.date(2026, 2, 14))  # Saturday, 调休
    assert CAL.is_working_day(dt.date(2026, 2, 28))
    assert not CAL.is_working_day(dt.date(2026, 2, 16))  # Monday inside the holiday
    assert CAL.holiday_name(dt.date(2026, 2, 17)) == "春节"


def test_next_working_day_rolls_over_holidays_and_weekends() -> None:
    # 2026-10-05 (Monday) is inside 国庆节 1-7 Oct; 10-10 is a make-up Saturday
    assert CAL.next_working_day(dt.date(2026, 10, 5)).date == dt.date(2026, 10, 8)
    assert CAL.next_working_day(dt.date(2026, 10, 10)).date == dt.date(2026, 10, 10)
    assert CAL.next_working_day(dt.date(2026, 3, 7)).date == dt.date(2026, 3, 9)  # Saturday
    assert CAL.next_working_day(dt.date(2026, 3, 9), include_self=False).date == dt.date(
        2026, 3, 10
    )
    assert not CAL.next_working_day(dt.date(2026, 3, 7)).estimated


def test_an_unknown_year_is_estimated_never_silently_guessed() -> None:
    assert not CAL.is_known(2027)
    answer = CAL.next_working_day(dt.date(2027, 10, 1))
    assert answer.estimated
    assert answer.date == dt.date(2027, 10, 4)  # statutory 1-3 October, no 调休 invented
    periods = CAL.holidays(2027)
    assert all(p.estimated for p in periods)
    spring = next(p for p in periods if p.name == "春节")
    assert spring.start == dt.date(2027, 2, 5)  # 除夕
    assert spring.end == dt.date(2027, 2, 8)


def test_statutory_estimate_reproduces_the_law_for_a_known_year() -> None:
    # the estimate's rest days are a subset of the real 2026 arrangement
    real = {d for p in CAL.holidays(2026) for d in p.days()}
    estimated = {d for p in statutory_holidays(2026) for d in p.days()}
    assert estimated <= real


def test_lunar_dates_and_solar_terms_cover_1901_to_2100() -> None:
    assert lunar_to_solar(1901, 1, 1) == dt.date(1901, 2, 19)
    assert lunar_to_solar(2026, 1, 1) == dt.date(2026, 2, 17)
    assert lunar_to_solar(2100, 1, 1) == dt.date(2100, 2, 9)
    assert lunar_to_solar(2026, 12, 30) is None  # 腊月 of 2026 has 29 days
    assert solar_term_date(2026, "清明") == dt.date(2026, 4, 5)
    assert solar_term_date(1901, "清明") == dt.date(1901, 4, 5)
    assert solar_term_date(2100, "冬至").month == 12
    assert lunar_dates_in_year(2027, 12, 23) == [dt.date(2027, 1, 30)]  # 小年 of lunar 2026
    assert lunar_label(dt.date(2027, 1, 30)) == "腊月廿三"
    with pytest.raises(CalendarError, match="1901-2100"):
        lunar_to_solar(2101, 1, 1)


def test_lunar_new_year_matches_the_holidays_package_every_year() -> None:
    from holidays.calendars.chinese import _ChineseLunisolar

    reference = _ChineseLunisolar()
    differ = [
        y
        for y in range(1901, 2100)
        if lunar_to_solar(y, 1, 1) != reference.lunar_new_year_date(y)[0]
    ]
    # 1916: the Hong Kong Observatory tables give 3 February, as lunar_python does
    assert differ == [1916]
    assert lunar_to_solar(1916, 1, 1) == dt.date(1916, 2, 3)


def _write(folder: Path, year: int, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{year}.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def test_override_folder_adds_a_year_published_after_the_release(tmp_path: Path) -> None:
    _write(
        tmp_path,
        2027,
        "year: 2027\nsource: {title: 国务院办公厅关于2027年部分节假日安排的通知, url: https://www.gov.cn/x}\n"
        "holidays:\n  - {name: 国庆节, en: National Day, start: 2027-10-01, end: 2027-10-07}\n"
        "workdays:\n  - {date: 2027-09-26, for: 国庆节}\n",
    )
    cal = ChinaCalendar.load(tmp_path)
    assert cal.is_known(2027) and cal.years[2027].overridden
    assert cal.next_working_day(dt.date(2027, 10, 5)).date == dt.date(2027, 10, 8)
    assert not cal.next_working_day(dt.date(2027, 10, 5)).estimated
    assert cal.is_working_day(dt.date(2027, 9, 26))


def test_bad_override_file_names_file_line_and_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path, 2027, "year: 2027\nholidays: []\nworkdays:\n  - {date: 2027-09-27, for: 国庆节}\n"
    )
    with pytest.raises(CalendarError) as info:
        load_year_file(path)
    assert str(info.value) == (
        f"{path}:4: workdays[0].date: 调休上班日应为周末 a make-up working day must be a Saturday "
        "or Sunday; 2027-09-27 is a weekday"
    )


def test_freshness_warns_and_fails_from_october_when_next_year_is_missing() -> None:
    assert CAL.freshness_warnings(dt.date(2026, 9, 30)) == []
    [(message, serious)] = CAL.freshness_warnings(dt.date(2026, 10, 1))
    assert serious
    assert message.startswith("缺少 2027 年节假日安排 no official holiday file for 2027")
    # before October, a campaign reaching into next year is warned about, not failed
    [(_, serious)] = CAL.freshness_warnings(dt.date(2026, 3, 1), {2027})
    assert not serious
    # this year missing always fails
    [(_, serious)] = CAL.freshness_warnings(dt.date(2027, 1, 5))
    assert serious


def test_previous_working_day_rolls_back_over_holidays_and_weekends() -> None:
    assert CAL.previous_working_day(dt.date(2026, 10, 5)).date == dt.date(2026, 9, 30)  # 国庆
    assert CAL.previous_working_day(dt.date(2026, 10, 11)).date == dt.date(
        2026, 10, 10
    )  # 调休 Saturday
    assert CAL.previous_working_day(dt.date(2026, 3, 9), include_self=False).date == dt.date(
        2026, 3, 6
    )
    assert CAL.previous_working_day(dt.date(2027, 10, 3)).estimated
