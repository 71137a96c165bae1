"""`verify-log`, `log anchor` and `log prune` on the command line: exit codes, the chain head,
the first break named in both languages, anchors that catch a rewrite, retention."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from broadcaster.cli import cli
from broadcaster.engine.app import open_log
from broadcaster.log import chain
from broadcaster.vocab import Status
from tests.conftest import MINI, write_campaign
from tests.log.test_chain import intruder
from tests.log.test_store import record, walk

UTC = dt.UTC
RECENT = dt.datetime.now(UTC) - dt.timedelta(days=1)  # within any retention
OLD = dt.datetime.now(UTC) - dt.timedelta(days=400)
HEAD = re.compile(r"链头 chain head: ([0-9a-f]{64})")
ELEVEN_DIGITS = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["-c", str(config), *args])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_campaign(tmp_path / "office", MINI + "log: {retention_days: 180}\n")


def state_of(config: Path) -> Path:
    return config.parent / "var"


def url_of(config: Path) -> str:
    return f"sqlite:///{state_of(config) / 'delivery-log.sqlite3'}"


def populate(config: Path) -> None:
    """Deliveries old and recent, written through the log with the office's own key."""
    store, _ = open_log(None, state_of(config), {})
    try:
        store.add_deliveries(
            [
                record(store, "old", scheduled_at=OLD, text="去年的提醒 last year's text"),
                record(store, "recent", scheduled_at=RECENT),
            ],
            OLD,
        )
        store.append(walk("old", Status.DELIVERED))
        store.append(walk("recent", Status.ACCEPTED))
    finally:
        store.close()


def test_verify_log_prints_head_and_count_and_exits_0(config: Path) -> None:
    populate(config)
    result = invoke(config, "verify-log")
    assert result.exit_code == 0, result.output
    assert "完好 intact" in result.output
    assert "记录数 records: 9" in result.output  # 2 deliveries, 2 + 3 + 2 events
    (head,) = HEAD.findall(result.output)
    listed = invoke(config, "log")
    assert listed.exit_code == 0, listed.output
    assert f"链头 chain head: {head}  记录数 records: 9" in listed.output


def test_verify_log_names_the_edited_record_and_exits_1(config: Path) -> None:
    populate(config)
    with intruder(url_of(config)) as conn:
        i = conn.exec_driver_sql(
            "SELECT max(id) FROM delivery_events WHERE status = 'delivered'"
        ).scalar_one()
        conn.exec_driver_sql(f"UPDATE delivery_events SET status = 'failed' WHERE id = {i}")
    result = invoke(config, "verify-log")
    assert result.exit_code == 1, result.output
    assert f"已被篡改 BROKEN: 首个断点 first break: 被修改 edited: delivery_events id {i}" in (
        result.output
    )


def test_an_anchor_file_catches_a_rewrite_and_names_the_time(config: Path, tmp_path: Path) -> None:
    populate(config)
    out = tmp_path / "handed-on" / "anchor.txt"
    made = invoke(config, "log", "anchor", "--out", str(out))
    assert made.exit_code == 0, made.output
    text = out.read_text(encoding="utf-8")
    data = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert f"链头 chain head: {data['head']}" in text and "记录数 records: 9" in text
    assert data["records"] == 9 and len(data["log_id"]) == 36
    checked = invoke(
        config, "verify-log", "--anchor", str(out), "--anchor", str(out.with_suffix(".json"))
    )
    assert checked.exit_code == 0, checked.output
    assert "锚点 anchors: 2/2 已核验 verified" in checked.output
    # the whole database rewritten, its chain rebuilt to match: only the anchor tells
    with intruder(url_of(config)) as conn:
        conn.exec_driver_sql("UPDATE delivery_events SET reason = 'rewritten'")
        conn.exec_driver_sql("DELETE FROM log_chain")
        conn.exec_driver_sql("DELETE FROM log_chain_head")
        conn.exec_driver_sql(
            "INSERT INTO log_chain_head (id, seq, hash, records, marks) VALUES (1, -1, '', 0, '{}')"
        )
        chain._append_link(conn, chain.ChainHead(-1, "", 0, {}), None, {"log_id": data["log_id"]})
    assert invoke(config, "verify-log").exit_code == 0
    result = invoke(config, "verify-log", "--anchor", str(out))
    assert result.exit_code == 1, result.output
    assert "与锚点不符 does not extend the anchor" in result.output
    assert data["at"] in result.output


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("hello\n", "missing '日志标识 log id: …' (key log_id)"),
        (
            "日志标识 log id: 203bf596-2a11-4378-89a3-c84dacd44fb7\n链接序号 link seq: 0\n"
            "链头 chain head: xyz\n记录数 records: 9\n",
            "line 3: head 应为 expected 64 hex digits; got 'xyz'",
        ),
        ('{"log_id": ', "line 1: 锚点不是有效的 JSON not valid JSON"),
    ],
)
def test_a_malformed_anchor_names_file_line_and_key(
    config: Path, tmp_path: Path, content: str, expected: str
) -> None:
    bad = tmp_path / "anchor.txt"
    bad.write_text(content, encoding="utf-8")
    result = invoke(config, "verify-log", "--anchor", str(bad))
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())
    assert str(bad) in flat and expected in flat, result.output


def test_prune_keeps_the_chain_and_exports_show_only_masked_numbers(config: Path) -> None:
    populate(config)
    refused = invoke(config, "log", "prune")
    assert refused.exit_code == 2 and "--yes" in refused.output
    early = (dt.datetime.now(UTC) - dt.timedelta(days=10)).date()
    too_early = invoke(config, "log", "prune", "--before", str(early), "--yes")
    assert too_early.exit_code == 2 and "仍在保留期内 is within the retention period" in " ".join(
        too_early.output.split()
    )
    pruned = invoke(config, "log", "prune", "--yes", "--by", "张三")
    assert pruned.exit_code == 0, pruned.output
    assert "正文 texts 1" in pruned.output and "号码显示 masked numbers 1" in pruned.output
    verified = invoke(config, "verify-log")
    assert verified.exit_code == 0, verified.output
    assert "记录数 records: 10" in verified.output  # the prune is a chained record
    exported = invoke(config, "log", "--format", "csv")
    assert exported.exit_code == 0, exported.output
    assert "已过保留期 expired" in exported.output and "****" in exported.output
    assert not ELEVEN_DIGITS.search(exported.output)
    with sa.create_engine(url_of(config)).connect() as conn:
        texts = dict(conn.exec_driver_sql("SELECT sha256, text FROM messages").all())
    assert sorted(texts.values()) == ["", "【反诈】凡是让你刷单的都是诈骗，请拨110"]


def test_prune_without_retention_needs_a_date(tmp_path: Path) -> None:
    config = write_campaign(tmp_path / "office")
    result = invoke(config, "log", "prune", "--yes")
    assert result.exit_code == 2
    assert "未配置保留期 no retention configured" in " ".join(result.output.split())


def test_a_too_short_retention_is_a_config_error(tmp_path: Path) -> None:
    config = write_campaign(tmp_path / "office", MINI + "log:\n  retention_days: 7\n")
    result = invoke(config, "validate")
    assert result.exit_code != 0
    flat = " ".join(result.output.split())
    line = (MINI.lstrip("\n") + "log:\n").count("\n") + 1  # the line of retention_days
    assert f"schedules.yaml:{line}: log.retention_days:" in flat, result.output
    assert "retention_days must be at least 30 days; got 7" in flat
