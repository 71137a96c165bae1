"""The one place that wires the model, the channels and the delivery log together.

`App.load()` reads the config into the pure model, resolves its channels against
their plugins and runs the checks only plugins can make, and refuses the whole
config, with every problem, when anything is wrong. The commands (and the web
service, and a worker) then ask the app for the log, a dispatcher or a runner.

Importing this module imports neither requests nor SQLAlchemy: `validate` and `plan`
touch no network and no database; the log and the senders are imported when asked for.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from broadcaster.engine.channels import ChannelProfile, check_campaign, resolve_channels
from broadcaster.engine.registry import Registry
from broadcaster.errors import ConfigError, ConfigIssue, LogStoreError
from broadcaster.model.campaign import Campaign
from broadcaster.model.config.load import build_campaign
from broadcaster.recipients.store import RecipientStore

if TYPE_CHECKING:
    from broadcaster.channel import LinkSigner
    from broadcaster.engine.clock import Clock
    from broadcaster.engine.dispatch import Dispatcher
    from broadcaster.engine.executor import Executor
    from broadcaster.engine.ratelimit import RateLimiter
    from broadcaster.engine.runner import Activity, Runner
    from broadcaster.log import DeliveryLog

__all__ = [
    "DB_ENV",
    "KEY_ENV",
    "KEY_FILE_ENV",
    "LEASE_ENV",
    "STATE_ENV",
    "App",
    "hash_key",
    "key_warnings",
    "log_url",
    "open_log",
    "state_dir_for",
]

DB_ENV = "BROADCASTER_DB"  # any SQLAlchemy URL; default: SQLite in the state folder
KEY_ENV = "BROADCASTER_LOG_KEY"  # key of recipient hashes and idempotency keys
KEY_FILE_ENV = "BROADCASTER_LOG_KEY_FILE"  # or a file holding it, outside the state folder
STATE_ENV = "BROADCASTER_STATE_DIR"  # default: var/ next to schedules.yaml
LEASE_ENV = "BROADCASTER_LEASE_SECONDS"  # how long a claim lasts unless renewed (default 60)
DEFAULT_ZONE = ZoneInfo("Asia/Shanghai")


def state_dir_for(
    config: Path, option: Path | None, environ: Mapping[str, str] | None = None
) -> Path:
    environ = os.environ if environ is None else environ
    if option is not None:
        return option
    if environ.get(STATE_ENV):
        return Path(environ[STATE_ENV])
    return config.resolve().parent / "var"


def private_folder(folder: Path) -> Path:
    """Create the state folder readable by its owner only (0700)."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if folder.stat().st_uid == os.getuid() and stat.S_IMODE(folder.stat().st_mode) & 0o077:
            folder.chmod(0o700)
    except OSError as exc:
        raise LogStoreError(
            f"无法创建状态目录 cannot create the state folder {folder}: {exc.strerror or exc}"
        ) from None
    return folder


def key_path(state_dir: Path, environ: Mapping[str, str]) -> Path:
    return Path(environ[KEY_FILE_ENV]) if environ.get(KEY_FILE_ENV) else state_dir / "log.key"


