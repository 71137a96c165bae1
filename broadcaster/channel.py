"""The channel plugin contract and the values that cross it.

A channel plugin turns rendered messages into sends on one provider. It never
plans, never touches the delivery log, and never sleeps: the engine hands it an
HTTP session, a clock and a folder (`ChannelContext`), calls `prepare()` once per
distinct message, `send()` with a batch of deliveries, and records the one
`Result` per delivery that comes back. Outcomes that arrive later come back
through `reconcile()`, `pull_outcomes()` or an inbound route from `routes()`.

Implementer's duties (README, "编写渠道插件 / Write your own channel"):

* declare `name` (= module name = entry-point name) and a `Settings` model that
  forbids unknown keys; secret fields are typed `EnvSecret` and given in YAML as
  `{env: NAME}`, never inline;
* describe what the provider can do in `capabilities`;
* `__init__` does no I/O: validate and checks run on an instance whose session
  refuses to send;
* `check()`: None when ready, otherwise one sentence saying why not;
* `check_message()` / `check_schedule()`: provider rules checked at `validate`
  (billing length, charset, keyword; a screen's rotation, a programme's length);
* `endpoint()`: the rate-limit key of a recipient (a bot URL, a gateway account);
* `prepare()`: split a message into parts, make its artefacts (audio, images);
* `send()`: one Result per delivery, success read from the response body; raise
  nothing for a per-recipient failure, raise `RetryableError`, `PermanentError`
  or `OutcomeUnknownError` (from `broadcaster.errors`) only when the whole batch
  shares it. `send()` may run in several threads at once (up to
  `capabilities.concurrency`): keep per-call state local;
* `reconcile()`, `pull_outcomes()`, `routes()`: late outcomes, see their docstrings;
* `close()`: release connections.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, PlainSerializer, WrapValidator
from pydantic_core import PydanticCustomError

from broadcaster.errors import SecretMissingError
from broadcaster.led.playlist import ScreenSpec
from broadcaster.vocab import Addressing, ErrorClass, MessageKind, QuietHours, RateLimit, Status

if TYPE_CHECKING:
    import requests

__all__ = [
    "Addressing",
    "Artefact",
    "ArtefactStore",
    "BaseChannel",
    "Capabilities",
    "Channel",
    "ChannelContext",
    "ChannelSettings",
    "Delivery",
    "EnvSecret",
    "ErrorClass",
    "InboundReply",
    "InboundRequest",
    "InboundRoute",
    "LinkSigner",
    "Message",
    "MessageKind",
    "Outcome",
    "OutcomePage",
    "QuietHours",
    "RateLimit",
    "Recipient",
    "Result",
    "ScheduledSend",
    "Secret",
    "Status",
]


# --- settings and secrets ----------------------------------------------------------------------


@dataclass(frozen=True)
class Secret:
    """A secret read from an environment variable; never shown."""

    env: str
    value: str | None = field(default=None, repr=False, compare=False)

    def get(self) -> str:
        if self.value is None:
            raise SecretMissingError(self.env)
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
class Capabilities:
    """What a channel can do; the engine plans batches, limits and checks from it."""

    kinds: frozenset[MessageKind]
    addressing: Addressing | None = None  # fixed by the provider; None: the config chooses
    requires_address: bool = False  # target-addressed: every target needs its own address
    secret_address: bool = False  # that address is a credential (a bot key): only {env: NAME}
    max_length: int | None = None  # characters as the recipient sees them
    batch_size: int = 1  # deliveries per send() call
    batch_by_message: bool = False  # one call carries one message (template + parameters)
    rate_limit: RateLimit | None = None  # per endpoint, shared by every channel posting to it
    concurrency: int = 8  # send() calls in flight at once, per channel instance
    endpoint_concurrency: int | None = None  # and per endpoint, when the provider limits that
    quiet_hours: QuietHours | None = None  # the provider's own window; the config may widen it
    resend_on_unknown: int = 0  # how often an unknown outcome may be re-sent (bots: 1, SMS: 0)
    reconciles: bool = False  # reconcile() can look outcomes up (a status API, a receipt query)
    settle_seconds: float = 60.0  # after an attempt starts, how long its outcome may still change
    outcome_window: float | None = None  # seconds late outcomes are awaited (None: none come)
    outcome_poll: float = 300.0  # seconds between reconcile() calls for one accepted delivery
    reconcile_batch: int = 50  # deliveries per reconcile() call (rate-limited like sends)

    @property
    def late_outcomes(self) -> bool:
        return self.outcome_window is not None


# --- what crosses the contract -----------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """Where one delivery goes; `display` is the only form ever shown or logged in clear.

    `address` is the number (E.164), the bot key or the target id; `extra` holds the
    other parts of a structured address (a bot's signing secret), also never shown.
    """

    target_id: str
    address: str = field(repr=False)
    display: str
    extra: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False, hash=False)


@dataclass(frozen=True)
class Artefact:
    """A file made before sending (an MP3, an image card), named by its content."""

    name: str  # what it is, e.g. "speech.mp3"
    sha256: str
    path: Path
    media_type: str  # e.g. "audio/mpeg"
    size: int

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "media_type": self.media_type,
            "size": self.size,
        }


class ArtefactStore(Protocol):
    """Content-addressed files, cached by what they were made from (given to `prepare()`)."""

    def make(
        self, cache_key: str, name: str, media_type: str, build: Callable[[], bytes]
    ) -> Artefact: ...  # build() runs only when no file for cache_key exists yet


@dataclass(frozen=True)
class Message:
    """One rendered message, ready to send.

    `params` are the values the template read ("topic.name": "刷单诈骗"), for providers
    that send approved templates with parameters; `parts` the text split to fit a
    limit (sent in order, each a step in the log); `artefacts` files made from it.
    """

    kind: MessageKind
    text: str
    template: str  # template name, e.g. "sms/order_brushing.j2"
    template_sha: str  # sha256 of the template source: its version
    theme: str | None = None
    topic: str | None = None
    title: str = ""
    params: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    parts: tuple[str, ...] = ()  # empty: the text goes whole
    artefacts: tuple[Artefact, ...] = ()

    @property
    def text_sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def pieces(self) -> tuple[str, ...]:
        """What is sent, in order: the parts, or the whole text."""
        return self.parts or (self.text,)

    def payload(self) -> dict[str, Any] | None:
        """Everything but the text, as logged beside it (None when there is nothing)."""
        if not (self.params or self.parts or self.artefacts or self.theme or self.topic):
            return None
        return {
            "theme": self.theme,
            "topic": self.topic,
            "params": dict(sorted(self.params.items())),
            "parts": list(self.parts),
            "artefacts": [a.describe() for a in self.artefacts],
        }

    @property
    def payload_sha256(self) -> str | None:
        payload = self.payload()
        if payload is None:
            return None
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Delivery:
    """One message to one recipient for one occurrence: the unit the log tracks."""

    key: str  # idempotency key: hash of (campaign, occurrence, channel, target, recipient)
    occurrence_id: str
    rule_id: str
    channel_id: str
    recipient: Recipient
    message: Message
    scheduled_at: dt.datetime
    provider_id: str | None = None  # when reconciling: what the provider answered before
    first_part: int = 0  # parts already accepted in an earlier attempt: send from here
    campaign: str = ""


@dataclass(frozen=True)
class Result:
    """The outcome of one delivery as the provider reported it."""

    key: str
    status: Status
    error_class: ErrorClass | None = None
    reason: str = ""
    provider_id: str | None = None  # BizId, SerialNo, message id: for receipts and reconciling
    retry_after: float | None = None  # seconds, when throttled
    parts_done: int | None = None  # of a split message: how many parts were accepted
    raw: str = field(default="", compare=False)  # the provider's answer, kept (scrubbed) for audit
    block: bool = False  # the provider blocks the endpoint for retry_after (DingTalk: 10 min)
    # throttled for this recipient only (a per-number cap): that delivery waits for the sweep
    # until retry_after, the endpoint and the rest of the batch go on
    per_recipient: bool = False

    @classmethod
    def ok(
        cls,
        delivery: Delivery,
        provider_id: str | None = None,
        *,
        delivered: bool = False,
        raw: str = "",
    ) -> Result:
        status = Status.DELIVERED if delivered else Status.ACCEPTED
        return cls(delivery.key, status, provider_id=provider_id, raw=raw)

    @classmethod
    def fail(cls, delivery: Delivery, error_class: ErrorClass, reason: str, **kw: Any) -> Result:
        """A failure; retryable classes (transient, throttled) are sent again by the engine."""
        status = Status.UNKNOWN if error_class is ErrorClass.UNKNOWN else Status.FAILED
        return cls(delivery.key, status, error_class, reason, **kw)


@dataclass(frozen=True)
class Outcome:
    """A late outcome (receipt, call result, fetch, confirmation), pulled or pushed.

    Matched to its delivery by `key` (our id echoed back as OutId or SessionContext),
    else by `provider_id` plus the recipient's `address` (hashed by the engine, never
    stored), else by `provider_id` alone when that is unique.
    """

    status: Status  # accepted, delivered or failed
    key: str | None = None
    provider_id: str | None = None
    address: str | None = field(default=None, repr=False)
    at: dt.datetime | None = None
    error_class: ErrorClass | None = None
    reason: str = ""
    raw: str = ""


@dataclass(frozen=True)
class OutcomePage:
    """One pull from a provider's outcome feed."""

    outcomes: Sequence[Outcome]
    cursor: str | None = None  # where the next pull starts; stored with these outcomes
    more: bool = False  # pull again at once


