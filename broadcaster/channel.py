"""The channel plugin contract and the values that cross it.

A channel plugin turns rendered messages into sends on one provider. It never
plans, never touches the delivery log, and never sleeps: the engine hands it an
HTTP session, a clock and a folder (`ChannelContext`), calls `send()` with a batch
of deliveries, and records the one `Result` per delivery that comes back.

Implementer's duties (see README, "编写渠道插件 / Write your own channel"):

* declare `name` (= module name = entry-point name) and a `Settings` model that
  forbids unknown keys; secret fields are typed `EnvSecret` and given in YAML as
  `{env: NAME}`, never inline;
* describe what the provider can do in `capabilities` (message kinds, addressing,
  length, batch size, rate limit per endpoint, concurrency, quiet hours, whether
  outcomes arrive later);
* answer `check()` with None when ready, otherwise one sentence saying why not;
* `check_message()`: provider-specific checks run at `validate` (length, charset);
* `endpoint()`: the rate-limit key of a recipient (the webhook URL, the bot key);
* `send()`: one Result per delivery, success read from the response body;
  raise nothing for a per-recipient failure, raise `RetryableError`,
  `PermanentError` or `OutcomeUnknownError` only when the whole batch shares it;
* `reconcile()`: for channels with late outcomes (receipts, call results, a
  person's confirmation), look up deliveries that are still accepted or unknown;
* `close()`: release connections.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, PlainSerializer, WrapValidator
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    import requests

__all__ = [
    "Addressing",
    "BaseChannel",
    "Capabilities",
    "Channel",
    "ChannelContext",
    "ChannelSettings",
    "Delivery",
    "EnvSecret",
    "ErrorClass",
    "Message",
    "MessageKind",
    "QuietHours",
    "RateLimit",
    "Recipient",
    "Result",
    "Secret",
    "Status",
]


class MessageKind(StrEnum):
    """Template variants: each channel instance sends exactly one kind."""

    SMS = "sms"  # short text, billed by length
    BOT = "bot"  # group-bot markdown, also the hand-off text for ordinary WeChat groups
    LED = "led"  # one-liner for screens
    LOUDSPEAKER = "loudspeaker"  # script read aloud (village loudspeakers, voice calls)


class Addressing(StrEnum):
    """Who one delivery goes to."""

    TARGET = "target"  # the group, screen or speaker itself: one delivery per target
    CONTACTS = "contacts"  # every person on the target's contact list: one per number


class Status(StrEnum):
    """Delivery states; every change is a new row in the delivery log."""

    PLANNED = "planned"  # written before sending: the idempotency key is taken
    SENDING = "sending"  # an attempt started: if nothing follows, the outcome is unknown
    ACCEPTED = "accepted"  # the provider took it; delivery may be confirmed later
    DELIVERED = "delivered"  # confirmed at the far end (receipt, fetch, confirmation)
    FAILED = "failed"  # will not arrive; error_class says why
    UNKNOWN = "unknown"  # the provider may have acted; reconcile, never re-send blindly
    SKIPPED = "skipped"  # deliberately not sent (channel disabled, quiet hours, opt-out)
    INTERRUPTED = "interrupted"  # the process stopped before an answer; resumed on restart
    MISSED = "missed"  # the occurrence passed while nothing ran, beyond the grace

    @property
    def final(self) -> bool:
        return self in (Status.DELIVERED, Status.FAILED, Status.SKIPPED, Status.MISSED)


class ErrorClass(StrEnum):
    """Why a delivery failed or was held back."""

    RECIPIENT = "recipient"  # bad or opted-out number: permanent for that recipient
    CONTENT = "content"  # rejected text: permanent for the message
    CONFIG = "config"  # bad key, signature, template code: permanent for the channel
    TRANSIENT = "transient"  # 5xx, refused connection: retried
    THROTTLED = "throttled"  # 429 or a provider rate code: retried after retry_after
    UNKNOWN = "unknown"  # timeout after sending: reconciled
    QUIET = "quiet"  # inside quiet hours: deferred
    DISABLED = "disabled"  # channel not ready


# --- settings and secrets ----------------------------------------------------------------------


@dataclass(frozen=True)
class Secret:
    """A secret read from an environment variable; never shown."""

    env: str
    value: str | None = field(default=None, repr=False, compare=False)

    def get(self) -> str:
        if self.value is None:
            raise KeyError(self.env)
        return self.value

    def __str__(self) -> str:
        return f"${self.env} (******)"

    def __repr__(self) -> str:
        return f"Secret(env={self.env!r})"


def _validate_secret(value: Any, handler: Any, info: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, dict) and set(value) == {"env"} and isinstance(value["env"], str):
        environ: Mapping[str, str] = (info.context or {}).get("environ", os.environ)
        return Secret(value["env"], environ.get(value["env"]))
    raise PydanticCustomError(
        "secret_env",
        "密钥须来自环境变量 secrets come from environment variables: write {env: NAME}",
    )


EnvSecret = Annotated[
    Secret,
    WrapValidator(_validate_secret),
    PlainSerializer(lambda s: {"env": s.env}),
]


class ChannelSettings(BaseModel):
    """Base for a plugin's settings: unknown keys are refused, secrets are `EnvSecret`."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    def secret_fields(self) -> list[tuple[str, Secret]]:
        """(field name, secret) for every secret field, nested models included."""
        found: list[tuple[str, Secret]] = []

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, Secret):
                found.append((prefix, value))
            elif isinstance(value, BaseModel):
                for name in type(value).model_fields:
                    walk(f"{prefix}.{name}" if prefix else name, getattr(value, name))
            elif isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}", v)
            elif isinstance(value, list | tuple):
                for i, v in enumerate(value):
                    walk(f"{prefix}[{i}]", v)

        walk("", self)
        return found


