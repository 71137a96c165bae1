"""The mainland China calendar: official holidays, make-up working days (调休), lunar dates.

Official arrangements come from one readable YAML file per year, shipped in
`broadcaster/model/calendar_data/` with the State Council notice they copy, plus an
override folder for years published after a release (a file there replaces the
shipped one of the same year). A year with no file is never silently guessed:
its working days are estimated from the statutory holidays and weekends, and
every answer that depended on them says so (`estimated=True`).

Lunar dates and solar terms, 1901-2100, come from `lunar_python` (MIT).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

import yaml
from lunar_python import Lunar, LunarMonth, Solar

from broadcaster.errors import CalendarError

__all__ = [
    "LUNAR_RANGE",
    "SOLAR_TERMS",
    "ChinaCalendar",
    "HolidayPeriod",
    "WorkingDay",
    "YearData",
    "lunar_label",
    "lunar_to_solar",
    "solar_term_date",
]

LUNAR_RANGE = (1901, 2100)

SOLAR_TERMS = [
    "小寒",
    "大寒",
    "立春",
    "雨水",
    "惊蛰",
    "春分",
    "清明",
    "谷雨",
    "立夏",
    "小满",
    "芒种",
    "夏至",
    "小暑",
    "大暑",
    "立秋",
    "处暑",
    "白露",
    "秋分",
    "寒露",
    "霜降",
    "立冬",
    "小雪",
    "大雪",
    "冬至",
]

# lunar_python names the terms of the following cycle in pinyin.
_PINYIN_TERMS = {
    "DONG_ZHI": "冬至",
    "XIAO_HAN": "小寒",
    "DA_HAN": "大寒",
    "LI_CHUN": "立春",
    "YU_SHUI": "雨水",
    "JING_ZHE": "惊蛰",
    "DA_XUE": "大雪",
}

LUNAR_MONTHS = ["正", "二", "三", "四", "五", "六", "七", "八", "九", "十", "冬", "腊"]


@dataclass(frozen=True)
class HolidayPeriod:
    """A run of official rest days, e.g. 春节 2026-02-15..2026-02-23."""

    name: str
    en: str
    start: dt.date
    end: dt.date
    estimated: bool = False

    def days(self) -> list[dt.date]:
        n = (self.end - self.start).days + 1
        return [self.start + dt.timedelta(days=i) for i in range(n)]


@dataclass(frozen=True)
class YearData:
    """One year's official arrangement, as published."""

    year: int
    holidays: tuple[HolidayPeriod, ...]
    workdays: tuple[tuple[dt.date, str], ...]  # make-up working days and what they make up for
    source_title: str
    source_url: str
    file: str
    overridden: bool = False


@dataclass(frozen=True)
class WorkingDay:
    """The answer of a working-day question, and whether it is only estimated."""

    date: dt.date
    estimated: bool


# --- lunar dates -------------------------------------------------------------------------------


@cache
def lunar_month_days(lunar_year: int, month: int) -> int:
    """Days (29 or 30) in a (non-leap) lunar month."""
    return LunarMonth.fromYm(lunar_year, month).getDayCount()


@cache
def lunar_to_solar(lunar_year: int, month: int, day: int) -> dt.date | None:
    """Gregorian date of a lunar date, or None when that day does not exist that year."""
    if not LUNAR_RANGE[0] <= lunar_year <= LUNAR_RANGE[1]:
        raise CalendarError(
            f"农历日期超出支持范围 lunar dates are supported for {LUNAR_RANGE[0]}-{LUNAR_RANGE[1]}; "
            f"got {lunar_year}"
        )
    if day > lunar_month_days(lunar_year, month):
        return None
    solar = Lunar.fromYmd(lunar_year, month, day).getSolar()
    return dt.date(solar.getYear(), solar.getMonth(), solar.getDay())


def lunar_dates_in_year(year: int, month: int, day: int) -> list[dt.date]:
    """Every Gregorian date in `year` that is lunar month/day (usually one, rarely zero)."""
    found = []
    for lunar_year in (year - 1, year):
        if LUNAR_RANGE[0] <= lunar_year <= LUNAR_RANGE[1]:
            d = lunar_to_solar(lunar_year, month, day)
            if d is not None and d.year == year:
                found.append(d)
    return found


@cache
def _solar_terms_of(year: int) -> dict[str, dt.date]:
    terms: dict[str, dt.date] = {}
    for probe in (dt.date(year, 1, 15), dt.date(year, 6, 15), dt.date(year, 12, 15)):
        table = Solar.fromYmd(probe.year, probe.month, probe.day).getLunar().getJieQiTable()
        for key, solar in table.items():
            name = _PINYIN_TERMS.get(key, key)
            if name in SOLAR_TERMS and solar.getYear() == year:
                terms[name] = dt.date(solar.getYear(), solar.getMonth(), solar.getDay())
    return terms


