"""`broadcaster audio preview`: render one loudspeaker script to an MP3 file and measure it."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from broadcaster.cli import State, cli
from broadcaster.cli.campaign import NOW_OPTION, load_app, pass_state

__all__ = ["audio_group", "audio_preview"]


@cli.group("audio")
def audio_group() -> None:
    """广播音频 loudspeaker audio: listen to a script before approving it."""


@audio_group.command("preview")
@click.argument("template", metavar="TEMPLATE")
@click.option(
    "--target", help="对象 the target whose variables the script uses (default: the first)."
)
@click.option("--channel", help="广播渠道 the loudspeaker channel whose audio settings apply.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="输出文件 where to write the MP3 (default: preview-<template>.mp3 here).",
)
@NOW_OPTION
@pass_state
def audio_preview(
    state: State,
    template: str,
    target: str | None,
    channel: str | None,
    out: Path | None,
    now: str | None,
) -> None:
    """把一篇广播稿合成为 MP3 试听 render one loudspeaker script to an MP3 to listen to.

    TEMPLATE is a topic (fake_police) or a template name (loudspeaker/alert.j2).
    """
    from broadcaster.audio.preview import render_preview

    app, when = load_app(state, now)
    if out is None:
        stem = template.removeprefix("loudspeaker/").removesuffix(".j2").replace("/", "_")
        out = Path(f"preview-{stem}.mp3")
    from broadcaster.errors import InvalidArgumentError

    try:
        result = render_preview(app, template, now=when, target=target, channel=channel, out=out)
    except InvalidArgumentError as exc:  # an unknown template, target or channel
        raise click.UsageError(str(exc)) from None
    p = state.out.print
    p(
        f"模板 template: {escape(result.template)} · 对象 target: {escape(result.target)}"
        f" · 渠道 channel: {escape(result.channel)}"
    )
    p("朗读文本 spoken text:", style="dim")
    p(escape(result.spoken))
    for problem in result.problems:
        p(f"[yellow]注意 warning[/yellow] {escape(problem)}")
    lufs = f"{result.lufs:.1f}" if result.lufs is not None else "?"
    peak = f"{result.true_peak_dbtp:.1f}" if result.true_peak_dbtp is not None else "?"
    p(
        f"时长 duration {result.seconds:.1f} s · 响度 loudness {lufs} LUFS · "
        f"真峰值 true peak {peak} dBTP · {result.bitrate_kbps} kbit/s · {result.sample_rate} Hz"
    )
    p(f"sha256 {result.sha256}")
    p(f"已写入 written: {escape(str(result.path))}")
