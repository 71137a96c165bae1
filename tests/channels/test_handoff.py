"""The hand-off channel: the card really shows Chinese, the phone page in headless Chromium
(text copied, card shown, confirmed), refused links (reused, forged, expired, another
channel's, a form without its CSRF cookie), expiry recorded by the sweep, and the
notification through another channel carrying a link that works."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, sync_playwright

from broadcaster.cards import FontMissingError, FontSpec, find_cjk_font, render_card
from broadcaster.channels.handoff import MAX_TEXT, HandoffChannel, HandoffSettings, plain_text
from broadcaster.engine.http import channel_context
from broadcaster.vocab import ErrorClass, MessageKind, Status
from tests.channels.relay_campaign import AT, link_of
from tests.channels.relay_campaign import handoff_live as handoff_live  # the fixture
from tests.fakes.webhook_server import WebhookFake
from tests.web.conftest import Live, fire

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PHONE = {"width": 390, "height": 844}
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # no CJK glyphs


# --- the card ------------------------------------------------------------------------------------


def ink(png: bytes, box: tuple[int, int, int, int] | None = None) -> int:
    """Pixels that are not the white background (in `box`)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    if box is not None:
        image = image.crop(box)
    return sum(image.histogram()[:200])


def crop(png: bytes, box: tuple[int, int, int, int]) -> bytes:
    import io

    from PIL import Image

    return Image.open(io.BytesIO(png)).convert("L").crop(box).tobytes()


def glyph(font: FontSpec, ch: str) -> bytes:
    from PIL import ImageFont

    face = ImageFont.truetype(str(font.path), 48, index=font.index)
    return bytes(face.getmask(ch))


def test_the_card_draws_chinese_glyphs_not_tofu() -> None:
    font = find_cjk_font()
    # each character its own shape; a font without CJK draws the same box (.notdef) for all
    shapes = {glyph(font, ch) for ch in "诈骗刷单转账"}
    assert len(shapes) == 6
    if DEJAVU.is_file():
        tofu = {glyph(FontSpec(DEJAVU), ch) for ch in "诈骗刷单转账"}
        assert len(tofu) == 1
    body = "凡是网络兼职刷单返还佣金就是诈骗！不回拨、不轻信、不点击、不透露、不转账。"
    png = render_card("反电诈提醒", body, "反诈专线 96110", font)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    band = (0, 0, 1080, 150)
    lines = (0, 260, 1080, 420)  # the body's first two lines, below the title band
    assert ink(png, lines) > 8_000  # glyphs drawn, not blank
    assert ink(png, band) > 100_000  # the red band
    # tofu would draw every character as the same box: same-length texts would look alike
    same = render_card("反电诈提醒", "诈" * len(body), "反诈专线 96110", font)
    assert crop(png, lines) != crop(same, lines)
    if DEJAVU.is_file():
        tofu_a = render_card("x", body, "", FontSpec(DEJAVU))
        tofu_b = render_card("x", "诈" * len(body), "", FontSpec(DEJAVU))
        assert crop(tofu_a, lines) == crop(tofu_b, lines)
    # the same card twice is the same bytes (the artefact cache keys on content)
    assert render_card("反电诈提醒", body, "反诈专线 96110", font) == png


def test_a_missing_font_names_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(FontMissingError, match=r"apt-get install fonts-noto-cjk"):
        find_cjk_font(str(tmp_path / "no-such-font.ttc"))


def test_plain_text_is_what_people_paste() -> None:
    text = "### 刷单诈骗\n**凡是**刷单都是诈骗\n> 请拨 [96110](tel:96110)\n- 不转账\n\n\n\n完"
    assert plain_text(text) == "刷单诈骗\n凡是刷单都是诈骗\n请拨 96110 tel:96110\n· 不转账\n\n完"


