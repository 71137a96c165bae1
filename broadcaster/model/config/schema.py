"""The shape of `schedules.yaml`, validated once at load by pydantic.

Field-level checks live here; checks that need the whole config (references
between sections, template rendering, the calendar) live in `config.checks`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from broadcaster.vocab import Addressing, MessageKind

__all__ = [
    "ApprovalSettings",
    "Campaign",
    "ChannelInstance",
    "Config",
    "DateRange",
    "Duty",
    "EnvRef",
    "LogSettings",
    "Occasion",
    "Phase",
    "RecipientFilter",
    "Relay",
    "RelayLevel",
    "Rule",
    "Screen",
    "ScreenContent",
    "Selector",
    "Target",
    "Theme",
    "When",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SLUG = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def _err(kind: str, message: str, **ctx: Any) -> PydanticCustomError:
    if "{value!r}" in message:  # pydantic formats plain {name} only
        message = message.replace("{value!r}", "{value}")
        ctx["value"] = repr(ctx["value"])
    return PydanticCustomError(kind, message, ctx)


SLUG_MESSAGE = "标识符格式错误 expected a lower-case identifier (a-z, 0-9, _ . -); got {value!r}"

# checked by pydantic-core itself (a Python validator per id costs seconds on 60,000 targets);
# `explain` words the mismatch as SLUG_MESSAGE
Slug = Annotated[str, StringConstraints(pattern=SLUG.pattern)]


def _time(value: Any) -> dt.time:
    if isinstance(value, dt.time):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}:\d{2}", value):
        h, m = (int(p) for p in value.split(":"))
        if h < 24 and m < 60:
            return dt.time(h, m)
    raise _err(
        "clock_time",
        '时间格式错误 expected a time HH:MM such as "10:00"; got {value!r}',
        value=value,
    )


ClockTime = Annotated[dt.time, BeforeValidator(_time)]


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", value):
        y, m, d = (int(p) for p in value.split("-"))
        try:
            return dt.date(y, m, d)
        except ValueError:
            raise _err(
                "no_such_date", "日期不存在 date does not exist: {value}", value=value
            ) from None
    raise _err("date", "日期格式错误 expected a date YYYY-MM-DD; got {value!r}", value=value)


Date = Annotated[dt.date, BeforeValidator(_date)]


def _month_day(value: Any) -> tuple[int, int]:
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}-\d{1,2}", value):
        m, d = (int(p) for p in value.split("-"))
        if 1 <= m <= 12:
            try:
                dt.date(2024, m, d)  # a leap year: 02-29 exists in some years
                return (m, d)
            except ValueError:
                pass
        raise _err("no_such_date", "日期不存在 date does not exist: {value}", value=value)
    raise _err(
        "month_day",
        '日期格式错误 expected a month-day MM-DD such as "03-15"; got {value!r}',
        value=value,
    )


MonthDay = Annotated[tuple[int, int], BeforeValidator(_month_day)]


def _lunar_month_day(value: Any) -> tuple[int, int]:
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}-\d{1,2}", value):
        m, d = (int(p) for p in value.split("-"))
        if 1 <= m <= 12 and 1 <= d <= 29:
            return (m, d)
        if 1 <= m <= 12 and d == 30:
            raise _err(
                "no_such_lunar_date",
                "农历日期并非每年都有 lunar day 30 does not exist in every year; "
                "anchor on the next month's 1st with before: 1 (除夕 = lunar 01-01, before: 1)",
            )
        raise _err(
            "no_such_lunar_date",
            "农历日期不存在 lunar date does not exist: {value} (months 1-12, days 1-29, or 30 in long months)",
            value=value,
        )
    raise _err(
        "lunar_month_day",
        '农历日期格式错误 expected a lunar month-day MM-DD such as "01-15"; got {value!r}',
        value=value,
    )


LunarMonthDay = Annotated[tuple[int, int], BeforeValidator(_lunar_month_day)]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str | int | dt.date) else value


class Model(BaseModel):
    """Every config model refuses unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Campaign(Model):
    id: Slug
    name: str
    office: str = ""
    timezone: str = "Asia/Shanghai"
    vars: dict[str, str | int | float] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise _err(
                "timezone",
                "未知时区 unknown time zone {value!r}; expected e.g. Asia/Shanghai",
                value=v,
            ) from None
        return v


