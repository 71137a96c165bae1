"""The console's coverage per area of one send, in headless Chromium: every level of the
hierarchy with its shares, no number shown."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser

from tests.web.conftest import Live, fire
from tests.web.test_console import DESKTOP, PHONE, browser, check_not_blank, open_console  # noqa: F401
from tests.web.test_hooks import SMS_AT, post


def test_one_sends_coverage_per_area(browser: Browser, live: Live, tmp_path: Path) -> None:  # noqa: F811
    fire(live, "sms-monthly", SMS_AT)
    assert post(live, [{"provider_id": "echo-2", "status": "delivered"}]).status_code == 200
    page = open_console(browser, live, "vera", DESKTOP)
    page.goto(live.url + "/log?from=2026-03-01&to=2026-03-31")
    assert page.locator("#area-coverage").count() == 0  # only for one send
    page.locator("#coverage tbody tr a").first.click()
    page.wait_for_url("**/log?occurrence=*")
    rows = page.locator("#area-coverage tbody tr")
    assert [rows.nth(i).get_attribute("data-area") for i in range(rows.count())] == [
        "测试镇",
        "测试镇/短信名单",
    ]
    town = rows.first.inner_text()
    assert "100%" in town and "33.3%" in town  # accepted 3 of 3, delivered 1 of 3
    assert "13800000001" not in page.inner_text("main")
    check_not_blank(page, "#area-coverage", tmp_path / "area-coverage.png")
    page.context.close()
    phone = open_console(browser, live, "vera", PHONE)
    phone.goto(page.url)
    check_not_blank(phone, "#area-coverage", tmp_path / "area-coverage-phone.png")
    phone.context.close()