def solar_term_date(year: int, name: str) -> dt.date:
    """Date of a solar term (节气) such as 清明 in a Gregorian year."""
    if not LUNAR_RANGE[0] <= year <= LUNAR_RANGE[1]:
        raise CalendarError(f"节气超出支持范围 solar terms are supported for 1901-2100; got {year}")
    return _solar_terms_of(year)[name]


@lru_cache(maxsize=4096)
def lunar_label(d: dt.date) -> str:
    """Lunar month and day in Chinese, e.g. 腊月廿三."""
    lunar = Solar.fromYmd(d.year, d.month, d.day).getLunar()
    month = lunar.getMonth()
    prefix = "闰" if month < 0 else ""
    return f"{prefix}{LUNAR_MONTHS[abs(month) - 1]}月{lunar.getDayInChinese()}"


# --- statutory estimate for years without an official file -------------------------------------


def statutory_holidays(year: int) -> tuple[HolidayPeriod, ...]:
    """Rest days the law fixes (2025 revision), without any 调休: the estimate for an unknown year."""
    new_year = lunar_to_solar(year, 1, 1)
    assert new_year is not None
    periods = [
        ("元旦", "New Year's Day", dt.date(year, 1, 1), dt.date(year, 1, 1)),
        (
            "春节",
            "Spring Festival",
            new_year - dt.timedelta(days=1),
            new_year + dt.timedelta(days=2),
        ),
        (
            "清明节",
            "Qingming Festival",
            solar_term_date(year, "清明"),
            solar_term_date(year, "清明"),
        ),
        ("劳动节", "Labour Day", dt.date(year, 5, 1), dt.date(year, 5, 2)),
        ("端午节", "Dragon Boat Festival", lunar_to_solar(year, 5, 5), lunar_to_solar(year, 5, 5)),
        ("中秋节", "Mid-Autumn Festival", lunar_to_solar(year, 8, 15), lunar_to_solar(year, 8, 15)),
        ("国庆节", "National Day", dt.date(year, 10, 1), dt.date(year, 10, 3)),
    ]
    return tuple(HolidayPeriod(n, e, s, t, estimated=True) for n, e, s, t in periods)  # type: ignore[arg-type]


# --- data files --------------------------------------------------------------------------------


def _builtin_dir() -> Path:
    return Path(str(resources.files("broadcaster.model") / "calendar_data"))