def test_a_text_too_long_to_forward_is_a_validate_problem(tmp_path: Path) -> None:
    settings = HandoffSettings.model_validate({"public_url": "https://fz.example.gov.cn/"})
    assert settings.public_url == "https://fz.example.gov.cn"
    context = channel_context(
        "wx", concurrency=1, clock=lambda: AT, data_dir=tmp_path, base_dir=tmp_path
    )
    channel = HandoffChannel(settings, context)
    assert channel.check() is None  # Pillow, itsdangerous and a CJK font are here
    from broadcaster.channel import Message

    long = Message(MessageKind.BOT, "诈" * (MAX_TEXT + 1), "bot/x.j2", "sha")
    assert channel.check_message(long) == [
        f"转发文字过长 the text to forward has {MAX_TEXT + 1} characters, at most 500 fit a"
        " WeChat message people forward"
    ]
    assert channel.check_message(Message(MessageKind.BOT, "诈" * MAX_TEXT, "bot/x.j2", "s")) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"public_url": "fz.example.gov.cn"}, "expected the service's public http(s) address"),
        (
            {"public_url": "https://x.cn", "notify_text": "请转发"},
            "the notification must carry the link",
        ),
        ({"public_url": "https://x.cn", "link_hours": 0}, "greater than 0"),
    ],
)
def test_bad_settings_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        HandoffSettings.model_validate(data)


# --- the page ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium (scripts/bootstrap.sh dev)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def handoffs(live: Live, keys: list[str]) -> dict[str, str]:
    """target id -> key of its hand-off delivery."""
    states = live.service.log.latest(keys)
    return {s.target_id: k for k, s in states.items() if s.channel_id == "wx"}


def test_the_phone_page_copies_shows_the_card_and_confirms_once(
    handoff_live: Live,
    browser: Browser,
    tmp_path: Path,
) -> None:
    live = handoff_live
    keys = fire(live, "case-push", AT)
    key = handoffs(live, keys)["g1"]
    assert live.service.log.latest([key])[key].status is Status.ACCEPTED  # handoff_sent
    link = link_of(live, key)
    context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True)  # type: ignore[arg-type]
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    context.set_default_timeout(20_000)
    page = context.new_page()
    response = page.goto(link)
    assert response is not None and response.status == 200
    assert "李家村一网格群" in page.inner_text("h1")
    assert "王网格员" in page.inner_text(".who")
    text = page.input_value("#text")
    assert text.startswith("甲类诈骗\n李家村一网格群：凡是甲就是诈骗")
    assert len(text) <= MAX_TEXT
    page.click("#copy")
    page.wait_for_selector("#copied", state="visible")
    assert page.evaluate("navigator.clipboard.readText()") == text
    page.wait_for_function("document.getElementById('card').complete")
    width = page.evaluate("document.getElementById('card').naturalWidth")
    assert width == 1080
    assert page.locator("#card").is_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1
    page.screenshot(path=str(tmp_path / "handoff.png"), full_page=True)
    page.click("#confirm")
    page.wait_for_selector("#done")
    state = live.service.log.latest([key])[key]
    assert state.status is Status.DELIVERED
    assert state.reason.startswith("forwarded_confirmed 王网格员 已确认转发至「李家村一网格群」")
    assert "not a receipt from the group's members" in state.reason
    # the same link again: refused, with a page saying why; nothing recorded twice
    again = page.goto(link)
    assert again is not None and again.status == 410
    assert "链接已使用过 this link was already used" in page.inner_text("body")
    assert [e.status for e in live.service.log.events(key)].count(Status.DELIVERED) == 1
    context.close()


