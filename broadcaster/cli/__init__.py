"""The `broadcaster` command: parse, call the core, show the result, exit with its code.

Exit codes: 0 ok, 1 error (invalid config, failed check), 2 usage, 3 unexpected, 130 interrupted.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from broadcaster import __version__
from broadcaster.errors import BroadcasterError, ConfigError

__all__ = ["main"]

CONFIG_ENV = "BROADCASTER_CONFIG"


def console(*, stderr: bool = False) -> Console:
    """A rich console; plain and wide enough for tables when not writing to a terminal."""
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else max(probe.width, 160)
    return Console(stderr=stderr, highlight=False, width=width, soft_wrap=True)


class State:
    """Options shared by every command."""

    def __init__(self, config: Path):
        self.config = config
        self.out = console()
        self.err = console(stderr=True)


class BroadcasterGroup(click.Group):
    """Turns exceptions into messages and exit codes, in one place."""

    def invoke(self, ctx: click.Context) -> Any:
        err = console(stderr=True)
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except BrokenPipeError:  # `broadcaster log --format csv | head`: the reader has enough
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise click.exceptions.Exit(0) from None
        except ConfigError as exc:
            err.print(str(exc), markup=False)
            raise click.exceptions.Exit(exc.exit_code) from None
        except BroadcasterError as exc:
            err.print(f"错误 error: {exc}", markup=False)
            raise click.exceptions.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("已中断 interrupted")
            raise click.exceptions.Exit(130) from None
        except Exception:
            err.print("内部错误 unexpected error; please report it with this trace:", markup=False)
            err.print(traceback.format_exc(), markup=False)
            raise click.exceptions.Exit(3) from None


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
@click.version_option(__version__, prog_name="broadcaster")
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
    """Console-script entry point."""
    cli(prog_name="broadcaster")


from broadcaster.cli import campaign as _campaign  # noqa: E402,F401  (registers the commands)
from broadcaster.cli import delivery as _delivery  # noqa: E402,F401
from broadcaster.cli import log as _log  # noqa: E402,F401
from broadcaster.cli import run as _run  # noqa: E402,F401
