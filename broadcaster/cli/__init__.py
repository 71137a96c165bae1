"""The `broadcaster` command: parse, call the core, show the result, exit with its code.

Exit codes: 0 ok, 1 error (invalid config, failed check), 2 usage, 3 unexpected, 130 interrupted.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from broadcaster import __version__
from broadcaster.cli.bilingual import BilingualContext, BroadcasterCommand, show_error
from broadcaster.cli.output import OutputConsole, console, silence
from broadcaster.errors import BroadcasterError, ConfigError

__all__ = ["main"]

CONFIG_ENV = "BROADCASTER_CONFIG"
LINGER_SECONDS = 1.0  # how long main() lets threads left running finish after the command
STANDALONE = False  # True in the `broadcaster` process (main()), False when called in-process


class State:
    """Options shared by every command."""

    def __init__(self, config: Path):
        self.config = config
        self.out: OutputConsole = console()
        self.err: OutputConsole = console(stderr=True)


def _broken_pipe(exc: BaseException) -> bool:
    return isinstance(exc, BrokenPipeError) or (
        isinstance(exc, OSError) and exc.errno == errno.EPIPE
    )


class BroadcasterGroup(click.Group):
    """Turns exceptions into messages and exit codes, in one place; a reader that closed
    the pipe early (`| head`, `| grep -q`) ends the command quietly with exit 0."""

    context_class = BilingualContext
    command_class = BroadcasterCommand
    group_class = type  # subgroups (calendar) are BroadcasterGroups too

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:  # --help and --version print while parsing
            return super().make_context(info_name, args, parent, **extra)
        except OSError as exc:
            if not _broken_pipe(exc):
                raise
            silence(sys.stdout)
            raise click.exceptions.Exit(0) from None

    def invoke(self, ctx: click.Context) -> Any:
        err = console(stderr=True)
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except ConfigError as exc:
            err.print(str(exc), markup=False)
            raise click.exceptions.Exit(exc.exit_code) from None
        except BroadcasterError as exc:
            err.print(f"错误 error: {exc}", markup=False)
            raise click.exceptions.Exit(exc.exit_code) from None
        except OSError as exc:
            if not _broken_pipe(exc):
                self._unexpected(err)
            # `broadcaster log --format csv | head`: the reader has enough
            silence(sys.stdout)
            raise click.exceptions.Exit(0) from None
        except KeyboardInterrupt:
            err.print("已中断 interrupted")
            raise click.exceptions.Exit(130) from None
        except Exception:
            self._unexpected(err)

    @staticmethod
    def _unexpected(err: OutputConsole) -> NoReturn:
        err.print("内部错误 unexpected error; please report it with this trace:", markup=False)
        err.print(traceback.format_exc(), markup=False)
        raise click.exceptions.Exit(3) from None

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's main, with click's messages in both languages and a closed pipe never
        an error: output still buffered is flushed here, not at interpreter exit."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        code = 0
        try:
            try:
                result = super().main(args, prog_name, complete_var, False, **extra)
                code = result if type(result) is int else 0
            except click.ClickException as exc:
                code = exc.exit_code
                show_error(exc)
            except click.exceptions.Abort:
                code = 1
                click.echo("已中止 Aborted!", err=True)
        except OSError as exc:  # stderr's reader has gone too: the exit code still tells
            if not _broken_pipe(exc):
                raise
            silence(sys.stderr)
        _flush(sys.stdout)
        _flush(sys.stderr)
        sys.exit(code)


def _flush(stream: Any) -> None:
    """Flush a standard stream; a reader that has gone is no error."""
    try:
        stream.flush()
    except OSError as exc:
        if not _broken_pipe(exc):
            raise
        silence(stream)
    except ValueError:  # closed
        pass


def parse_now(value: str | None, tz: Any) -> dt.datetime:
    """`--now` as an aware datetime in the campaign zone (default: the real clock)."""
    if value is None:
        return dt.datetime.now(tz)
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"时间格式错误 expected YYYY-MM-DD or YYYY-MM-DDTHH:MM; got {value!r}",
            param_hint="--now",
        ) from None
    return parsed.replace(tzinfo=tz) if parsed.tzinfo is None else parsed.astimezone(tz)


def parse_date(value: str | None, name: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"日期格式错误 expected a date YYYY-MM-DD; got {value!r}", param_hint=name
        ) from None


@click.group(
    cls=BroadcasterGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "-c",
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=lambda: os.environ.get(CONFIG_ENV, "schedules.yaml"),
    show_default="schedules.yaml or $BROADCASTER_CONFIG",
    help="活动配置文件 campaign config file.",
)
@click.version_option(
    __version__,
    prog_name="broadcaster",
    message="%(prog)s 版本 version %(version)s",
    help="显示版本 show the version and exit.",
)
@click.pass_context
def cli(ctx: click.Context, config: Path) -> None:
    """反电诈宣传定时多渠道推送 — scheduled multi-channel anti-fraud reminders.

    \b
    First steps 入门:
      broadcaster validate               检查配置 check schedules.yaml
      broadcaster plan                   未来两周计划 the next two weeks
      broadcaster preview RULE --date D  预览内容 exactly what each channel would send
      broadcaster calendar show 2026     节假日与活动日历 the year's calendar
    """
    ctx.obj = State(config)


def main() -> None:
    """Console-script entry point.

    A command that stopped within its time limit may leave threads blocked in a request
    that was already logged interrupted (a provider that never answers): waiting for them
    would make stopping unbounded, so after a short grace the process ends without them.
    """
    global STANDALONE
    STANDALONE = True
    code = 0
    try:
        cli.main(prog_name="broadcaster")
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    lingering = [
        t
        for t in threading.enumerate()
        if t is not threading.current_thread() and not t.daemon and t.is_alive()
    ]
    if lingering:
        deadline = time.monotonic() + LINGER_SECONDS
        for t in lingering:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in lingering):
            _flush(sys.stdout)
            _flush(sys.stderr)
            os._exit(code)
    sys.exit(code)


from broadcaster.cli import audio as _audio  # noqa: E402,F401
from broadcaster.cli import audit as _audit  # noqa: E402,F401
from broadcaster.cli import campaign as _campaign  # noqa: E402,F401  (registers the commands)
from broadcaster.cli import delivery as _delivery  # noqa: E402,F401
from broadcaster.cli import led as _led  # noqa: E402,F401
from broadcaster.cli import log as _log  # noqa: E402,F401
from broadcaster.cli import recipients as _recipients  # noqa: E402,F401
from broadcaster.cli import relay as _relay  # noqa: E402,F401
from broadcaster.cli import reports as _reports  # noqa: E402,F401
from broadcaster.cli import resolve as _resolve  # noqa: E402,F401
from broadcaster.cli import run as _run  # noqa: E402,F401
from broadcaster.cli import serve as _serve  # noqa: E402,F401
from broadcaster.cli import workers as _workers  # noqa: E402,F401