class LinkSigner(Protocol):
    """Signed, expiring, per-person links (`broadcaster.web.links.SignedLinks`).

    `peek()` and `verify()` raise `broadcaster.web.errors.LinkError` (with `reason`:
    forged, expired, used, person); `verify()` uses a single-use link up.
    """

    def sign(
        self,
        purpose: str,
        subject: str,
        *,
        ttl: dt.timedelta | None = None,
        data: Mapping[str, Any] | None = None,
        single_use: bool = True,
        jti: str | None = None,
        expires: dt.datetime | None = None,
    ) -> str: ...

    def peek(self, purpose: str, token: str) -> Any: ...  # LinkClaims; not used up

    def verify(self, purpose: str, token: str, *, subject: str | None = None) -> Any: ...


@dataclass(frozen=True)
class InboundRequest:
    """An HTTP request to a plugin's route, as the web service received it."""

    method: str
    path: str  # below the route's mount point, e.g. "/receipts"
    query: Mapping[str, Sequence[str]]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    remote: str = ""
    # the service's signed links, which can tell a used link (on `serve`; None elsewhere)
    links: LinkSigner | None = field(default=None, repr=False, compare=False)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class InboundReply:
    """What the route answers, and the outcomes it carried (recorded by the engine)."""

    status: int = 200
    body: bytes | str = b""
    media_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    outcomes: Sequence[Outcome] = ()

    @classmethod
    def json(cls, data: Any, status: int = 200, outcomes: Sequence[Outcome] = ()) -> InboundReply:
        body = json.dumps(data, ensure_ascii=False)
        return cls(status, body, "application/json", {}, outcomes)


