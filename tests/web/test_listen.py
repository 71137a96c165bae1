"""The console's 试听 Listen page in headless Chromium: render a loudspeaker script and play it.

The browser loads the MP3 through the page's <audio> element and decodes it: its duration
must match what the page says was measured."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, sync_playwright

from tests.conftest import write_campaign
from tests.web.conftest import CAMPAIGN, PEOPLE, Live, login
from tests.web.test_console import ARGS, CHROMIUM, DESKTOP, open_console

SCRIPT = (
    "乡亲们请注意！{{ target.name }}附近有人冒充公安打电话要您转账，这是诈骗。请拨打反诈专线96110。"
)


@pytest.fixture
def web_campaign(tmp_path: Path, example_plugin: None) -> Path:
    campaign = json.loads(json.dumps(CAMPAIGN))
    campaign["channels"]["speakers"] = {
        "type": "loudspeaker",
        "kind": "loudspeaker",
        "settings": {"chime": {"before": False, "after": True}},
    }
    campaign["rules"].append(
        {
            "id": "speakers-daily",
            "channels": ["speakers"],
            "targets": {"ids": ["town"]},
            "when": {"daily": True, "at": "07:00"},
        }
    )
    templates = {f"loudspeaker/{t}.j2": SCRIPT for t in ("alpha", "beta", "gamma")}
    path = write_campaign(tmp_path / "campaign", "{}", templates, extra={"people.csv": PEOPLE})
    path.write_text(json.dumps(campaign, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium (scripts/bootstrap.sh dev)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def test_the_listen_page_plays_the_rendered_script(
    browser: Browser, live_factory: Callable[..., Live]
) -> None:
    live = live_factory()
    page = open_console(browser, live, "vera", DESKTOP)
    page.click("nav.nav a[href='/listen']")
    page.select_option("#template", "loudspeaker/beta.j2")
    page.select_option("#target", "town")
    page.click("#listen-form button[type=submit]")
    page.wait_for_selector("#player")
    assert "测试镇附近有人冒充公安" in page.inner_text("#spoken")
    assert "九六幺幺零" in page.inner_text("#spoken")
    seconds = float(page.inner_text("#seconds"))
    assert abs(float(page.inner_text("#lufs")) + 16) <= 1.0
    page.wait_for_function("document.querySelector('#player').readyState >= 1")
    duration = page.evaluate("document.querySelector('#player').duration")
    assert duration == pytest.approx(seconds, abs=0.2)
    assert 8 < duration < 40


def test_the_audio_route_refuses_odd_names_and_strangers(live_factory: Callable[..., Live]) -> None:
    live = live_factory()
    anonymous = requests.get(
        f"{live.url}/listen/audio/{'a' * 64}.mp3", timeout=10, allow_redirects=False
    )
    assert anonymous.status_code in (302, 303)  # to the login page
    s = requests.Session()
    login(s, live.url, "vera")
    assert s.get(f"{live.url}/listen/audio/..%2F..%2Fsecret", timeout=10).status_code in (400, 404)
    assert s.get(f"{live.url}/listen/audio/{'0' * 64}.mp3", timeout=10).status_code == 400
    bad = s.get(f"{live.url}/listen", params={"template": "sms/alpha.j2"}, timeout=10)
    assert bad.status_code == 400 and "unknown loudspeaker template" in bad.text
