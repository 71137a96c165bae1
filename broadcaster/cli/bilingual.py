"""click's own words, Chinese first with the English beside: usage lines, help headings,
option notes, error messages, the confirmation prompt.

Nothing in click is patched: commands get a context whose help formatter writes the
headings in both languages, and `show_error` renders click's exceptions (used once, by
the `broadcaster` group's `main`). click's English message is kept whole after the
Chinese, so what an operator searches for still matches.
"""

from __future__ import annotations

from collections.abc import Iterable

import click

__all__ = [
    "BilingualContext",
    "BilingualFormatter",
    "BroadcasterCommand",
    "bilingual",
    "confirm",
    "show_error",
]

USAGE = "用法 Usage: "
HEADINGS = {
    "Options": "选项 Options",
    "Commands": "命令 Commands",
    "Arguments": "参数 Arguments",
}
# click's notes in option help, and its help option's own help
HELP_NOTES = (
    ("[default: ", "[默认 default: "),
    ("[required]", "[必填 required]"),
    ("Show this message and exit.", "显示帮助 show this message and exit."),
)
# click's error messages by how they start, with the Chinese put before them
ERRORS = (
    ("No such command", "没有这个命令"),
    ("No such option", "没有这个选项"),
    ("Missing command", "缺少命令"),
    ("Missing option", "缺少选项"),
    ("Missing argument", "缺少参数"),
    ("Missing parameter", "缺少参数"),
    ("Invalid value", "无效的值"),
    ("Got unexpected extra argument", "多余的参数"),
    ("Option '", "选项用法错误"),
    ("Could not open file", "无法打开文件"),
)


def bilingual(message: str) -> str:
    """One of click's English error messages with its Chinese before it; ours as they are."""
    for english, chinese in ERRORS:
        if message.startswith(english):
            return f"{chinese} {message}"
    return message


class BilingualFormatter(click.HelpFormatter):
    """click's help layout with the usage prefix, headings and notes in both languages."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, args, USAGE if prefix is None else prefix)

    def write_heading(self, heading: str) -> None:
        super().write_heading(HEADINGS.get(heading, heading))

    def write_dl(
        self, rows: Iterable[tuple[str, str]], col_max: int = 30, col_spacing: int = 2
    ) -> None:
        translated = []
        for term, text in rows:
            for english, both in HELP_NOTES:
                text = text.replace(english, both)
            translated.append((term, text))
        super().write_dl(translated, col_max, col_spacing)


class BilingualContext(click.Context):
    formatter_class = BilingualFormatter


class BroadcasterCommand(click.Command):
    """A command whose help and usage are bilingual."""

    context_class = BilingualContext


_HELP_ONLY = tuple(
    cls for cls in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if cls is not None
)


def show_error(exc: click.ClickException) -> None:
    """What click's `ClickException.show` prints, Chinese first: the usage and a hint for
    usage errors, then the message."""
    if _HELP_ONLY and isinstance(exc, _HELP_ONLY):  # no arguments at all: the help itself
        exc.show()
        return
    ctx = exc.ctx if isinstance(exc, click.UsageError) else None
    color = ctx.color if ctx is not None else None
    if ctx is not None:
        hint = ""
        if ctx.command.get_help_option(ctx) is not None:
            option = max(ctx.help_option_names, key=len)
            hint = f"查看帮助 Try '{ctx.command_path} {option}' for help.\n"
        click.echo(f"{ctx.get_usage()}\n{hint}", err=True, color=color)
    click.echo(f"错误 Error: {bilingual(exc.format_message())}", err=True, color=color)


def confirm(question: str) -> bool:
    """Ask a yes/no question, no by default (click.confirm answers bad input in English)."""
    while True:
        answer = click.prompt(
            f"{question} [y/N]", default="", show_default=False, prompt_suffix=": "
        )
        answer = answer.strip().lower()
        if answer in ("y", "yes", "是"):
            return True
        if answer in ("", "n", "no", "否"):
            return False
        click.echo("请回答 y 或 n please answer y or n", err=True)