@dataclass(frozen=True)
class InboundRoute:
    """A route a plugin serves on `broadcaster serve`: provider callbacks, feeds, links.

    Mounted at /hooks/{channel}{path} (`scope="hooks"`), /led/... or /confirm/...; the
    handler authenticates the caller itself (signature, token, signed link).
    """

    path: str  # "/receipts"; "{name}" segments are passed in InboundRequest.path
    handler: Callable[[InboundRequest], InboundReply]
    methods: tuple[str, ...] = ("POST",)
    scope: Literal["hooks", "led", "confirm"] = "hooks"
    summary: str = ""  # shown in the OpenAPI document


@dataclass(frozen=True)
class ScheduledSend:
    """One planned send of a channel, for `check_schedule()` at validate and plan."""

    at: dt.datetime
    rule_id: str
    target_id: str
    target_name: str
    message: Message
    screen: ScreenSpec | None = None  # the target's LED screen, when it is one


def _no_pacing(endpoint: str) -> bool:
    return True


@dataclass(frozen=True)
class ChannelContext:
    """What the engine hands a channel: its I/O, so tests and virtual time can replace it.

    `pace(endpoint)`: a channel that makes more than one request to an endpoint in one
    `send()` (a split message's next part) calls it before each further request; it
    waits for the endpoint's next rate-limit slot, shared with every channel posting
    there (the engine took the slot of the first request), and answers False when the
    engine is stopping: send nothing more then.
    """

    instance_id: str
    http: requests.Session  # shared by the channel's threads; configure it in __init__ only
    clock: Callable[[], dt.datetime]  # aware "now"; virtual in simulate and tests
    data_dir: Path  # the channel's own folder for files it writes or serves
    base_dir: Path = Path()  # the campaign folder: relative paths in settings start here
    pace: Callable[[str], bool] = _no_pacing  # before each further request to one endpoint
    # signs links that `broadcaster serve` checks (None without the web extra)
    links: LinkSigner | None = field(default=None, repr=False, compare=False)


