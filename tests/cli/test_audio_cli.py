"""`broadcaster audio preview` through the command line: a real MP3, measured; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcaster.cli import cli
from tests.audio.helpers import decode, probe
from tests.conftest import MINI, write_campaign

SPEAKERS = """
  speakers:
    type: loudspeaker
    kind: loudspeaker
    settings: {chime: {before: false, after: false}, loudness: {target_lufs: -18}}
"""
SCRIPT = "{{ target.name }}的乡亲们请注意：{{ topic.slogan }}。请拨打96110。"


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    yaml_text = MINI.replace("channels:\n", "channels:\n" + SPEAKERS.strip("\n") + "\n", 1)
    templates = {f"loudspeaker/{t}.j2": SCRIPT for t in ("alpha", "beta", "gamma", "delta")}
    return write_campaign(tmp_path / "c", yaml_text, templates)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_preview_writes_a_measured_mp3(campaign: Path, tmp_path: Path) -> None:
    out = tmp_path / "listen.mp3"
    code, text = invoke(
        "-c",
        str(campaign),
        "audio",
        "preview",
        "beta",
        "--target",
        "g1",
        "--out",
        str(out),
        "--now",
        "2026-03-02T09:00",
    )
    assert code == 0, text
    assert "模板 template: loudspeaker/beta.j2 · 对象 target: g1 · 渠道 channel: speakers" in text
    assert "一组群的乡亲们请注意：凡是乙就是诈骗。请拨打九六幺幺零。" in text
    assert f"已写入 written: {out}" in text
    decoded = decode(out)
    assert 5 < decoded.seconds < 20
    assert probe(out.read_bytes())["bit_rate"] == "64000"
    assert "响度 loudness -18." in text or "响度 loudness -17." in text


def test_unknown_template_and_missing_engine_are_clear(
    campaign: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, text = invoke("-c", str(campaign), "audio", "preview", "nosuch", "--now", "2026-03-02")
    assert code == 2
    assert (
        "错误 Error: 未知的广播模板 unknown loudspeaker template 'nosuch'; expected one of " in text
    )
    assert ", alpha, " in text and ", order_brushing, " in text  # the office's and the built-ins
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng
    code, text = invoke(
        "-c",
        str(campaign),
        "audio",
        "preview",
        "alpha",
        "--out",
        str(tmp_path / "a.mp3"),
        "--now",
        "2026-03-02",
    )
    assert code == 1
    assert "Traceback" not in text
    assert (
        "TTS engine espeak-ng not found (espeak-ng): install it with `apt-get install espeak-ng"
        in text
    )