def hash_key(state_dir: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The log key: $BROADCASTER_LOG_KEY, else the file $BROADCASTER_LOG_KEY_FILE, else a
    random key kept in var/log.key (0600), made on first use.

    Changing it would change every idempotency key and recipient hash: the log records
    which key it was written with and refuses another.
    """
    environ = os.environ if environ is None else environ
    value = environ.get(KEY_ENV)
    if value:
        return value.encode("utf-8")
    path = key_path(state_dir, environ)
    try:
        if path.exists():
            return path.read_bytes().strip()
        if environ.get(KEY_FILE_ENV):
            raise LogStoreError(f"日志密钥文件不存在 the log key file {path} does not exist")
        private_folder(state_dir)
        key = secrets.token_hex(32).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key + b"\n")
        return key
    except OSError as exc:
        raise LogStoreError(
            f"无法读写日志密钥 cannot read or create the log key {path}: {exc.strerror or exc};"
            f" set {KEY_ENV}"
        ) from None


def log_url(db: str | None, state_dir: Path, environ: Mapping[str, str]) -> str:
    return db or environ.get(DB_ENV) or f"sqlite:///{Path(state_dir) / 'delivery-log.sqlite3'}"


def key_warnings(state_dir: Path, db: str | None, environ: Mapping[str, str]) -> list[str]:
    """Why the log key is kept unsafely, if it is (numbers fall to a few guesses with it)."""
    if environ.get(KEY_ENV):
        return []
    path = key_path(state_dir, environ)
    if not path.exists():
        return []
    out = []
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        out.append(
            f"日志密钥文件可被他人读取 the log key file {path} is readable by others"
            f" (mode {mode:o}): chmod 600 it"
        )
    url = log_url(db, state_dir, environ)
    if (
        url.startswith("sqlite:")
        and Path(url.split("///", 1)[-1]).parent.resolve() == path.parent.resolve()
    ):
        out.append(
            f"日志密钥与日志放在同一目录 the log key {path} sits beside the delivery log: whoever"
            f" copies the folder can recover the numbers from their masked form; set {KEY_ENV}"
            f" or keep the key in a file elsewhere ({KEY_FILE_ENV})"
        )
    return out


def open_log(
    db: str | None, state_dir: Path, environ: Mapping[str, str] | None = None
) -> tuple[DeliveryLog, bytes]:
    """The delivery log (SQLite in the private state folder by default) and its key."""
    from broadcaster.log import DeliveryLog

    environ = os.environ if environ is None else environ
    key = hash_key(state_dir, environ)
    url = log_url(db, state_dir, environ)
    if url.startswith("sqlite:") and not (db or environ.get(DB_ENV)):
        private_folder(state_dir)
    return DeliveryLog.open(url, hash_key=key), key


@dataclass
class App:
    """A validated campaign with its channels, and what the commands build from them."""

    config_path: Path
    campaign: Campaign
    channels: dict[str, ChannelProfile]
    state_dir: Path
    environ: Mapping[str, str]
    registry: Registry
    warnings: list[ConfigIssue] = field(default_factory=list)
    now: dt.datetime | None = None

    @classmethod
    def load(
        cls,
        config: Path | str,
        *,
        now: dt.datetime,
        environ: Mapping[str, str] | None = None,
        state_dir: Path | None = None,
        registry: Registry | None = None,
    ) -> App:
        """Load and check everything; ConfigError lists every problem, nothing is half-applied.

        `now` (aware) is the moment the calendar's freshness and the channels are judged at.
        """
        path = Path(config)
        environ = os.environ if environ is None else environ
        registry = registry or Registry()
        state = state_dir or state_dir_for(path, None, environ)
        campaign, issues = build_campaign(
            path,
            today=now.astimezone(DEFAULT_ZONE).date(),
            recipients=RecipientStore.in_folder(state),
        )
        if campaign is None:
            raise ConfigError(issues)
        profiles, channel_issues = resolve_channels(
            campaign, registry=registry, environ=environ, state_dir=state, now=now
        )
        issues = issues + channel_issues
        if not any(i.severity == "error" for i in issues):
            issues += check_campaign(
                campaign, profiles, base_dir=campaign.base_dir, state_dir=state, now=now
            )
        if any(i.severity == "error" for i in issues):
            raise ConfigError(issues)
        campaign.warnings = [i for i in issues if i.severity != "error"]
        return cls(path, campaign, profiles, state, environ, registry, campaign.warnings, now)

    def reload(self, now: dt.datetime) -> App:
        return App.load(
            self.config_path,
            now=now,
            environ=self.environ,
            state_dir=self.state_dir,
            registry=self.registry,
        )

    @property
    def watched_files(self) -> list[Path]:
        """Files whose change `run` reloads beside the YAML: contact lists."""
        return sorted(self.campaign.contact_files)

    # -- building the engine

    def open_log(self, db: str | None = None) -> tuple[DeliveryLog, bytes]:
        return open_log(db, self.state_dir, self.environ)

    def lease(self) -> float:
        from broadcaster.engine.dispatch import DEFAULT_LEASE

        try:
            return float(self.environ.get(LEASE_ENV) or DEFAULT_LEASE)
        except ValueError:
            return DEFAULT_LEASE

    def dispatcher(
        self,
        log_store: DeliveryLog,
        hash_key: bytes,
        *,
        clock: Clock,
        limiter: RateLimiter | None = None,
        owner: str | None = None,
        executor: Executor | None = None,
        on_result: Any = None,
        heartbeat: bool = True,
    ) -> Dispatcher:
        from broadcaster.engine.dispatch import Dispatcher
        from broadcaster.reports.approvals import gate_for

        return Dispatcher(
            self.campaign,
            self.channels,
            log_store,
            clock=clock,
            hash_key=hash_key,
            state_dir=self.state_dir,
            environ=self.environ,
            executor=executor,
            limiter=limiter,
            lease=self.lease(),
            owner=owner,
            on_result=on_result,
            heartbeat=heartbeat,
            links=self.link_signer(clock),
            content_gate=gate_for(self.campaign, log_store, clock),
        )

    def link_signer(self, clock: Clock) -> LinkSigner:
        """Signs the links `broadcaster serve` checks (the web secret is read on first use)."""
        return _LazyLinks(self.state_dir, self.environ, clock)

    def runner(
        self,
        log_store: DeliveryLog,
        hash_key: bytes,
        *,
        clock: Clock,
        grace: dt.timedelta = dt.timedelta(hours=2),
        activity: Activity | None = None,
        on_result: Any = None,
        executor: Executor | None = None,
        limiter: RateLimiter | None = None,
    ) -> Runner:
        """The scheduler; `executor` and `limiter` put the sends on worker processes
        (`broadcaster run --workers external`), kept across config reloads."""
        from broadcaster.engine.runner import Runner

        def make(app: App, limiter: RateLimiter, owner: str) -> Dispatcher:
            return app.dispatcher(
                log_store,
                hash_key,
                clock=clock,
                limiter=limiter,
                owner=owner,
                on_result=on_result,
                executor=executor,
            )

        return Runner(
            self,
            log_store,
            clock=clock,
            make_dispatcher=make,
            reload=lambda: self.reload(clock.now()),
            grace=grace,
            activity=activity,
            lease=self.lease(),
            limiter=limiter,
        )


class _LazyLinks:
    """The web service's link signer, made when a channel first signs (needs the web extra)."""

    def __init__(self, state_dir: Path, environ: Mapping[str, str], clock: Clock):
        self.state_dir = state_dir
        self.environ = environ
        self.clock = clock
        self._signer: Any = None

    def _get(self) -> Any:
        if self._signer is None:
            try:
                from broadcaster.web.links import SignedLinks
                from broadcaster.web.settings import web_secret
            except ImportError:
                raise LogStoreError(
                    "签名链接需要 web 组件 signed links need the web extra:"
                    " pip install 'broadcaster[web]'"
                ) from None
            try:
                secret = web_secret(self.state_dir, self.environ)
            except LogStoreError:  # `serve` made the key file at the same moment: read it
                secret = web_secret(self.state_dir, self.environ)
            self._signer = SignedLinks(secret, None, self.clock)
        return self._signer

    def sign(self, purpose: str, subject: str, **kw: Any) -> str:
        return str(self._get().sign(purpose, subject, **kw))

    def peek(self, purpose: str, token: str) -> Any:
        return self._get().peek(purpose, token)

    def verify(self, purpose: str, token: str, *, subject: str | None = None) -> Any:
        return self._get().verify(purpose, token, subject=subject)