def _parse_date(value: object, where: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise CalendarError(
            f"{where}: 日期无效 expected a date YYYY-MM-DD; got {value!r}"
        ) from None


def load_year_file(path: Path, *, overridden: bool = False) -> YearData:
    """Read and check one year file; errors name the file, line and key."""
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise CalendarError(f"{path}: 节假日文件无法读取 cannot read holiday file: {exc}") from None

    def line_of(*keys: str | int) -> int:
        n = node
        for key in keys:
            if isinstance(n, yaml.MappingNode):
                n = next((v for k, v in n.value if k.value == key), n)
            elif isinstance(n, yaml.SequenceNode) and isinstance(key, int) and key < len(n.value):
                n = n.value[key]
        return n.start_mark.line + 1 if n is not None else 1

    if not isinstance(raw, dict):
        raise CalendarError(
            f"{path}:1: 节假日文件格式错误 expected a mapping with year, holidays, workdays"
        )
    unknown = set(raw) - {"year", "source", "holidays", "workdays"}
    if unknown:
        key = sorted(unknown)[0]
        raise CalendarError(
            f"{path}:{line_of(key)}: {key}: 未知字段 unknown key; "
            "expected year, source, holidays, workdays"
        )
    try:
        year = int(raw["year"])
    except (KeyError, TypeError, ValueError):
        raise CalendarError(
            f"{path}:{line_of('year')}: year: 缺少年份 expected the year, e.g. 2027"
        ) from None
    if path.stem != str(year):
        raise CalendarError(
            f"{path}:{line_of('year')}: year: 年份与文件名不符 file name says {path.stem}, file says {year}"
        )
    periods = []
    for i, item in enumerate(raw.get("holidays") or []):
        where = f"{path}:{line_of('holidays', i)}: holidays[{i}]"
        if not isinstance(item, dict) or "name" not in item or "start" not in item:
            raise CalendarError(f"{where}: 节假日条目格式错误 expected name, start, end")
        start = _parse_date(item["start"], where + ".start")
        end = _parse_date(item.get("end", start), where + ".end")
        if end < start:
            raise CalendarError(f"{where}.end: 结束早于开始 end {end} is before start {start}")
        periods.append(
            HolidayPeriod(str(item["name"]), str(item.get("en", item["name"])), start, end)
        )
    workdays = []
    for i, item in enumerate(raw.get("workdays") or []):
        where = f"{path}:{line_of('workdays', i)}: workdays[{i}]"
        if not isinstance(item, dict) or "date" not in item:
            raise CalendarError(f"{where}: 调休条目格式错误 expected date and for")
        d = _parse_date(item["date"], where + ".date")
        if d.weekday() < 5:
            raise CalendarError(
                f"{where}.date: 调休上班日应为周末 a make-up working day must be a Saturday or Sunday; "
                f"{d} is a weekday"
            )
        workdays.append((d, str(item.get("for", ""))))
    source = raw.get("source") or {}
    return YearData(
        year=year,
        holidays=tuple(periods),
        workdays=tuple(workdays),
        source_title=str(source.get("title", "")),
        source_url=str(source.get("url", "")),
        file=str(path),
        overridden=overridden,
    )


@dataclass
class ChinaCalendar:
    """Working days and holidays of mainland China, per the shipped and overriding year files."""

    override_dir: Path | None = None
    years: dict[int, YearData] = field(default_factory=dict)
    _off: dict[int, frozenset[dt.date]] = field(default_factory=dict, repr=False)
    _on: dict[int, frozenset[dt.date]] = field(default_factory=dict, repr=False)
    _names: dict[dt.date, str] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, override_dir: Path | None = None) -> ChinaCalendar:
        """Shipped files, then the override folder (a file there wins for its year)."""
        cal = cls(override_dir=override_dir)
        for path in sorted(_builtin_dir().glob("*.yaml")):
            data = load_year_file(path)
            cal.years[data.year] = data
        if override_dir is not None and override_dir.is_dir():
            for path in sorted(override_dir.glob("*.yaml")):
                data = load_year_file(path, overridden=True)
                cal.years[data.year] = data
        return cal

    # -- per-year tables

    def is_known(self, year: int) -> bool:
        return year in self.years

    def holidays(self, year: int) -> tuple[HolidayPeriod, ...]:
        """Official rest periods, or the statutory estimate for a year without a file."""
        data = self.years.get(year)
        return data.holidays if data else statutory_holidays(year)

    def _index(self, year: int) -> None:
        periods = self.holidays(year)
        off = {d for p in periods for d in p.days()}
        for p in periods:
            for d in p.days():
                self._names.setdefault(d, p.name)
        data = self.years.get(year)
        on = {d for d, _ in data.workdays} if data else set()
        self._off[year] = frozenset(off)
        self._on[year] = frozenset(on)

    def holiday_name(self, d: dt.date) -> str | None:
        if d.year not in self._off:
            self._index(d.year)
        return self._names.get(d) if d in self._off[d.year] else None

    # -- working days

    def is_working_day(self, d: dt.date) -> bool:
        """Whether d is a working day (调休 Saturdays included); estimated if its year is unknown."""
        year = d.year
        if year not in self._off:
            self._index(year)
        if d in self._on[year]:
            return True
        if d in self._off[year]:
            return False
        return d.weekday() < 5

    def next_working_day(self, d: dt.date, *, include_self: bool = True) -> WorkingDay:
        """The first working day on or after d (after d when include_self is False).

        The one shared roll-forward rule: report deadlines, "the 5th, or the next working
        day", and rules with `on_holiday: next_working_day` all call this.
        """
        return self._roll(d if include_self else d + dt.timedelta(days=1), dt.timedelta(days=1))

    def previous_working_day(self, d: dt.date, *, include_self: bool = True) -> WorkingDay:
        """The last working day on or before d (before d when include_self is False)."""
        return self._roll(d if include_self else d - dt.timedelta(days=1), dt.timedelta(days=-1))

    def _roll(self, start: dt.date, step: dt.timedelta) -> WorkingDay:
        """The first working day from `start` going by `step`; estimated if any year was unknown."""
        cur = start
        estimated = False
        for _ in range(60):
            estimated = estimated or cur.year not in self.years
            if self.is_working_day(cur):
                return WorkingDay(cur, estimated)
            cur += step
        raise CalendarError(
            f"60 天内没有工作日 no working day within 60 days of {start}"
        )  # pragma: no cover

    # -- data freshness

    def freshness_warnings(
        self, today: dt.date, years: set[int] | None = None, shown_dir: str | None = None
    ) -> list[tuple[str, bool]]:
        """Missing year files, each with whether it is serious enough to fail `validate`.

        This year missing is serious. Next year missing is serious from 1 October (the
        State Council usually publishes in October to December); before that it is only
        reported when the campaign reaches into it. Later years the campaign reaches are
        reported as estimated.
        """
        wanted = {today.year} | {y for y in (years or set()) if y > today.year}
        if today.month >= 10:
            wanted.add(today.year + 1)
        folder = shown_dir or (str(self.override_dir) if self.override_dir else "calendar")
        out: list[tuple[str, bool]] = []
        for year in sorted(wanted):
            if year in self.years:
                continue
            serious = year == today.year or (year == today.year + 1 and today.month >= 10)
            out.append(
                (
                    f"缺少 {year} 年节假日安排 no official holiday file for {year}: working-day "
                    f"dates in {year} are estimated; when the State Council publishes "
                    f"国务院办公厅关于{year}年部分节假日安排的通知, add {folder}/{year}.yaml",
                    serious,
                )
            )
        return out