# --- capabilities ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuietHours:
    """A daily window (may cross midnight) in which the channel must not send."""

    start: dt.time
    end: dt.time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        start, end = (dt.time.fromisoformat(p.strip()) for p in text.split("-"))
        return cls(start, end)

    def contains(self, t: dt.time) -> bool:
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class RateLimit:
    """At most `count` sends per `per_seconds`, per endpoint (one bot, one gateway)."""

    count: int
    per_seconds: float


@dataclass(frozen=True)
class Capabilities:
    """What a channel can do; the engine plans batches, limits and checks from it."""

    kinds: frozenset[MessageKind]
    addressing: Addressing = Addressing.TARGET
    max_length: int | None = None  # characters as the recipient sees them
    batch_size: int = 1  # deliveries per send() call
    rate_limit: RateLimit | None = None  # per endpoint
    concurrency: int = 8  # send() calls in flight at once, per channel instance
    endpoint_concurrency: int | None = None  # and per endpoint, when the provider limits that
    quiet_hours: QuietHours | None = None
    resend_on_unknown: int = 0  # how often an unknown outcome may be re-sent (bots: 1, SMS: 0)
    late_outcomes: bool = False  # outcomes arrive later: reconcile() is called
    settle_seconds: float = 60.0  # after an attempt starts, how long its outcome may still change


# --- what crosses the contract -----------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """Where one delivery goes; `display` is the only form ever shown or logged in clear."""

    target_id: str
    address: str = field(repr=False)
    display: str


@dataclass(frozen=True)
class Message:
    """One rendered message, ready to send."""

    kind: MessageKind
    text: str
    template: str  # template name, e.g. "sms/order_brushing.j2"
    template_sha: str  # sha256 of the template source: its version
    theme: str | None = None
    topic: str | None = None
    title: str = ""
    attachments: tuple[Path, ...] = ()  # artefacts made at render time (audio, images)

    @property
    def text_sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Delivery:
    """One message to one recipient for one occurrence: the unit the log tracks."""

    key: str  # idempotency key: hash of (campaign, occurrence, channel, recipient)
    occurrence_id: str
    rule_id: str
    channel_id: str
    recipient: Recipient
    message: Message
    scheduled_at: dt.datetime
    provider_id: str | None = None  # set when reconciling: what the provider answered before


@dataclass(frozen=True)
class Result:
    """The outcome of one delivery as the provider reported it."""

    key: str
    status: Status
    error_class: ErrorClass | None = None
    reason: str = ""
    provider_id: str | None = None  # BizId, SerialNo, message id: for receipts and reconciling
    retry_after: float | None = None  # seconds, when throttled

    @classmethod
    def ok(
        cls, delivery: Delivery, provider_id: str | None = None, *, delivered: bool = False
    ) -> Result:
        status = Status.DELIVERED if delivered else Status.ACCEPTED
        return cls(delivery.key, status, provider_id=provider_id)

    @classmethod
    def fail(cls, delivery: Delivery, error_class: ErrorClass, reason: str, **kw: Any) -> Result:
        status = Status.UNKNOWN if error_class is ErrorClass.UNKNOWN else Status.FAILED
        return cls(delivery.key, status, error_class, reason, **kw)


@dataclass(frozen=True)
class ChannelContext:
    """What the engine hands a channel: its I/O, so tests and virtual time can replace it."""

    instance_id: str
    http: requests.Session
    clock: Callable[[], dt.datetime]  # aware "now"; virtual in simulate and tests
    data_dir: Path  # the channel's own folder for files it writes or serves
    base_dir: Path = Path()  # the campaign folder: relative paths in settings start here


# --- the protocol ------------------------------------------------------------------------------


@runtime_checkable
class Channel(Protocol):
    """A channel plugin. Members are listed in the module docstring with their duties."""

    name: ClassVar[str]  # = module name = entry-point name, e.g. "webhook"
    Settings: ClassVar[type[ChannelSettings]]  # schema of the `settings:` block

    def __init__(self, settings: Any, context: ChannelContext) -> None: ...

    @property
    def capabilities(self) -> Capabilities: ...  # may depend on settings

    def check(self) -> str | None: ...  # None when ready, else why not

    def check_message(self, message: Message) -> list[str]: ...  # problems found at validate

    def endpoint(self, recipient: Recipient) -> str: ...  # rate-limit key

    def send(self, batch: Sequence[Delivery]) -> list[Result]: ...  # one per delivery

    def reconcile(self, pending: Sequence[Delivery]) -> list[Result]: ...  # late outcomes

    def close(self) -> None: ...


class BaseChannel:
    """Optional base with the common defaults; a channel may implement the protocol directly."""

    name: ClassVar[str]
    Settings: ClassVar[type[ChannelSettings]] = ChannelSettings

    def __init__(self, settings: Any, context: ChannelContext) -> None:
        self.settings = settings
        self.context = context

    @property
    def capabilities(self) -> Capabilities:  # pragma: no cover - every channel overrides
        raise NotImplementedError

    def check(self) -> str | None:
        missing = [s.env for _, s in self.settings.secret_fields() if s.value is None]
        if missing:
            return f"缺少环境变量 environment variable {', '.join(missing)} not set"
        return None

    def check_message(self, message: Message) -> list[str]:
        return []  # the engine checks max_length; override for charset, billing, etc.

    def endpoint(self, recipient: Recipient) -> str:
        return self.context.instance_id

    def reconcile(self, pending: Sequence[Delivery]) -> list[Result]:
        return []

    def close(self) -> None:
        return None
