"""The words the model, the delivery log, the engine and the channels share.

Message kinds, addressing, delivery statuses with the transitions the log allows,
error classes and occurrence records. Each value has a Chinese label with the
English beside it, for everything shown to people.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "FINAL",
    "TRANSITIONS",
    "UNFINISHED",
    "Addressing",
    "ErrorClass",
    "MessageKind",
    "OccurrenceStatus",
    "QuietHours",
    "RateLimit",
    "Status",
    "can_follow",
]


class MessageKind(StrEnum):
    """Template variants: each channel instance sends exactly one kind."""

    SMS = "sms"  # short text, billed by length
    BOT = "bot"  # group-bot markdown, also the hand-off text for ordinary WeChat groups
    LED = "led"  # one-liner for screens
    LOUDSPEAKER = "loudspeaker"  # script read aloud (village loudspeakers, voice calls)

    @property
    def label(self) -> str:
        return _KIND_LABELS[self]


class Addressing(StrEnum):
    """Who one delivery goes to."""

    TARGET = "target"  # the group, screen or speaker itself: one delivery per target
    CONTACTS = "contacts"  # every person on the target's contact list: one per number


class Status(StrEnum):
    """Delivery states; every change is a new event in the delivery log."""

    PLANNED = "planned"  # written before sending: the idempotency key is taken
    DEFERRED = "deferred"  # waits for a time: quiet hours, a rate limit, a retry
    SENDING = "sending"  # an attempt started: if nothing follows, the outcome is unknown
    ACCEPTED = "accepted"  # the provider took it; delivery may be confirmed later
    DELIVERED = "delivered"  # confirmed at the far end (receipt, fetch, confirmation)
    FAILED = "failed"  # will not arrive; error_class says why
    UNKNOWN = "unknown"  # the provider may have acted; reconciled, never re-sent blindly
    SKIPPED = "skipped"  # deliberately not sent (channel disabled, opt-out, rule removed)
    INTERRUPTED = "interrupted"  # the process stopped while waiting for the answer
    UNRESOLVED = "unresolved"  # unknown and no way to find out: an operator decides
    MISSED = "missed"  # shown for occurrences only: passed while nothing ran

    @property
    def final(self) -> bool:
        return self in FINAL

    @property
    def label(self) -> str:
        return _STATUS_LABELS[self]


class ErrorClass(StrEnum):
    """Why a delivery failed or was held back."""

    RECIPIENT = "recipient"  # bad number: permanent for that recipient
    OPTOUT = "optout"  # unsubscribed or on a do-not-disturb list: suppressed for good
    CONTENT = "content"  # rejected text: permanent for the message
    CONFIG = "config"  # bad key, signature, template code: permanent for the channel
    TRANSIENT = "transient"  # 5xx before sending, refused connection: retried
    THROTTLED = "throttled"  # 429 or a provider rate code: retried after retry_after
    UNKNOWN = "unknown"  # timeout after sending: reconciled
    QUIET = "quiet"  # inside quiet hours: deferred
    DISABLED = "disabled"  # channel not ready
    REMOVED = "removed"  # its rule, target or contact left the config
    OPERATOR = "operator"  # decided by a person
    EXPIRED = "expired"  # a person was to confirm (a hand-off) and the link expired first

    @property
    def label(self) -> str:
        return _ERROR_LABELS[self]


class OccurrenceStatus(StrEnum):
    """Records of one occurrence: fired once, then done, or missed, skipped, failed."""

    FIRED = "fired"
    DONE = "done"
    MISSED = "missed"
    SKIPPED = "skipped"
    FAILED = "failed"

    @property
    def label(self) -> str:
        return _OCCURRENCE_LABELS[self]


FINAL = frozenset({Status.DELIVERED, Status.FAILED, Status.SKIPPED, Status.MISSED})
UNFINISHED = frozenset(
    {
        Status.PLANNED,
        Status.DEFERRED,
        Status.SENDING,
        Status.INTERRUPTED,
        Status.UNKNOWN,
    }
)

# The state machine the log enforces: no regression, and one event per change (a deferral
# may follow a deferral: it moves the time the delivery waits for).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PLANNED: frozenset({Status.DEFERRED, Status.SENDING, Status.SKIPPED, Status.FAILED}),
    Status.DEFERRED: frozenset({Status.DEFERRED, Status.SENDING, Status.SKIPPED, Status.FAILED}),
    Status.SENDING: frozenset(
        {
            Status.ACCEPTED,
            Status.DELIVERED,
            Status.FAILED,
            Status.UNKNOWN,
            Status.DEFERRED,
            Status.INTERRUPTED,
        }
    ),
    Status.INTERRUPTED: frozenset(
        {Status.SENDING, Status.ACCEPTED, Status.DELIVERED, Status.FAILED, Status.UNRESOLVED}
    ),
    Status.UNKNOWN: frozenset(
        {Status.SENDING, Status.ACCEPTED, Status.DELIVERED, Status.FAILED, Status.UNRESOLVED}
    ),
    Status.UNRESOLVED: frozenset(  # deferred: an operator decided to send it again
        {Status.SENDING, Status.ACCEPTED, Status.DELIVERED, Status.FAILED, Status.DEFERRED}
    ),
    Status.ACCEPTED: frozenset({Status.DELIVERED, Status.FAILED}),
    Status.DELIVERED: frozenset(),
    Status.FAILED: frozenset(),
    Status.SKIPPED: frozenset(),
    Status.MISSED: frozenset(),
}


def can_follow(current: Status | None, new: Status) -> bool:
    """Whether `new` may follow `current` (None: the delivery has no event yet)."""
    if current is None:
        return new is Status.PLANNED
    return new in TRANSITIONS[current]


@dataclass(frozen=True)
class QuietHours:
    """A daily window (may cross midnight) in which the channel must not send."""

    start: dt.time
    end: dt.time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        start, end = (dt.time.fromisoformat(p.strip().zfill(5)) for p in text.split("-"))
        return cls(start, end)

    def contains(self, t: dt.time) -> bool:
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def next_end(self, local: dt.datetime) -> dt.datetime:
        """The first moment at or after `local` (aware, campaign zone) outside the window."""
        if not self.contains(local.time()):
            return local
        end = local.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        return end if end > local else end + dt.timedelta(days=1)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class RateLimit:
    """At most `count` sends per `per_seconds`, per endpoint (one bot, one gateway)."""

    count: int
    per_seconds: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        count, _, seconds = text.replace(" ", "").rstrip("s").partition("/")
        return cls(int(count), float(seconds))

    def __str__(self) -> str:
        return f"{self.count}/{self.per_seconds:g}s"


_KIND_LABELS = {
    MessageKind.SMS: "短信 sms",
    MessageKind.BOT: "群消息 bot",
    MessageKind.LED: "显示屏 led",
    MessageKind.LOUDSPEAKER: "广播稿 loudspeaker",
}
_STATUS_LABELS = {
    Status.PLANNED: "待发送 planned",
    Status.DEFERRED: "顺延 deferred",
    Status.SENDING: "发送中 sending",
    Status.ACCEPTED: "已受理 accepted",
    Status.DELIVERED: "已送达 delivered",
    Status.FAILED: "失败 failed",
    Status.UNKNOWN: "结果未知 unknown",
    Status.SKIPPED: "跳过 skipped",
    Status.INTERRUPTED: "中断 interrupted",
    Status.UNRESOLVED: "待人工 needs an operator",
    Status.MISSED: "错过 missed",
}
_ERROR_LABELS = {
    ErrorClass.RECIPIENT: "号码无效 recipient",
    ErrorClass.OPTOUT: "已退订 opted out",
    ErrorClass.CONTENT: "内容被拒 content",
    ErrorClass.CONFIG: "配置错误 config",
    ErrorClass.TRANSIENT: "临时故障 transient",
    ErrorClass.THROTTLED: "限流 throttled",
    ErrorClass.UNKNOWN: "结果未知 unknown",
    ErrorClass.QUIET: "免打扰 quiet hours",
    ErrorClass.DISABLED: "渠道停用 disabled",
    ErrorClass.REMOVED: "已移除 removed",
    ErrorClass.OPERATOR: "人工处理 operator",
    ErrorClass.EXPIRED: "已过期未确认 expired",
}
_OCCURRENCE_LABELS = {
    OccurrenceStatus.FIRED: "已触发 fired",
    OccurrenceStatus.DONE: "完成 done",
    OccurrenceStatus.MISSED: "错过 missed",
    OccurrenceStatus.SKIPPED: "跳过 skipped",
    OccurrenceStatus.FAILED: "失败 failed",
}
