"""The console in headless Chromium (Debian's /usr/bin/chromium through Playwright): log in,
open every page at 1366x768 and on a phone, filter the log, follow a delivery's history,
look a number up, preview and confirm a send-now. Each page is screenshotted to the test's
temporary folder and checked on its DOM (content there, nothing wider than the screen)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from broadcaster.vocab import Status
from tests.web.conftest import PASSWORD, Live, fire
from tests.web.test_hooks import SMS_AT, post

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
# page -> an element only that page has, filled in
PAGES = {
    "/": "#today, #upcoming",
    "/calendar": "#month .day",
    "/log": "#filters",
    "/channels": "#channels tr[data-channel]",
    "/duties": "#shortfalls, .ok",
    "/waiting": "#waiting, .ok",
    "/send": "#send",
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium (scripts/bootstrap.sh dev)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def open_console(browser: Browser, live: Live, name: str, viewport: dict[str, int]) -> Page:
    context = browser.new_context(viewport=viewport, locale="zh-CN")  # type: ignore[arg-type]
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto(live.url + "/")
    assert page.url.startswith(live.url + "/login")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(live.url + "/")
    return page


def check_not_blank(page: Page, selector: str, shot: Path) -> None:
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 5_000
    assert page.locator(selector).first.is_visible()
    assert len(page.inner_text("main")) > 40
    assert page.locator("nav.nav a").count() >= 6
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{page.url} is {overflow}px wider than the screen"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1366x768", "phone"])
def test_every_page_renders(
    browser: Browser, live: Live, tmp_path: Path, viewport: dict[str, int]
) -> None:
    fire(live, "sms-monthly", SMS_AT)
    page = open_console(browser, live, "olga", viewport)
    for path, selector in PAGES.items():
        page.goto(live.url + path)
        assert page.title().endswith("broadcaster")
        check_not_blank(
            page, selector, tmp_path / f"{viewport['width']}{path.replace('/', '_')}.png"
        )
        if path == "/":  # today is the SMS day: its send is there, fired, with its deliveries
            row = page.locator("#today tr[data-occurrence^='sms-monthly']")
            assert row.get_attribute("data-state") == "done"
            assert "已受理 accepted 3" in row.inner_text()
    page.goto(live.url + "/calendar?month=2026-02")
    assert page.locator(".day.rest .tag.hol").first.inner_text().startswith("休")
    assert page.locator(".day.makeup").count() >= 1  # 调休 Saturday in February 2026
    page.context.close()


def test_filter_the_log_and_read_a_history(browser: Browser, live: Live, tmp_path: Path) -> None:
    fire(live, "sms-monthly", SMS_AT)
    assert post(live, [{"provider_id": "echo-2", "status": "delivered"}]).status_code == 200
    page = open_console(browser, live, "vera", DESKTOP)
    page.goto(live.url + "/log?from=2026-03-01&to=2026-03-31")
    assert page.locator("#deliveries tbody tr").count() == 3
    coverage = page.locator("#coverage tbody tr").first.inner_text()
    assert "33.3%" in coverage and "100%" in coverage  # delivered 1 of 3 (rounded down), accepted 3
    page.select_option("select[name=status]", Status.DELIVERED.value)
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/log?*status=delivered*")
    rows = page.locator("#deliveries tbody tr")
    assert rows.count() == 1
    assert rows.first.get_attribute("data-status") == "delivered"
    assert "139****0002" in rows.first.inner_text()
    check_not_blank(page, "#deliveries", tmp_path / "log-filtered.png")
    rows.first.locator("a").click()
    page.wait_for_url("**/log/delivery?key=*")
    history = page.locator("#history tbody tr")
    assert [history.nth(i).locator(".badge").inner_text() for i in range(history.count())] == [
        "待发送 planned",
        "发送中 sending",
        "已受理 accepted",
        "已送达 delivered",
    ]
    assert "凡是" in page.inner_text("pre.text")
    check_not_blank(page, "#history", tmp_path / "delivery.png")


def test_an_auditor_looks_a_number_up(browser: Browser, live: Live, tmp_path: Path) -> None:
    fire(live, "sms-monthly", SMS_AT)
    page = open_console(browser, live, "alan", PHONE)
    page.goto(live.url + "/lookup")
    page.fill("input[name=q]", "138 0000 0001")
    page.click("#lookup button[type=submit]")
    page.wait_for_selector("#results")
    text = page.inner_text("#results")
    assert "138****0001" in text and "13800000001" not in page.content()
    assert page.locator("#results table.reach tbody tr").count() == 1
    check_not_blank(page, "#results", tmp_path / "lookup.png")
    assert [
        a.subject for a in live.service.store.actions(actor="alan") if a.action == "lookup"
    ] == ["number 138****0001"]


def test_an_operator_previews_and_confirms_a_send_now(
    browser: Browser, live: Live, tmp_path: Path
) -> None:
    page = open_console(browser, live, "olga", DESKTOP)
    page.goto(live.url + "/send")
    page.select_option("select[name=rule]", "twice-weekly")
    page.check("input[name=tags][value=group]")
    page.click("#send button[type=submit]")
    page.wait_for_url("**/send/preview")
    groups = page.locator(".text-group")
    assert groups.count() == 2  # one text per group (the target's name is in it)
    assert sum(int(groups.nth(i).get_attribute("data-count") or 0) for i in range(2)) == 2
    assert "一组群" in page.inner_text("main") and "二组群" in page.inner_text("main")
    check_not_blank(page, "#confirm", tmp_path / "send-preview.png")
    page.click("#confirm button[type=submit]")
    page.wait_for_url("**/send/confirm")
    assert "2 次投递已记入日志" in page.inner_text("#done")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the sends finish in the service's threads
        rows = live.service.log.deliveries(campaign="webtest", channel="handoff")
        if rows and all(r.status is Status.ACCEPTED for r in rows):  # the outbox took them
            break
        time.sleep(0.05)
    assert len(rows) == 2 and {r.status for r in rows} == {Status.ACCEPTED}
    assert rows[0].rule_id == "now-twice-weekly"
    [action] = [a for a in live.service.store.actions(actor="olga") if a.action == "send_now"]
    assert action.subject == rows[0].occurrence_id and '"deliveries": 2' in action.detail
    page.click("text=查看覆盖情况")
    assert page.locator("#coverage tbody tr").count() == 1
    check_not_blank(page, "#coverage", tmp_path / "send-coverage.png")


def test_a_send_now_problem_is_shown_and_nothing_is_sent(browser: Browser, live: Live) -> None:
    page = open_console(browser, live, "olga", PHONE)
    page.goto(live.url + "/send")
    page.fill("input[name=template]", "alert")
    page.check("input[name=channels][value=handoff]")
    page.click("#send button[type=submit]")
    assert "请选择对象" in page.inner_text(".problem")
    page.fill("input[name=template]", "alert")
    page.check("input[name=channels][value=handoff]")
    page.fill("input[name=targets]", "g9")
    page.click("#send button[type=submit]")
    assert "未知对象 target unknown 'g9'" in page.inner_text(".problem")
    assert live.service.log.deliveries(campaign="webtest") == []
