"""The console's approvals page and the send-now refusal, on the real server: an operator
approves a pending version (the log's table and the ledger both record it), a viewer may
not, and a send-now preview of unapproved content offers no confirmation."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from broadcaster.reports.approvals import ApprovalStore
from broadcaster.reports.ledger import read_ledger
from tests.web.conftest import (  # noqa: F401  (fixtures)
    TZ,
    Live,
    csrf_of,
    live,
    live_factory,
    write_web_campaign,
)

NOW_SEND = dt.datetime(2026, 3, 3, 10, 0, tzinfo=TZ)


@pytest.fixture
def web_campaign(tmp_path: Path, example_plugin: None) -> Path:
    path = write_web_campaign(tmp_path / "campaign")
    config = json.loads(path.read_text(encoding="utf-8"))
    config["approval"] = {"required": True}
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return path


def test_an_operator_approves_and_a_viewer_cannot(live: Live) -> None:  # noqa: F811
    olga = live.session("olga")
    page = olga.get(live.url + "/approvals", timeout=30).text
    assert 'data-template="bot/alpha.j2" data-state="pending"' in page
    version = page.split(
        'name="template" value="bot/alpha.j2"><input type="hidden" name="version" value="'
    )[1][:64]
    vera = live.session("vera")
    form = {"template": "bot/alpha.j2", "version": version, "note": "已核对"}
    denied = vera.post(
        live.url + "/approvals/approve", data={**form, "csrf": csrf_of(vera)}, timeout=30
    )
    assert denied.status_code == 403
    ok = olga.post(
        live.url + "/approvals/approve", data={**form, "csrf": csrf_of(olga)}, timeout=30
    )
    assert ok.status_code == 200 and 'data-template="bot/alpha.j2" data-state="approved"' in ok.text
    store = ApprovalStore(live.service.log)
    rows = [(r.template, r.template_sha, r.by, r.note) for r in store.rows()]
    store.close()
    assert rows == [("bot/alpha.j2", version, "olga", "已核对")]
    campaign = live.app.campaign
    entries, _ = read_ledger(campaign.base_dir / "approvals.yaml", "")
    assert [(e.template, e.version, e.by) for e in entries] == [("bot/alpha.j2", version, "olga")]
    assert any(a.action == "approve" for a in live.service.store.actions(actor="olga"))


def test_send_now_of_unapproved_content_cannot_be_confirmed(live: Live) -> None:  # noqa: F811
    olga = live.session("olga")
    form = {"csrf": csrf_of(olga), "rule": "twice-weekly"}
    preview = olga.post(live.url + "/send/preview", data=form, timeout=30).text
    assert "消息不能发送 the message cannot be sent" in preview
    assert "内容未审核 not approved: tpl/bot/" in preview
    assert 'name="token"' not in preview


def test_the_reports_page_and_its_downloads(live: Live) -> None:  # noqa: F811
    from tests.web.conftest import fire

    fire(live, "twice-weekly", NOW_SEND)
    vera = live.session("vera")  # a viewer may read reports
    page = vera.get(live.url + "/reports?kind=monthly&period=2026-03", timeout=60)
    assert page.status_code == 200
    assert 'id="chart-per-period"' in page.text and "链头 chain head" in page.text
    assert "<td>handoff</td>" in page.text
    xlsx = vera.get(
        live.url + "/reports/download?kind=monthly&period=2026-03&format=xlsx", timeout=60
    )
    assert xlsx.status_code == 200 and xlsx.content.startswith(b"PK")
    assert "report-webtest-2026-03.xlsx" in xlsx.headers["content-disposition"]
    bad = vera.get(live.url + "/reports?kind=monthly&period=2026-13", timeout=30)
    assert bad.status_code == 400 and "expected a month YYYY-MM" in bad.text


def test_console_lookup_by_person_and_area_and_its_printable_record(live: Live) -> None:  # noqa: F811
    from tests.web.conftest import fire

    fire(live, "twice-weekly", NOW_SEND)  # held back (not approved): logged skipped, to g1 and g2
    alan = live.session("alan")
    person = alan.post(
        live.url + "/lookup",
        data={"csrf": csrf_of(alan), "kind": "person", "q": "张三", "village": "测试镇"},
        timeout=30,
    ).text
    assert "138****0001" in person and "13800000001" not in person
    assert "一组群" in person and "二组群" in person  # the groups of his area
    assert "未触达" in person  # the group sends were held back, nothing reached him
    area = alan.post(
        live.url + "/lookup", data={"csrf": csrf_of(alan), "kind": "area", "q": "town"}, timeout=30
    ).text
    assert "一组群 (g1)" in area and "短信名单" not in area  # lists are looked up by person
    record = alan.post(
        live.url + "/lookup",
        data={"csrf": csrf_of(alan), "kind": "number", "q": "13800000001", "print": "1"},
        timeout=30,
    ).text
    assert "一案三查 触达记录" in record and "链头 chain head" in record
    assert "13800000001" not in record