# --- the protocol ------------------------------------------------------------------------------


@runtime_checkable
class Channel(Protocol):
    """A channel plugin. Members are listed in the module docstring with their duties."""

    name: ClassVar[str]  # = module name = entry-point name, e.g. "webhook"
    Settings: ClassVar[type[ChannelSettings]]  # schema of the `settings:` block

    def __init__(self, settings: Any, context: ChannelContext) -> None: ...  # no I/O

    @property
    def capabilities(self) -> Capabilities: ...  # may depend on settings

    def check(self) -> str | None: ...  # None when ready, else why not

    def check_message(self, message: Message) -> list[str]: ...  # problems found at validate

    def check_schedule(self, sends: Sequence[ScheduledSend]) -> list[str]: ...  # over a period

    def endpoint(self, recipient: Recipient) -> str: ...  # rate-limit key

    def prepare(self, message: Message, artefacts: ArtefactStore) -> Message: ...  # parts, files

    def send(self, batch: Sequence[Delivery]) -> list[Result]: ...  # one per delivery

    def reconcile(self, pending: Sequence[Delivery]) -> list[Result]: ...  # per delivery

    def pull_outcomes(self, cursor: str | None) -> OutcomePage | None: ...  # a feed, or None

    def routes(self) -> Sequence[InboundRoute]: ...  # pushed outcomes on `serve`

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
        return []  # the engine checks max_length; override for charset, billing, keywords

    def check_schedule(self, sends: Sequence[ScheduledSend]) -> list[str]:
        return []

    def endpoint(self, recipient: Recipient) -> str:
        return self.context.instance_id

    def prepare(self, message: Message, artefacts: ArtefactStore) -> Message:
        return message

    def reconcile(self, pending: Sequence[Delivery]) -> list[Result]:
        """Look up deliveries whose outcome is unknown or still only accepted.

        Return a Result only for what the provider could tell: accepted or delivered
        (it arrived), failed with error_class transient (it never arrived: safe to send
        again) or another class (it arrived and failed). Leave out what is still unknown.
        """
        return []

    def pull_outcomes(self, cursor: str | None) -> OutcomePage | None:
        """The next page of a provider's outcome feed; None when the provider has none.

        A feed that hands each outcome out once (Tencent PullSmsSendStatus) is safe: the
        engine writes a page, with its cursor, before it pulls the next one.
        """
        return None

    def routes(self) -> Sequence[InboundRoute]:
        return ()

    def close(self) -> None:
        return None