def test_forged_expired_and_foreign_links_are_refused(handoff_live: Live) -> None:
    live = handoff_live
    keys = fire(live, "case-push", AT)
    key = handoffs(live, keys)["g2"]
    link = link_of(live, key)
    token = link.rsplit("/", 1)[1]
    body, sig = token.split(".")
    forged = f"{body[:-2]}{'A' if body[-2] != 'A' else 'B'}{body[-1]}.{sig}"
    cases = {
        "forged": (link.replace(token, forged), 403, "链接无效 this link is not valid"),
        "garbage": (link.replace(token, "not-a-token"), 403, "链接无效"),
        "other channel": (
            link.replace("/confirm/wx/", "/confirm/nosuch/"),
            404,
            "没有此渠道 no such channel",
        ),
        "card of a forged link": (
            link.replace(token, forged) + "/card.png",
            403,
            "链接无效",
        ),
    }
    for name, (url, status, text) in cases.items():
        r = requests.get(url, timeout=10)
        assert r.status_code == status, name
        assert text in r.text, name
        assert "text/html" in r.headers["content-type"], name
    # a POST without the form's CSRF cookie is refused and does not use the link up
    r = requests.post(link, data={"csrf": "guess"}, timeout=10)
    assert r.status_code == 403 and "表单已失效" in r.text
    assert live.service.log.latest([key])[key].status is Status.ACCEPTED
    assert requests.get(link, timeout=10).status_code == 200
    # the card is served to a valid link
    card = requests.get(link + "/card.png", timeout=10)
    assert card.status_code == 200 and card.content[:4] == b"\x89PNG"
    # a day later (link_hours: 24) the link has expired: refused, nothing recorded
    live.clock.set(AT + dt.timedelta(hours=24, minutes=1))
    r = requests.get(link, timeout=10)
    assert r.status_code == 410 and "链接已过期 this link has expired" in r.text
    assert live.service.log.latest([key])[key].status is Status.ACCEPTED


def test_an_unconfirmed_hand_off_expires_through_the_sweep(handoff_live: Live) -> None:
    live = handoff_live
    keys = fire(live, "case-push", AT)
    wx = handoffs(live, keys)
    _, _, recovery = live.service.source.current()
    live.clock.set(AT + dt.timedelta(hours=12))
    recovery.sweep().wait()
    assert {live.service.log.latest([k])[k].status for k in wx.values()} == {Status.ACCEPTED}
    live.clock.set(AT + dt.timedelta(hours=24, minutes=30))
    recovery.sweep().wait()
    states = live.service.log.latest(list(wx.values()))
    assert {s.status for s in states.values()} == {Status.FAILED}
    assert {s.error_class for s in states.values()} == {ErrorClass.EXPIRED}
    assert all(s.reason.startswith("expired ") for s in states.values())


def test_the_notification_reaches_the_person_with_a_working_link(
    handoff_live: Live,
    webhook_server: WebhookFake,
) -> None:
    live = handoff_live
    keys = fire(live, "case-push", AT)
    wx = handoffs(live, keys)
    sent = {r.path: r.json()["text"] for r in webhook_server.requests}
    assert sorted(sent) == [
        "/sms/li-cadre",
        "/sms/wang-grid",
        "/sms/wu-cadre",
        "/sms/zhang-grid",
        "/sms/zhou-grid",
    ]
    text = sent["/sms/zhou-grid"]
    assert text.startswith("【反诈宣传】周网格员您好，请将本期反诈宣传转发至「王家村一网格群」：")
    assert text.endswith("（03-04 09:00前有效）。")
    [link] = re.findall(r"http://\S+?(?= )", text)
    assert link == link_of(live, wx["g3"])  # the same link every time it is made
    # every notification is a logged delivery of its own on the notify channel
    notes = [s for s in live.service.log.latest(keys).values() if s.channel_id == "sms"]
    assert len(notes) == 5 and {s.status for s in notes} == {Status.ACCEPTED}
    # the link works: the page opens, and the confirmation is recorded
    s = requests.Session()
    page = s.get(link, timeout=10)
    assert page.status_code == 200 and "王家村一网格群" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    done = s.post(link, data={"csrf": csrf.group(1)}, timeout=10)
    assert done.status_code == 200 and 'id="done"' in done.text
    assert live.service.log.latest([wx["g3"]])[wx["g3"]].status is Status.DELIVERED
    # a second confirmation (another tab, a double tap) is refused
    again = s.post(link, data={"csrf": csrf.group(1)}, timeout=10)
    assert again.status_code == 410


def test_a_compressed_token_is_a_token() -> None:
    """itsdangerous leads a compressed body with "." (a long or repetitive payload)."""
    from itsdangerous import URLSafeSerializer

    from broadcaster.channels.handoff import TOKEN

    token = str(URLSafeSerializer("k").dumps({"s": "wang-grid" * 20}))
    assert token.startswith(".")
    assert TOKEN.fullmatch(token)
    assert TOKEN.fullmatch("not-a-token") is None
