"""`broadcaster serve users …` (accounts from the command line, passwords never in a flag),
and the real `broadcaster serve` and `broadcaster run --serve` processes."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import requests
import sqlalchemy as sa
from click.testing import CliRunner

from broadcaster.cli import cli
from tests.log.fixtures import raw_connection
from tests.processes import STOPPED, Running

PASSWORD = "a long enough password"


def users(mini: Path, log_url: str, *args: str, stdin: str = "") -> object:
    return CliRunner().invoke(
        cli, ["-c", str(mini), "serve", "--db", log_url, "users", *args], input=stdin
    )


def test_accounts_from_the_command_line(mini: Path, log_url: str) -> None:
    r = users(mini, log_url, "add", "olga", "--role", "operator", stdin=PASSWORD + "\n")
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    assert "已添加 added olga (operator)" in r.output  # type: ignore[attr-defined]
    with raw_connection(log_url) as conn:
        stored = conn.execute(sa.text("SELECT password_hash FROM console_users")).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    r = users(mini, log_url, "add", "olga", "--role", "viewer", stdin=PASSWORD + "\n")
    assert r.exit_code == 1 and "用户已存在 user 'olga' already exists" in r.output  # type: ignore[attr-defined]
    r = users(mini, log_url, "add", "vera", "--role", "viewer", stdin="short\n")
    assert r.exit_code == 1  # type: ignore[attr-defined]
    assert "密码太短 the password must have at least 10 characters" in r.output  # type: ignore[attr-defined]
    r = users(mini, log_url, "add", "bad name!", "--role", "viewer", stdin=PASSWORD + "\n")
    assert r.exit_code == 1 and "用户名无效" in r.output  # type: ignore[attr-defined]
    r = users(mini, log_url, "add", "vera", "--role", "admin", stdin=PASSWORD + "\n")
    assert r.exit_code == 2  # type: ignore[attr-defined]
    r = users(mini, log_url, "add", "vera", "--role", "viewer", "--password", PASSWORD)
    assert r.exit_code == 2 and "No such option" in r.output  # type: ignore[attr-defined]
    assert users(mini, log_url, "role", "olga", "auditor").exit_code == 0  # type: ignore[attr-defined]
    assert users(mini, log_url, "passwd", "olga", stdin="another long one\n").exit_code == 0  # type: ignore[attr-defined]
    assert users(mini, log_url, "disable", "olga").exit_code == 0  # type: ignore[attr-defined]
    r = users(mini, log_url, "disable", "nobody")
    assert r.exit_code == 1 and "没有此用户 no user 'nobody'" in r.output  # type: ignore[attr-defined]
    listing = users(mini, log_url, "list").output  # type: ignore[attr-defined]
    assert re.search(r"olga\s+│\s+auditor.*停用 disabled", listing)
    actions = CliRunner().invoke(cli, ["-c", str(mini), "serve", "--db", log_url, "actions"])
    for action in ("user_add", "user_role", "user_password", "user_disable"):
        assert action in actions.output
    assert PASSWORD not in actions.output and "another long one" not in actions.output


def test_serve_runs_as_a_process_and_stops_cleanly(mini: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    process = Running(mini, "--state-dir", str(state), "--port", "0", subcommand=("serve",))
    try:
        out = process.wait_for("运行中 running", timeout=60)
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", out)
        assert url is not None, out
        assert "还没有控制台账号 no console account yet" in out
        health = requests.get(url.group(1) + "/healthz", timeout=10)
        assert health.status_code == 503 and health.json()["log"]["ok"] is True
        assert requests.get(url.group(1) + "/login", timeout=10).status_code == 200
        assert process.stop(signal.SIGTERM) == 0
        assert STOPPED in process.output
    finally:
        process.close()
    assert (state / "web.key").stat().st_mode & 0o077 == 0


def test_run_serve_runs_the_service_beside_the_scheduler(mini: Path, tmp_path: Path) -> None:
    process = Running(mini, "--state-dir", str(tmp_path / "state"), "--serve", "--port", "0")
    try:
        out = process.wait_for("运行中 running", timeout=60)
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", out)
        assert url is not None, out
        health = requests.get(url.group(1) + "/healthz", timeout=10)
        body = health.json()
        assert body["scheduler"]["ok"] is True, body  # the scheduler's lease, in this process
        # the real clock decides whether next year's holiday file is due yet
        assert health.status_code == (200 if body["calendar"]["ok"] else 503)
        assert process.stop(signal.SIGINT) == 0
        assert STOPPED in process.output
    finally:
        process.close()


def test_serve_on_a_taken_port_says_so(mini: Path, tmp_path: Path) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        r = CliRunner().invoke(
            cli, ["-c", str(mini), "serve", "--state-dir", str(tmp_path / "s"), "--port", str(port)]
        )
    finally:
        taken.close()
    assert r.exit_code == 1
    assert f"无法监听 cannot listen on 127.0.0.1:{port}" in r.output
