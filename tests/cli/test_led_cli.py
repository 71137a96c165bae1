"""`broadcaster led …` as an office runs it: export files in each screen's charset, the
day's history as CSV, stale screens (exit 1), pushes; wrong input named, exit non-zero."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcaster.cli import cli
from broadcaster.engine.led import LedFeed
from tests.conftest import TZ
from tests.led.conftest import write_screens
from tests.led.helpers import ENV, fire, load

T8 = dt.datetime(2026, 3, 3, 8, 0, tzinfo=TZ)


@pytest.fixture
def office(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A campaign whose log holds two rotations and the door screen's fetches."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = write_screens(tmp_path / "c")
    db = f"sqlite:///{tmp_path / 'log.sqlite3'}"
    app = load(path, T8)
    store, key = app.open_log(db)
    try:
        fire(app, store, key, "led-rotation", T8 - dt.timedelta(days=1, hours=-12))  # 03-02 20:00
        fire(app, store, key, "led-rotation", T8, T8 + dt.timedelta(hours=2))
        feed = LedFeed(store)
        for at in (
            T8 - dt.timedelta(hours=11),
            T8 + dt.timedelta(minutes=1),
            T8 + dt.timedelta(hours=2, minutes=1),
        ):
            served = feed.served(app, "door", at)
            assert served is not None
            feed.fetched(app, served, at)
    finally:
        store.close()
    return path, db


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_export_writes_json_and_text_in_each_screen_charset(
    office: tuple[Path, str], tmp_path: Path
) -> None:
    path, db = office
    out = tmp_path / "export"
    code, text = run(
        "-c", str(path), "led", "export", "--out", str(out), "--now", "2026-03-03T10:30", "--db", db
    )
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == [
        "door.json",
        "door.txt",
        "gate.json",
        "gate.txt",
    ]
    door = json.loads((out / "door.json").read_bytes())
    assert door["screen"]["encoding"] == "gb2312"
    assert door["items"][0]["role"] == "warning"
    assert door["generated_at"] == "2026-03-03T10:30:00+08:00"
    lines = (out / "door.txt").read_bytes().decode("gbk").split("\r\n")
    assert lines[0].startswith("6\t") and lines[-1] == ""
    assert len(lines) - 1 == len(door["items"])
    assert (out / "gate.txt").read_bytes().decode("gbk")  # GBK screen
    assert "door 便民服务中心门口屏" in text and "gb2312" in text


def test_history_prints_the_items_each_screen_carried_that_day(office: tuple[Path, str]) -> None:
    path, db = office
    code, out = run(
        "-c", str(path), "led", "history", "--screen", "door", "--day", "2026-03-03", "--db", db
    )
    assert code == 0, out
    assert out.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(out.lstrip("\ufeff"))))
    versions = list(dict.fromkeys(r["version"] for r in rows))
    assert len(versions) == 3  # carried in from 03-02 20:00, then 08:01 and 10:01
    assert rows[0]["since"] == "2026-03-02T21:00:00+08:00"
    assert {r["role"] for r in rows} == {"warning", "slogan", "hotline"}
    assert all(r["screen_name"] == "便民服务中心门口屏" and r["place"] == "测试镇" for r in rows)
    warnings = [r for r in rows if r["role"] == "warning"]
    assert len({w["item"] for w in warnings}) == 3
    code, with_own = run(
        "-c", str(path), "led", "history", "--day", "2026-03-03", "--all-items", "--db", db
    )
    assert code == 0 and "办事大厅周六照常办公" in with_own


def test_status_reports_stale_screens_and_exits_1(office: tuple[Path, str]) -> None:
    path, db = office
    code, out = run("-c", str(path), "led", "status", "--now", "2026-03-03T10:20", "--db", db)
    assert code == 1
    assert "door 便民服务中心门口屏" in out and "正常 ok" in out
    assert "gate 中学校门屏" in out and "从未 never" in out and "失联 stale" in out
    assert "失联 stale: 1 / 2" in out
    code, out = run("-c", str(path), "log", "--db", db)  # the clock: everything is stale by now
    assert code == 0, out
    assert "显示屏失联 stale screens: 2 / 2" in out
    assert "gate 中学校门屏" in out


WRONG = [
    (
        ("history", "--screen", "nowhere", "--day", "2026-03-03"),
        "没有此显示屏 no such screen: nowhere",
    ),
    (("history", "--day", "2026-02-30"), "2026-02-30"),
    (("history", "--day", "2026-03-03", "--to", "2026-03-01"), "--to 早于 --day is before --day"),
    (("push", "--screen", "nowhere"), "没有此显示屏 no such screen: nowhere"),
]


def test_wrong_input_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = write_screens(tmp_path / "c")
    db = f"sqlite:///{tmp_path / 'log.sqlite3'}"
    for args, message in WRONG:
        code, out = run("-c", str(path), "led", *args, "--db", db)
        assert code == 2, out
        assert message in out
