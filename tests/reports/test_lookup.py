"""一案三查 lookup through the command line on the shipped sample: by number (hashed before
the search, shown masked), by name and village, by group, screen and area; a malformed number
is an error; the printable record carries the chain head and the record count."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from broadcaster.cli import cli
from broadcaster.engine.app import open_log
from broadcaster.reports import lookup as lk
from broadcaster.vocab import Status
from tests.reports.fixtures import Sent, at, chain_of, copy_sample, fill

ZHANG = "13800000201"  # 张某, on 东风镇's SMS and voice lists
LI = "13800000202"  # 李某, on the SMS list, whose message failed

SENDS = [
    Sent(at("2026-11-08"), "sms_gateway", "dongfeng-farmers-sms", Status.DELIVERED, number=ZHANG),
    Sent(at("2026-11-08"), "sms_gateway", "dongfeng-farmers-sms", Status.FAILED, number=LI),
    Sent(
        at("2026-11-15", "10:30"),
        "voice_gateway",
        "dongfeng-voice",
        Status.ACCEPTED,
        "fake_police",
        ZHANG,
    ),
    Sent(at("2026-11-10"), "group_handoff", "hexi-affairs", Status.DELIVERED, "loan"),
    Sent(
        at("2026-11-11", "07:30"),
        "loudspeaker_scripts",
        "hexi-speaker",
        Status.ACCEPTED,
        "phishing",
    ),
    Sent(
        at("2026-11-12", "08:00"), "led_items", "dongfeng-center-led", Status.ACCEPTED, "investment"
    ),
    Sent(at("2026-11-12"), "group_handoff", "lijia-affairs", Status.DELIVERED, "loan"),
]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One filled log for the module: the lookups only read it."""
    sample = copy_sample(tmp_path_factory.mktemp("lookup"))
    fill(sample, sample.parent / "var", SENDS)
    return sample


def run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-c", str(config), "lookup", *args, "--now", "2026-12-01"])
    return result.exit_code, result.output


def test_lookup_by_phone_is_hashed_and_masked(filled: Path) -> None:
    code, out = run(filled, "--phone", ZHANG, "--limit", "50")
    assert code == 0, out
    assert "138****0201" in out and ZHANG not in out
    assert "已触达 reached" in out and "2026-11-08 10:00 (sms_gateway)" in out
    assert "2026-11-15 10:30 (voice_gateway)" in out  # the latest: the voice call
    # the area's targets: his township's group, loudspeaker and screen, not another township's
    assert (
        "河西村阳光村务群" in out
        and "河西村大喇叭" in out
        and "东风镇便民服务中心门口显示屏" in out
    )
    assert "李家村" not in out
    assert "链头 chain head" in out and "记录数 records" in out


def test_lookup_searches_by_the_keyed_hash(filled: Path) -> None:
    log, _ = open_log(None, filled.parent / "var")
    try:
        hashes = {
            r[0]
            for r in log.read(
                lambda c: c.execute(sa.text("SELECT recipient_hash FROM deliveries")).all()
            )
        }
        subject = lk.by_phone(None, "+86 138-0000-0201", log.recipient_hash)
    finally:
        log.close()
    assert subject.sections[0].ref in hashes  # other spellings of the number find the same rows
    assert subject.shown == "138****0201"


def test_failed_delivery_is_not_reached(filled: Path) -> None:
    code, out = run(filled, "--phone", LI)
    assert code == 0, out
    assert ("138****0202" in out and "发送失败" in out) or "failed" in out
    # his own SMS failed, but the area's group and loudspeaker reached the village
    assert "河西村阳光村务群" in out


@pytest.mark.parametrize("bad", ["1380000020", "12345", "abc", "+1 415 555 0100"])
def test_malformed_number_is_an_error(filled: Path, bad: str) -> None:
    code, out = run(filled, "--phone", bad)
    assert code == 2
    assert "号码无效 not a mainland mobile or landline number" in out


def test_lookup_by_name_village_group_screen_area(filled: Path) -> None:
    code, out = run(filled, "--name", "张某", "--village", "东风镇")
    assert code == 0, out
    assert "138****0201" in out and "已触达 reached" in out
    code, out = run(filled, "--group", "hexi-affairs")
    assert code == 0 and "2026-11-10 10:00" in out and "已触达 reached" in out
    code, out = run(filled, "--screen", "东风镇便民服务中心门口显示屏")
    assert code == 0 and "led_items" in out
    code, out = run(filled, "--area", "hexi")
    assert code == 0 and "河西村大喇叭" in out and "河西村阳光村务群" in out
    code, out = run(filled, "--group", "no-such-group")
    assert code == 2 and "未知对象 no target" in out
    code, out = run(filled, "--name", "张某")
    assert code == 2 and "--village" in out


def test_unreached_number(filled: Path) -> None:
    code, out = run(filled, "--phone", "13700000301")  # 孙某, qingshan: no SMS to him
    assert code == 0, out
    assert "137****0301" in out
    assert "未触达 not reached" not in out  # qingshan's group was reached
    code, out = run(filled, "--phone", "13912345678")  # on no list
    assert code == 0 and "未触达 not reached" in out and "not on any list" in out


def test_printable_record(filled: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "record.html"
    code, out = run(filled, "--phone", ZHANG, "--out", str(out_file))
    assert code == 0, out
    html = out_file.read_text(encoding="utf-8")
    assert "138****0201" in html and ZHANG not in html
    head, records = chain_of(filled.parent / "var")
    assert f"链头 chain head: {head} · 记录数 records: {records:,}" in html
    assert "是 yes" in html and "http" not in html.replace("http-equiv", "")


def test_the_record_is_html_only(filled: Path, tmp_path: Path) -> None:
    code, out = run(filled, "--phone", ZHANG, "--out", str(tmp_path / "record.pdf"))
    assert code == 2 and "name it .html (got record.pdf)" in out
    assert not (tmp_path / "record.pdf").exists()
