"""Every exception `broadcaster` raises on purpose.

    BroadcasterError                 exit code 1 unless stated
    ├── ConfigError                  schedules.yaml (or an include) is invalid; holds every issue
    ├── CalendarError                calendar data file unreadable or inconsistent
    ├── TemplateError                a message template fails to load or render
    ├── LogStoreError                delivery log unreachable, locked or read-only
    │   ├── LogKeyMismatchError      the log was written with another key (key id differs)
    │   └── LogWriterDeadError       the log's writer thread stopped: the process must stop
    ├── SecretMissingError           a secret's environment variable is not set
    ├── ChannelError                 raised inside a channel plugin's send()
    │   ├── RetryableError           may be retried (timeout before sending, 5xx, 429); retry_after
    │   ├── PermanentError           will fail again (4xx, auth, invalid recipient); error_class
    │   └── OutcomeUnknownError      the provider may have acted (read timeout after sending)
    ├── PluginError                  a channel plugin failed to load or clashes with another
    ├── AudioError                   speech or audio could not be made
    │   ├── SpeechEngineMissingError a text-to-speech engine is not installed (names the command)
    │   └── RecordingRejectedError   a supplied recording is silent, clipped, corrupt, too long
    ├── InvalidArgumentError         broadcaster was called with a value it cannot use (a bug)
    └── AbortedError                 the operator declined a confirmation (exit code 1)

Exit codes live on the exceptions and are printed in one place (`cli.main`):
1 error, 2 usage, 3 unexpected, 130 interrupted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "AbortedError",
    "AudioError",
    "BroadcasterError",
    "CalendarError",
    "ChannelError",
    "ConfigError",
    "ConfigIssue",
    "InvalidArgumentError",
    "LogKeyMismatchError",
    "LogStoreError",
    "LogWriterDeadError",
    "OutcomeUnknownError",
    "PermanentError",
    "PluginError",
    "RecordingRejectedError",
    "RetryableError",
    "SecretMissingError",
    "SpeechEngineMissingError",
    "TemplateError",
]


class BroadcasterError(Exception):
    """Base class; `exit_code` is what the CLI exits with."""

    exit_code = 1


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in the configuration, located in its source file.

    `severity` is "error" (refuses the config) or "warning" (reported, not fatal
    unless the command says so).
    """

    file: str
    line: int | None
    path: str
    message: str
    severity: str = "error"
    hint: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class ConfigError(BroadcasterError):
    """The configuration is invalid; nothing of it was applied."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = [i for i in issues if i.severity == "error"] or issues
        self.warnings = [i for i in issues if i.severity != "error"]
        count = len(self.issues)
        super().__init__(
            f"配置有 {count} 处错误 ({count} error{'s' if count != 1 else ''} in configuration):\n"
            + "\n".join(f"  {i}" for i in self.issues)
        )


class CalendarError(BroadcasterError):
    """A calendar data file is unreadable or inconsistent."""


class TemplateError(BroadcasterError):
    """A template failed to load or render; message names file and line."""


class LogStoreError(BroadcasterError):
    """The delivery log cannot be opened or written."""


class LogKeyMismatchError(LogStoreError):
    """The log records another key id than this process's key: its keys would all change."""


class LogWriterDeadError(LogStoreError):
    """The log's writer thread died; nothing more can be written by this process."""


class SecretMissingError(BroadcasterError):
    """A secret was needed but its environment variable is not set."""

    def __init__(self, env: str):
        super().__init__(f"缺少环境变量 environment variable {env} is not set")
        self.env = env


class ChannelError(BroadcasterError):
    """Raised by a channel plugin; dispatch maps it to a per-recipient result."""

    error_class = "transient"

    def __init__(self, reason: str, *, error_class: str | None = None):
        super().__init__(reason)
        self.reason = reason
        if error_class is not None:
            self.error_class = error_class


class RetryableError(ChannelError):
    """Safe to send again, after `retry_after` seconds when the provider said so."""

    def __init__(
        self, reason: str, *, retry_after: float | None = None, error_class: str = "transient"
    ):
        super().__init__(reason, error_class=error_class)
        self.retry_after = retry_after


class PermanentError(ChannelError):
    """Will fail again: error_class is one of recipient, content, config."""

    error_class = "config"


class OutcomeUnknownError(ChannelError):
    """The request may have reached the provider; never re-send blindly."""

    error_class = "unknown"


class PluginError(BroadcasterError):
    """A channel plugin could not be loaded, or its name clashes."""


class AudioError(BroadcasterError):
    """Speech or audio could not be made (the engine failed, the input is unusable)."""


class SpeechEngineMissingError(AudioError):
    """A text-to-speech engine is not installed; the message names the install command."""


class RecordingRejectedError(AudioError):
    """A supplied recording cannot be broadcast; the message gives the measured reason."""


class InvalidArgumentError(BroadcasterError, ValueError):
    """A function of broadcaster was called with a value it cannot use: a bug in the caller."""

    exit_code = 3


class AbortedError(BroadcasterError):
    """The operator declined to go on."""