class CalendarSettings(Model):
    overrides: str = "calendar"  # folder of <year>.yaml files, relative to schedules.yaml


MIN_RETENTION_DAYS = 30  # shorter would drop what a monthly self-inspection still reads


class LogSettings(Model):
    """The delivery log: how long message texts and masked numbers are kept (None: always).

    After `retention_days` a prune empties them; their hashes, the counts and the hash
    chain stay (`broadcaster log prune`, and `run` once a day).
    """

    retention_days: int | None = None

    @field_validator("retention_days")
    @classmethod
    def _retention(cls, v: int | None) -> int | None:
        if v is not None and v < MIN_RETENTION_DAYS:
            raise _err(
                "retention_days",
                "保留期太短 retention_days must be at least {minimum} days; got {value!r}",
                value=v,
                minimum=MIN_RETENTION_DAYS,
            )
        return v


class DateRange(Model):
    start: Date
    end: Date | None = None  # open-ended

    @model_validator(mode="after")
    def _order(self) -> DateRange:
        if self.end is not None and self.end < self.start:
            raise _err(
                "date_order",
                "结束早于开始 end {end} is before start {start}",
                end=str(self.end),
                start=str(self.start),
            )
        return self


class Phase(DateRange):
    id: Slug
    name: str
    theme: str | None = None  # the theme while no occasion applies


class Occasion(Model):
    """A dated reason for a theme: exactly one anchor, widened by `before`/`after` days."""

    id: Slug
    name: str
    theme: str
    priority: int = 50
    date: MonthDay | None = None  # every year, e.g. "03-15"
    until: MonthDay | None = None  # with `date`: a span such as 05-26 .. 06-26
    lunar: LunarMonthDay | None = None  # every lunar year, e.g. "01-01" (春节)
    solar_term: str | None = None  # e.g. 清明
    holiday: str | None = None  # an official holiday period by name, e.g. 国庆节
    dates: list[DateRange] | None = None  # office-entered spans: terms, exams
    before: int = Field(default=0, ge=0, le=120)
    after: int = Field(default=0, ge=0, le=120)
    audiences: list[str] | None = None  # only targets with one of these tags or audiences

    @model_validator(mode="after")
    def _one_anchor(self) -> Occasion:
        anchors = [
            k
            for k in ("date", "lunar", "solar_term", "holiday", "dates")
            if getattr(self, k) is not None
        ]
        if len(anchors) != 1:
            raise _err(
                "anchor",
                "需要且只能有一个日期依据 expected exactly one of date, lunar, solar_term, holiday, dates; got {got}",
                got=", ".join(anchors) or "none",
            )
        if self.until is not None and self.date is None:
            raise _err("until", "until 只能与 date 一起使用 'until' goes with 'date'")
        return self


class Theme(Model):
    name: str
    topics: list[str] = Field(min_length=1)


class EnvRef(Model):
    """A value read from an environment variable: `{env: NAME}`."""

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


AddressPart = str | EnvRef


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _address(value: Any) -> Any:
    if isinstance(value, dict) and "env" not in value and "key" not in value:
        raise _err(
            "address",
            "地址缺少 key a structured address needs 'key' (the address itself), e.g."
            " {key: {env: BOT_KEY}, secret: {env: BOT_SECRET}}",
        )
    parts = value.values() if isinstance(value, dict) and "env" not in value else [value]
    for part in parts:
        if isinstance(part, dict) and set(part) == {"env"}:
            name = part["env"]
            if not (isinstance(name, str) and ENV_NAME.match(name)):
                raise _err(
                    "address",
                    "环境变量名无效 expected a variable name (letters, digits, _; not starting"
                    " with a digit), e.g. {env: BOT_KEY}; got {value!r}",
                    value=name,
                )
    return value


