"""Faults reach the operator as one clear line and an exit code, never as a traceback."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from broadcaster.cli import cli
from tests.conftest import write_campaign


def test_an_unwritable_log_database_is_one_clear_error(tmp_path: Path) -> None:
    config = write_campaign(tmp_path / "mini")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be", encoding="utf-8")
    db = f"sqlite:///{blocker}/log.sqlite3"
    result = CliRunner().invoke(
        cli, ["-c", str(config), "log", "--db", db, "--state-dir", str(tmp_path / "state")]
    )
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"错误 error: 日志库无法写入 delivery log is not writable: {blocker}/log.sqlite3 "
        f"({blocker} is a file, not a folder)"
    )


def test_an_unreachable_postgresql_never_shows_its_password(tmp_path: Path) -> None:
    config = write_campaign(tmp_path / "mini")
    db = "postgresql+psycopg://broadcaster:hunter2-pw@127.0.0.1:1/log?connect_timeout=2"
    result = CliRunner().invoke(
        cli, ["-c", str(config), "log", "--db", db, "--state-dir", str(tmp_path / "state")]
    )
    assert result.exit_code == 1
    assert result.output.startswith(
        "错误 error: 日志库无法连接 delivery log is unreachable: postgresql+psycopg://broadcaster:***@127.0.0.1:1/log"
    )
    assert "hunter2-pw" not in result.output
    assert "Traceback" not in result.output
