"""Each security rule of the service with a case that must be refused, through the real
server: links (forged, expired, reused, for another page), roles, CSRF, login throttling,
sessions, callback tokens, open redirects, headers, secrets and numbers never shown."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import requests

from broadcaster.web.errors import LinkError
from tests.conftest import SECRET_VALUES
from tests.web.conftest import ECHO_TOKEN, ENV, PASSWORD, Live, csrf_of, fire, login
from tests.web.test_hooks import SMS_AT, post

# --- signed links -------------------------------------------------------------------------------


def test_a_link_works_for_its_person_until_it_expires(live: Live) -> None:
    links = live.service.links
    token = links.sign("handoff", "teacher-3", ttl=dt.timedelta(hours=2), data={"d": "k1"})
    claims = links.peek("handoff", token)
    assert (claims.subject, dict(claims.data)) == ("teacher-3", {"d": "k1"})
    live.clock.advance(2 * 3600 - 1)
    assert links.verify("handoff", token).subject == "teacher-3"


def test_an_expired_link_is_refused(live: Live) -> None:
    token = live.service.links.sign("handoff", "p1", ttl=dt.timedelta(minutes=30), single_use=False)
    live.clock.advance(30 * 60)
    with pytest.raises(LinkError) as caught:
        live.service.links.verify("handoff", token)
    assert caught.value.reason == "expired"
    assert str(caught.value) == "链接已过期 this link has expired"


def test_a_forged_link_is_refused(live: Live) -> None:
    links = live.service.links
    token = links.sign("handoff", "p1", ttl=dt.timedelta(hours=1))
    body, _, signature = token.rpartition(".")
    tampered = [
        body + "." + ("A" if signature[0] != "A" else "B") + signature[1:],  # signature changed
        token.replace(body, body[:-2] + ("xx" if body[-2:] != "xx" else "yy")),  # payload changed
        "",
        "garbage",
        "a.b.c",
    ]
    for bad in tampered:
        with pytest.raises(LinkError) as caught:
            links.verify("handoff", bad)
        assert caught.value.reason == "forged"
    with pytest.raises(LinkError) as caught:  # a link made for another page
        links.verify("led-admin", token)
    assert caught.value.reason == "forged"
    from broadcaster.web.links import SignedLinks

    other = SignedLinks(b"another-secret-of-enough-length", live.service.store, live.clock)
    with pytest.raises(LinkError):
        other.verify("handoff", token)


def test_a_single_use_link_is_refused_the_second_time_even_when_raced(live: Live) -> None:
    links = live.service.links
    token = links.sign("handoff", "p1", ttl=dt.timedelta(hours=1))
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def use() -> None:
        barrier.wait()
        try:
            links.verify("handoff", token)
            outcomes.append("ok")
        except LinkError as exc:
            outcomes.append(exc.reason)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["ok"] + ["used"] * 7
    with pytest.raises(LinkError) as caught:
        links.peek("handoff", token)
    assert str(caught.value) == "链接已使用过 this link was already used"
    reusable = links.sign("handoff", "p1", ttl=dt.timedelta(hours=1), single_use=False)
    for _ in range(3):
        links.verify("handoff", reusable)


# --- roles --------------------------------------------------------------------------------------


def test_a_role_without_the_permission_is_refused(live: Live) -> None:
    viewer, auditor, operator = live.session("vera"), live.session("alan"), live.session("olga")
    refused = [
        (viewer, "GET", "/send"),
        (viewer, "GET", "/lookup"),
        (viewer, "POST", "/send/preview"),
        (viewer, "POST", "/send/confirm"),
        (viewer, "POST", "/lookup"),
        (auditor, "GET", "/send"),
        (auditor, "POST", "/send/confirm"),
        (operator, "GET", "/lookup"),
        (operator, "POST", "/lookup"),
    ]
    for s, method, path in refused:
        r = s.request(
            method,
            live.url + path,
            data={"csrf": csrf_of(s), "q": "13800000001", "kind": "number", "rule": "sms-monthly"},
            timeout=30,
        )
        assert r.status_code == 403, (method, path)
        assert "没有权限" in r.text
    assert viewer.get(live.url + "/log", timeout=10).status_code == 200
    assert auditor.get(live.url + "/lookup", timeout=10).status_code == 200
    assert operator.get(live.url + "/send", timeout=10).status_code == 200
    nav = viewer.get(live.url + "/", timeout=10).text
    assert 'href="/send"' not in nav and 'href="/lookup"' not in nav


def test_pages_need_a_login_and_a_forged_session_is_none(live: Live) -> None:
    s = requests.Session()
    r = s.get(live.url + "/log?channel=receipts", timeout=10, allow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/log%3Fchannel%3Dreceipts"
    s.cookies.set("bc_session", "eyJ1Ijoib2xnYSJ9.forged")
    assert s.get(live.url + "/", timeout=10, allow_redirects=False).status_code == 303
    for path in ("/send/confirm", "/lookup", "/logout"):
        assert s.post(live.url + path, timeout=10, allow_redirects=False).status_code == 303


def test_a_changed_password_or_role_or_disabling_ends_sessions(live: Live) -> None:
    s = live.session("vera")
    assert s.get(live.url + "/", timeout=10, allow_redirects=False).status_code == 200
    live.service.accounts.set_password("vera", "another long password")
    assert s.get(live.url + "/", timeout=10, allow_redirects=False).status_code == 303
    s = live.session("vera", "another long password")
    live.service.accounts.set_role("vera", "auditor")
    assert s.get(live.url + "/", timeout=10, allow_redirects=False).status_code == 303
    s = live.session("vera", "another long password")
    live.service.accounts.disable("vera")
    assert s.get(live.url + "/", timeout=10, allow_redirects=False).status_code == 303
    assert login(requests.Session(), live.url, "vera", "another long password").status_code == 401


def test_an_expired_session_is_refused(live: Live) -> None:
    s = live.session("vera")
    live.clock.advance(8 * 3600 + 1)
    assert s.get(live.url + "/", timeout=10, allow_redirects=False).status_code == 303


# --- CSRF ---------------------------------------------------------------------------------------


def test_a_form_without_or_with_another_csrf_token_is_refused(live: Live) -> None:
    s = live.session("olga")
    other = live.session("alan")
    form = {"rule": "sms-monthly"}
    cases = [
        form,  # no token
        {**form, "csrf": ""},
        {**form, "csrf": csrf_of(other)},  # another person's token
        {**form, "csrf": csrf_of(s)[:-1] + "x"},
    ]
    for data in cases:
        r = s.post(live.url + "/send/preview", data=data, timeout=30)
        assert r.status_code == 403
        assert "安全令牌" in r.text
    # the cookie alone, with the field matching a forged cookie, is refused too
    forged = requests.Session()
    forged.cookies.update(s.cookies)
    forged.cookies.set("bc_csrf", "abc.def")
    assert (
        forged.post(
            live.url + "/send/preview", data={**form, "csrf": "abc.def"}, timeout=30
        ).status_code
        == 403
    )
    assert (
        s.post(
            live.url + "/send/preview", data={**form, "csrf": csrf_of(s)}, timeout=30
        ).status_code
        == 200
    )
    # logging in without the login form's token
    r = requests.post(live.url + "/login", data={"name": "olga", "password": PASSWORD}, timeout=30)
    assert r.status_code == 403


# --- login throttling ---------------------------------------------------------------------------


def test_logins_are_throttled_per_name_and_resume_after_the_window(live: Live) -> None:
    s = requests.Session()
    for _ in range(5):
        assert login(s, live.url, "olga", "wrong password!").status_code == 401
    r = login(s, live.url, "olga", PASSWORD)  # right password, but too many failures
    assert r.status_code == 429
    assert "登录失败次数过多" in r.text
    assert login(requests.Session(), live.url, "vera").status_code == 303  # another name is fine
    live.clock.advance(15 * 60 + 1)
    assert login(requests.Session(), live.url, "olga").status_code == 303
    logins = [a for a in live.service.store.actions() if a.action == "login"]
    assert {a.actor for a in logins} == {"olga", "vera"}  # successful logins are recorded


def test_logins_are_throttled_per_address(live: Live) -> None:
    live.service.throttle.per_remote = 6
    s = requests.Session()
    for i in range(6):
        assert login(s, live.url, f"nobody{i}", "x" * 12).status_code == 401
    assert login(s, live.url, "olga").status_code == 429


# --- callbacks ----------------------------------------------------------------------------------


def test_a_callback_with_a_bad_token_records_nothing(live: Live) -> None:
    keys = fire(live, "sms-monthly", SMS_AT)
    for token in ("", "x", ECHO_TOKEN + "x", ECHO_TOKEN.upper()):
        r = post(live, [{"provider_id": "echo-1", "status": "delivered"}], token=token)
        assert r.status_code == 401
    assert {s.status.value for s in live.service.log.latest(keys).values()} == {"accepted"}


# --- redirects, headers, secrets ----------------------------------------------------------------


def test_login_never_redirects_off_site(live: Live) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        s = requests.Session()
        s.get(live.url + "/login", timeout=10)
        r = s.post(
            live.url + "/login",
            data={"name": "vera", "password": PASSWORD, "csrf": csrf_of(s), "next": target},
            timeout=30,
            allow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"] == "/"


def test_pages_carry_safe_headers_and_cookies(live: Live) -> None:
    s = requests.Session()
    s.get(live.url + "/login", timeout=10)
    r = s.post(
        live.url + "/login",
        data={"name": "vera", "password": PASSWORD, "csrf": csrf_of(s)},
        timeout=30,
        allow_redirects=False,
    )
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    page = s.get(live.url + "/", timeout=10)
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert "http://" not in page.text.replace(live.url, "") and "https://" not in page.text


def test_no_page_shows_a_secret_or_a_clear_number(live: Live) -> None:
    fire(live, "sms-monthly", SMS_AT)
    s = live.session("alan")
    texts = []
    for path in (
        "/",
        "/log",
        "/channels",
        "/waiting",
        "/duties",
        "/calendar",
        "/metrics",
        "/healthz",
        "/openapi.json",
    ):
        texts.append(s.get(live.url + path, timeout=30).text)
    texts.append(s.get(live.url + "/log.csv", timeout=30).text)
    texts.append(
        s.post(
            live.url + "/lookup",
            data={"csrf": csrf_of(s), "kind": "number", "q": "13800000001"},
            timeout=30,
        ).text
    )
    texts.append(
        s.post(
            live.url + "/lookup",
            data={"csrf": csrf_of(s), "kind": "person", "q": "张三"},
            timeout=30,
        ).text
    )
    blob = "\n".join(texts)
    for secret in (*SECRET_VALUES, ENV["BROADCASTER_WEB_SECRET"]):
        assert secret not in blob
    for number in ("13800000001", "13900000002", "+8613800000001"):
        assert number not in blob
    assert "138****0001" in blob


def test_a_link_for_another_person_is_refused_and_not_used_up(live: Live) -> None:
    links = live.service.links
    token = links.sign("handoff", "teacher-3", ttl=dt.timedelta(hours=1))
    with pytest.raises(LinkError) as caught:
        links.verify("handoff", token, subject="teacher-4")
    assert caught.value.reason == "person"
    assert links.verify("handoff", token, subject="teacher-3").subject == "teacher-3"