Address = Annotated[AddressPart | dict[str, AddressPart], BeforeValidator(_address)]


class RecipientFilter(Model):
    """Which people of a target's lists: any of `tags` (老年人), in or below one of `areas`."""

    tags: list[str] = Field(default_factory=list)
    areas: list[str] = Field(default_factory=list)

    @field_validator("tags", "areas", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return _one_or_many(v)


class TargetRecipients(RecipientFilter):
    """A recipient list on a target: one imported into the recipient store (`list`), or a
    CSV/XLSX file beside the config (`file`), optionally filtered."""

    list: str | None = None  # name given to `broadcaster recipients import FILE --list NAME`
    file: str | None = None  # CSV (UTF-8 or GBK) or XLSX, relative to the file declaring it

    @model_validator(mode="after")
    def _one_source(self) -> TargetRecipients:
        if (self.list is None) == (self.file is None):
            raise _err(
                "recipients",
                "需要且只能有一个名单来源 expected exactly one of list (imported) or file",
            )
        return self


def _duration(value: Any) -> float:
    """Seconds from "90s", "30m", "2h" or "1d" (or a number of seconds)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)", value) if isinstance(value, str) else None
    if m is None or float(m.group(1)) == 0:
        raise _err(
            "duration",
            '时长格式错误 expected a duration such as "90s", "30m", "2h" or "1d"; got {value!r}',
            value=value,
        )
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


Duration = Annotated[float, BeforeValidator(_duration)]


class ScreenContent(Model):
    """The screen's own (non-anti-fraud) content: an ad, a notice, with how long it shows."""

    id: Slug
    text: str = Field(min_length=1)
    seconds: float = Field(gt=0, le=3600)


class Screen(Model):
    """An LED screen: a target that fetches its playlist (`/led/{id}/playlist`)."""

    channel: str | None = None  # the led channel serving it (default: the only one)
    charset: Literal["gb2312", "gbk", "utf-8"] = "gb2312"
    width: int = Field(default=12, ge=1, le=256)  # full-width characters per line
    lines: int = Field(default=2, ge=1, le=64)  # lines per page
    overflow: Literal["wrap", "reject"] = "wrap"  # a line wider than the screen
    page_seconds: float = Field(default=6, gt=0, le=600)  # per page of an anti-fraud item
    max_gap: Duration = 60.0  # at most this long between two anti-fraud items
    stale_after: Duration = 7200.0  # no fetch for this long: reported stale
    token: EnvRef | None = None  # the screen sends it as ?token= or a Bearer header
    own: list[ScreenContent] = Field(default_factory=list)


class Target(Model):
    """A node of the audience tree: county → township → village → grid or group; school → class."""

    id: Slug
    name: str
    tags: list[str] = Field(default_factory=list)
    audience: str | None = None  # inherited by children when not set
    parent: str | None = None  # only on a top-level target in an included file
    contacts: list[str] = Field(
        default_factory=list
    )  # phone numbers, for contact-addressed channels
    contacts_file: str | None = None  # CSV with a `phone` column (and optionally `name`)
    recipients: TargetRecipients | None = None  # a recipient list: imported, or a CSV/XLSX file
    # channel id -> address on that channel: text, {env: NAME}, or {key: ..., secret: ...}
    address: dict[str, Address] = Field(default_factory=dict)
    vars: dict[str, str | int | float] = Field(default_factory=dict)
    screen: Screen | None = None  # an LED screen: geometry, charset, its own content
    children: list[Target] = Field(default_factory=list)


class ChannelInstance(Model):
    type: str
    kind: MessageKind
    addressing: Addressing | None = None  # default: contacts for sms, else target
    name: str = ""
    enabled: bool | Literal["auto"] = True
    quiet_hours: str | None = None  # "21:00-08:00"; overrides the plugin's default
    max_length: int | None = Field(default=None, gt=0)
    concurrency: int | None = Field(default=None, gt=0, le=1000)
    rate_limit: str | None = None  # "18/60s": at most 18 sends per 60 seconds per endpoint
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, v: str | None) -> str | None:
        if v is None:
            return v
        m = re.fullmatch(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})", v)
        numbers = [int(x) for x in m.groups()] if m else []
        valid = bool(numbers) and all(h < 24 and mm < 60 for h, mm in (numbers[:2], numbers[2:]))
        if not valid or numbers[:2] == numbers[2:]:
            raise _err(
                "quiet_hours",
                '免打扰时段格式错误 expected "HH:MM-HH:MM" such as "21:00-08:00"; got {value!r}',
                value=v,
            )
        return v

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, v: str | None) -> str | None:
        m = re.fullmatch(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)s", v) if v is not None else None
        if v is not None and (m is None or int(m.group(1)) == 0 or float(m.group(2)) == 0):
            raise _err(
                "rate_limit",
                '限速格式错误 expected "COUNT/SECONDSs" such as "18/60s"; got {value!r}',
                value=v,
            )
        return v


