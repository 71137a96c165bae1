"""Sending to recipient lists: opt-outs logged suppressed and never sent, a rule's tag and
area filter, each number's place in the hierarchy kept (masked) in the log."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from broadcaster.engine.clock import VirtualClock
from broadcaster.log import DeliveryLog
from broadcaster.model.plan import Planner
from broadcaster.recipients.reader import read_list
from broadcaster.recipients.store import RecipientStore
from broadcaster.vocab import ErrorClass, Status
from tests.engine.helpers import DAY, at, load
from tests.fakes.webhook_server import WebhookFake

KEY = b"test-key"
PEOPLE = (
    "姓名,手机,座机,地区,标签\n"
    "张三,13800000001,,一组,老年人\n"
    "李四,13900000002,0571-88886666,二组,学生家长\n"
    "王五,13700000003,,二组,老年人\n"
    "赵六,13600000004,,一组,外来务工\n"
)


def campaign(folder: Path, url: str, rule_recipients: dict[str, object] | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "people.csv").write_text(PEOPLE, encoding="gbk")
    rule: dict[str, object] = {
        "id": "blast",
        "channels": ["sms"],
        "targets": {"ids": ["dongcun"]},
        "when": {"dates": [DAY.isoformat()], "at": "10:00"},
    }
    if rule_recipients is not None:
        rule["recipients"] = rule_recipients
    config = {
        "campaign": {"id": "lists", "name": "名单", "office": "测试派出所"},
        "phases": [{"id": "main", "name": "集中宣传", "start": "2026-01-01", "end": "2026-12-31"}],
        "default_theme": "routine",
        "themes": {"routine": {"name": "日常", "topics": ["order_brushing", "loan"]}},
        "targets": [
            {
                "id": "town",
                "name": "青山镇",
                "children": [
                    {"id": "dongcun", "name": "东村", "recipients": {"file": "people.csv"}}
                ],
            }
        ],
        "channels": {
            "sms": {
                "type": "webhook",
                "kind": "sms",
                "settings": {
                    "url": f"{url}/send",
                    "headers": {"Authorization": "Bearer {token}"},
                    "secrets": {"token": {"env": "TEST_SECRET_TOKEN"}},
                    "success": {"json_path": "code", "equals": "OK", "id_path": "biz_id"},
                    "timeout": [2, 2],
                },
            }
        },
        "rules": [rule],
    }
    path = folder / "schedules.yaml"
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return path


def fire(path: Path, log: DeliveryLog) -> None:
    app = load(path)
    dispatcher = app.dispatcher(log, KEY, clock=VirtualClock(at(2026, 3, 3, 10)), heartbeat=False)
    try:
        spec = app.campaign.rule("blast")
        occurrence = next(
            Planner(app.campaign).rule_occurrences(spec, at(2026, 3, 3), at(2026, 3, 4))
        )
        dispatcher.fire(occurrence).wait()
    finally:
        dispatcher.close()


def test_an_opted_out_number_is_logged_suppressed_and_never_sent(
    tmp_path: Path, webhook_server: WebhookFake
) -> None:
    path = campaign(tmp_path / "c", webhook_server.url, None)
    RecipientStore.in_folder(tmp_path / "c" / "var").add_optouts(
        ["+8613900000002"], reason="unsubscribed", source="test", at=at(2026, 3, 1)
    )
    log = DeliveryLog.open(f"sqlite:///{tmp_path}/log.sqlite3", hash_key=KEY)
    try:
        fire(path, log)
        states = {s.recipient_display: s for s in log.deliveries(channel="sms")}
        # SMS reaches the four mobiles, not 李四's landline
        assert sorted(states) == ["136****0004", "137****0003", "138****0001", "139****0002"]
        out = states["139****0002"]
        assert (out.status, out.error_class) == (Status.SKIPPED, ErrorClass.OPTOUT)
        assert "opt-out" in out.reason
        sent = [r.json()["to"] for r in webhook_server.sends]
        assert sorted(sent) == ["+8613600000004", "+8613700000003", "+8613800000001"]
        assert {s.status for d, s in states.items() if d != "139****0002"} == {Status.ACCEPTED}
        # each number's place below the target is kept with the delivery
        assert states["138****0001"].target_path == "青山镇/东村/一组"
        assert states["137****0003"].target_path == "青山镇/东村/二组"
    finally:
        log.close()


def test_a_rule_reaches_only_the_people_its_filter_names(
    tmp_path: Path, webhook_server: WebhookFake
) -> None:
    path = campaign(tmp_path / "c", webhook_server.url, {"tags": ["老年人"], "areas": ["二组"]})
    log = DeliveryLog.open(f"sqlite:///{tmp_path}/log.sqlite3", hash_key=KEY)
    try:
        fire(path, log)
        assert [s.recipient_display for s in log.deliveries(channel="sms")] == ["137****0003"]
        assert [r.json()["to"] for r in webhook_server.sends] == ["+8613700000003"]
    finally:
        log.close()


def test_an_unchanged_list_is_read_once(
    tmp_path: Path, webhook_server: WebhookFake, monkeypatch: object
) -> None:
    """Loading again (validate, plan, a reload) reuses the list read by its content."""
    import broadcaster.model.config.cache as cache

    calls: list[int] = []

    def counting(raw: bytes):  # type: ignore[no-untyped-def]
        calls.append(len(raw))
        return read_list(raw)

    monkeypatch.setattr(cache, "read_list", counting)  # type: ignore[attr-defined]
    path = campaign(tmp_path / "c", webhook_server.url, None)
    now = dt.datetime.combine(DAY, dt.time(9), tzinfo=at(2026, 3, 3).tzinfo)
    load(path, now=now)
    load(path, now=now)
    assert len(calls) == 1
    (tmp_path / "c" / "people.csv").write_text(PEOPLE + "孙八,13500000005,,一组,\n", "gbk")
    app = load(path, now=now)
    assert len(calls) == 2
    assert len(app.campaign.targets["dongcun"].contacts) == 6  # 5 mobiles + 1 landline


def test_coverage_per_area_in_the_log_and_the_cli(
    tmp_path: Path, webhook_server: WebhookFake
) -> None:
    """Per area of the hierarchy: targeted, accepted, delivered and answered shares."""
    from click.testing import CliRunner

    from broadcaster.channel import Outcome
    from broadcaster.cli import cli
    from broadcaster.engine.recovery import Recovery

    path = campaign(tmp_path / "c", webhook_server.url, None)
    RecipientStore.in_folder(tmp_path / "c" / "var").add_optouts(
        ["+8613900000002"], reason="unsubscribed", source="test", at=at(2026, 3, 1)
    )
    url = f"sqlite:///{tmp_path}/log.sqlite3"
    log = DeliveryLog.open(url, hash_key=KEY)
    try:
        fire(path, log)
        app = load(path)
        dispatcher = app.dispatcher(log, KEY, clock=VirtualClock(at(2026, 3, 3, 11)))
        try:
            states = {s.recipient_display: s for s in log.deliveries(channel="sms")}
            Recovery(dispatcher).record(
                "sms",
                [
                    Outcome(Status.DELIVERED, key=states["138****0001"].key, reason="answered 32s"),
                    Outcome(Status.DELIVERED, key=states["137****0003"].key),
                ],
            )
        finally:
            dispatcher.close()
        areas = {(a.area, a.channel_id): a for a in log.coverage_by_area()}
        town = areas[("青山镇", "sms")]
        assert (town.targeted, town.accepted, town.delivered, town.answered, town.skipped) == (
            4,
            3,
            2,
            1,
            1,
        )
        one = areas[("青山镇/东村/一组", "sms")]  # 138…0001 and 136…0004
        two = areas[("青山镇/东村/二组", "sms")]  # 139…0002 (opted out) and 137…0003
        assert (one.targeted, one.accepted, one.delivered, one.answered) == (2, 2, 1, 1)
        assert (two.targeted, two.accepted, two.delivered, two.skipped) == (2, 1, 1, 1)
        assert [a.area for a in log.coverage_by_area(depth=2)] == ["青山镇/东村"]
    finally:
        log.close()
    (tmp_path / "c" / "var").mkdir(exist_ok=True)
    (tmp_path / "c" / "var" / "log.key").write_bytes(KEY)
    result = CliRunner().invoke(
        cli,
        ["-c", str(path), "log", "--db", url, "--by-area", "--depth", "3"],
        env={"BROADCASTER_LOG_KEY": KEY.decode()},
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "按区域覆盖率 coverage per area" in out
    assert "青山镇/东村/一组" in out and "青山镇/东村/二组" in out
    assert "13800000001" not in out and "8613900000002" not in out
    result = CliRunner().invoke(
        cli,
        ["-c", str(path), "log", "--db", url, "--by-area", "--depth", "1", "--format", "json"],
        env={"BROADCASTER_LOG_KEY": KEY.decode()},
    )
    [town_row] = json.loads(result.output)["coverage_by_area"]
    assert (town_row["area"], town_row["targeted"], town_row["accepted"]) == ("青山镇", 4, 3)
