"""Console pages over HTTP (no browser): pagination, CSV export, waiting, duties, and
readable pages for bad input."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import html
import io

from broadcaster.log import DeliveryRecord, Event
from broadcaster.vocab import ErrorClass, Status
from tests.web.conftest import Live, csrf_of, fire
from tests.web.test_hooks import SMS_AT


def add(live: Live, n: int, *, reason: str = "") -> list[str]:
    log = live.service.log
    at = dt.datetime(2026, 3, 2, 10, 0, tzinfo=SMS_AT.tzinfo)
    text = "测试文字"
    sha = hashlib.sha256(text.encode()).hexdigest()
    records = [
        DeliveryRecord(
            key=f"k{i:04d}",
            campaign="webtest",
            occurrence_id=f"twice-weekly@2026-03-02T10:{i % 60:02d}",
            rule_id="twice-weekly",
            channel_id="handoff",
            endpoint="e",
            target_id="g1",
            recipient_display="一组群",
            recipient_hash=f"h{i}",
            kind="bot",
            template="bot/alpha.j2",
            template_sha="t",
            text_sha256=sha,
            text=text,
            scheduled_at=at + dt.timedelta(minutes=i % 60),
        )
        for i in range(n)
    ]
    log.add_deliveries(records, at)
    if reason:
        log.append([Event(r.key, Status.FAILED, at, ErrorClass.CONTENT, reason) for r in records])
    return [r.key for r in records]


def test_the_log_pages_through_every_delivery_once(live: Live) -> None:
    keys = add(live, 250)
    s = live.session("vera")
    seen: list[str] = []
    url = live.url + "/log?from=2026-03-01"
    for _ in range(5):
        page = s.get(url, timeout=30).text
        seen += [k for k in keys if f'key={k}"' in page]
        if 'id="next"' not in page:
            break
        after = page.split('id="next" href="')[1].split('"')[0].replace("&amp;", "&")
        url = live.url + after
    assert sorted(seen) == sorted(keys) and len(seen) == 250


def test_csv_export_neutralises_formulas_and_masks_numbers(live: Live) -> None:
    add(live, 3, reason='=HYPERLINK("http://x","13800000001 点我")')
    s = live.session("vera")
    r = s.get(live.url + "/log.csv?from=2026-03-01", timeout=30)
    assert r.status_code == 200
    assert r.headers["content-disposition"].startswith('attachment; filename="deliveries-')
    text = r.content.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 3
    assert all(row["reason"].startswith("'=HYPERLINK") for row in rows)
    assert "13800000001" not in text and "138****0001" in text
    assert live.service.store.actions(actor="vera")[0].action == "export_csv"


def test_waiting_lists_accepted_deliveries_of_late_outcome_channels(live: Live) -> None:
    fire(live, "sms-monthly", SMS_AT)
    live.clock.advance(3 * 3600)
    page = live.session("vera").get(live.url + "/waiting", timeout=30).text
    assert page.count("3 小时 0 分") == 3
    assert "138****0001" in page and "137****0003" in page


def test_duties_show_groups_below_their_cadence(live: Live) -> None:
    page = live.session("vera").get(live.url + "/duties", timeout=30).text
    # twice a week planned, three required: both groups, by name
    assert page.count('data-target="g') == 2
    assert "一组群" in page and "二组群" in page and "群每周三次" in page


def test_bad_input_on_pages_gets_a_readable_page(live: Live) -> None:
    s = live.session("olga")
    cases = [
        ("/?date=2026-13-45", 400, "日期格式错误"),
        ("/calendar?month=20x6-3", 400, "月份格式错误"),
        ("/calendar?month=1800-01", 400, "月份超出范围"),
        ("/log?status=bogus", 400, "未知状态"),
        ("/log?from=yesterday", 400, "日期格式错误"),
        ("/log?after=not-a-cursor", 200, "投递记录"),
        ("/log/delivery?key=nope", 404, "没有此投递"),
        ("/nothing-here", 404, "页面不存在"),
    ]
    for path, status, text in cases:
        r = s.get(live.url + path, timeout=30)
        assert r.status_code == status, path
        assert text in r.text and "Traceback" not in r.text
        assert r.headers["content-type"].startswith("text/html")
    r = s.post(live.url + "/send/preview", data={"csrf": csrf_of(s), "rule": "nope"}, timeout=30)
    assert r.status_code == 400 and "未知规则 rule unknown 'nope'" in html.unescape(r.text)
    r = s.post(
        live.url + "/send/preview",
        data={
            "csrf": csrf_of(s),
            "template": "alert",
            "channels": "handoff",
            "tags": "group",
            "vars": "novalue",
        },
        timeout=30,
    )
    assert r.status_code == 400 and "变量格式错误" in r.text
    r = s.post(live.url + "/send/confirm", data={"csrf": csrf_of(s), "token": "forged"}, timeout=30)
    assert r.status_code == 400 and "链接无效" in r.text
    big = s.post(live.url + "/lookup", data={"csrf": csrf_of(s), "q": "x" * 100_000}, timeout=30)
    assert big.status_code == 413 and "请求内容过大" in big.text


def test_a_confirmation_works_once_and_for_its_operator_only(live: Live) -> None:
    olga = live.session("olga")
    form = {"csrf": csrf_of(olga), "rule": "twice-weekly"}
    preview = olga.post(live.url + "/send/preview", data=form, timeout=30).text
    token = preview.split('name="token" value="')[1].split('"')[0]
    live.service.accounts.add("otto", "operator", "correct horse battery")
    otto = live.session("otto")
    r = otto.post(
        live.url + "/send/confirm", data={"csrf": csrf_of(otto), "token": token}, timeout=30
    )
    assert r.status_code == 400 and "此链接属于另一个人" in r.text  # another operator's
    ok = olga.post(
        live.url + "/send/confirm", data={"csrf": csrf_of(olga), "token": token}, timeout=30
    )
    assert ok.status_code == 200 and "已记入日志" in ok.text
    again = olga.post(
        live.url + "/send/confirm", data={"csrf": csrf_of(olga), "token": token}, timeout=30
    )
    assert again.status_code == 400 and "链接已使用过" in again.text