class Selector(Model):
    """Which targets a rule reaches: any of `tags`, all of `all_tags`, below `under`, or `ids`."""

    tags: list[str] = Field(default_factory=list)
    all_tags: list[str] = Field(default_factory=list)
    audiences: list[str] = Field(default_factory=list)
    under: list[str] = Field(default_factory=list)
    ids: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)

    @field_validator("tags", "all_tags", "audiences", "under", "ids", "exclude", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return _one_or_many(v)

    @model_validator(mode="after")
    def _something(self) -> Selector:
        if not (self.tags or self.all_tags or self.audiences or self.under or self.ids):
            raise _err(
                "selector",
                "选择条件为空 expected at least one of tags, all_tags, audiences, under, ids",
            )
        return self


class Repeat(Model):
    every: str  # "30m", "2h"
    until: ClockTime

    @field_validator("every")
    @classmethod
    def _every(cls, v: str) -> str:
        m = re.fullmatch(r"(\d+)\s*(m|h)", v)
        if not m or int(m.group(1)) == 0:
            raise _err(
                "every",
                '间隔格式错误 expected minutes or hours such as "30m" or "2h"; got {value!r}',
                value=v,
            )
        return v

    @property
    def minutes(self) -> int:
        m = re.fullmatch(r"(\d+)\s*(m|h)", self.every)
        assert m
        return int(m.group(1)) * (60 if m.group(2) == "h" else 1)


OnHoliday = Literal["run", "skip", "next_working_day", "previous_working_day"]


class When(Model):
    """When a rule fires: one day pattern, one or more times of day, a holiday policy."""

    weekdays: list[str] | None = None
    monthdays: list[int] | None = None
    daily: bool = False
    working_days: bool = False
    dates: list[Date] | None = None
    at: list[ClockTime] = Field(min_length=1)
    repeat: Repeat | None = None
    on_holiday: OnHoliday = "run"

    @field_validator("at", "monthdays", "dates", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return _one_or_many(v)

    @field_validator("weekdays", mode="before")
    @classmethod
    def _weekdays(cls, v: Any) -> Any:
        v = _one_or_many(v)
        for day in v if isinstance(v, list) else []:
            if day not in WEEKDAYS:
                raise _err(
                    "weekday",
                    "星期写法错误 expected weekday names mon, tue, wed, thu, fri, sat, sun; got {value!r}",
                    value=day,
                )
        return v

    @field_validator("monthdays")
    @classmethod
    def _monthdays(cls, v: list[int] | None) -> list[int] | None:
        for day in v or []:
            if not (1 <= day <= 28 or day == -1):
                raise _err(
                    "monthday",
                    "日期并非每月都有 day {value} is not in every month; expected 1-28, or -1 for the last day",
                    value=day,
                )
        return v

    @model_validator(mode="after")
    def _one_pattern(self) -> When:
        patterns = [
            k
            for k in ("weekdays", "monthdays", "daily", "working_days", "dates")
            if getattr(self, k) not in (None, False)
        ]
        if len(patterns) != 1:
            raise _err(
                "pattern",
                "需要且只能有一种日期规律 expected exactly one of weekdays, monthdays, daily, working_days, dates; got {got}",
                got=", ".join(patterns) or "none",
            )
        return self


DURATION = re.compile(r"(\d+)\s*(m|h|d)")


def _deadline(value: Any) -> Any:
    m = DURATION.fullmatch(str(value).strip()) if isinstance(value, str | int) else None
    if m is None or int(m.group(1)) == 0:
        raise _err(
            "deadline",
            '期限格式错误 expected a deadline such as "90m", "2h" or "1d"; got {value!r}',
            value=value,
        )
    minutes = int(m.group(1)) * {"m": 1, "h": 60, "d": 1440}[m.group(2)]
    if minutes > 14 * 1440:
        raise _err(
            "deadline",
            "期限过长 a relay deadline is at most 14 days (14d); got {value!r}",
            value=value,
        )
    return value


Deadline = Annotated[str, BeforeValidator(_deadline)]


class RelayLevel(Model):
    """One level a push is relayed down to: the targets tagged `to` below the one above."""

    to: str  # a tag naming the level: village, grid, class
    within: Deadline  # each hop of this level is due this long after the hop above is due
    say: str | None = None  # the instruction carried down; default: 请于…内转发至…

    @property
    def minutes(self) -> int:
        m = DURATION.fullmatch(self.within.strip())
        assert m
        return int(m.group(1)) * {"m": 1, "h": 60, "d": 1440}[m.group(2)]


class Relay(Model):
    """按时派发及时转发: the push carries an instruction down the hierarchy, each hop logged."""

    via: str  # the channel every hop goes through (a hand-off channel, or a group bot)
    levels: list[RelayLevel] = Field(min_length=1, max_length=6)


class Rule(Model):
    id: Slug
    name: str = ""
    channels: list[str] = Field(min_length=1)
    targets: Selector
    when: When
    phases: list[str] | None = None
    active: DateRange | None = None
    theme: str | None = None  # a fixed theme instead of the calendar's
    topics: list[str] | None = None  # a fixed topic rotation instead of the theme's
    template: str | None = None  # a fixed template (e.g. report reminders), no topics
    recipients: RecipientFilter | None = None  # only these people of each target's lists
    enabled: bool = True
    relay: Relay | None = None  # relayed down the hierarchy, every hop with its deadline

    @field_validator("channels", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return _one_or_many(v)

    @model_validator(mode="after")
    def _template_or_topics(self) -> Rule:
        if self.template and self.topics:
            raise _err(
                "template", "template 与 topics 只能二选一 give either template or topics, not both"
            )
        return self


class Duty(Model):
    """A cadence the plan must meet, e.g. every group twice a week."""

    id: Slug
    name: str
    targets: Selector
    per: Literal["week", "month"]
    at_least: int = Field(ge=1)
    kinds: list[MessageKind] | None = None
    channels: list[str] | None = None
    phases: list[str] | None = None


class ApprovalSettings(Model):
    """审核把关: whether every template version must be approved before a rule sends it, and
    which templates (urgent alerts, e.g. `alert`) may go out first and be approved after."""

    required: bool = False
    file: str = "approvals.yaml"  # the ledger, relative to schedules.yaml
    urgent: list[str] = Field(default_factory=list)

    @field_validator("urgent", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return _one_or_many(v)


class Config(Model):
    """The whole campaign after includes are merged."""

    campaign: Campaign
    calendar: CalendarSettings = Field(default_factory=CalendarSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    templates: list[str] = Field(default_factory=list)  # extra template folders, searched first
    phases: list[Phase] = Field(default_factory=list)
    occasions: list[Occasion] = Field(default_factory=list)
    themes: dict[Slug, Theme] = Field(default_factory=dict)
    default_theme: str
    targets: list[Target] = Field(min_length=1)
    channels: dict[Slug, ChannelInstance] = Field(min_length=1)
    rules: list[Rule] = Field(default_factory=list)
    duties: list[Duty] = Field(default_factory=list)
    approval: ApprovalSettings = Field(default_factory=ApprovalSettings)
