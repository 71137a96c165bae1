"""The group-bot fakes' verifiers against channels.md's pinned vectors, and raw requests."""

from __future__ import annotations

from urllib.parse import quote_plus

import requests

from tests.fakes import dingtalk, feishu
from tests.fakes.dingtalk import DingTalkFake
from tests.fakes.feishu import FeishuFake
from tests.fakes.group_bot import Mode
from tests.fakes.wecom import WeComFake


def test_dingtalk_verifier_meets_the_pinned_vector() -> None:
    # channels.md §6 pins the URL-encoded form; the provider decodes the query once
    sign = "figG6qqCA/lRh0hsGCW2zNtNV5znkAFut5BI0zKhqnQ="
    assert dingtalk.expected_sign("SECexample0123456789", "1700000000000") == sign


def test_feishu_verifier_meets_the_pinned_vector() -> None:
    sign = "5j9WLiOpRibDdCWTLUTmymrczl6+qR9i6PLPs7XxzCQ="
    assert feishu.expected_sign("example0123456789", "1700000000") == sign


def test_dingtalk_refuses_a_sign_not_url_encoded(
    dingtalk_fake: DingTalkFake, http_session: requests.Session
) -> None:
    """A '+' sent raw reads as a space: the provider decodes the query once, imitated."""
    secret = "SECexample0123456789"
    dingtalk_fake.add_bot("t", secret=secret)
    ts = next(t for t in range(1700000000000, 1700000000100) if "+" in expected(secret, t))
    dingtalk_fake.clock = lambda: ts / 1000
    url = f"{dingtalk_fake.url}/robot/send?access_token=t&timestamp={ts}&sign="
    body = {"msgtype": "text", "text": {"content": "反诈"}}
    raw = http_session.post(url + expected(secret, ts), json=body).json()
    assert raw == {"errcode": 310000, "errmsg": "sign not match"}
    encoded = http_session.post(url + quote_plus(expected(secret, ts)), json=body).json()
    assert encoded == {"errcode": 0, "errmsg": "ok"}


def expected(secret: str, ts: int) -> str:
    return dingtalk.expected_sign(secret, str(ts))


def test_wecom_unknown_key_and_bad_json(
    wecom_fake: WeComFake, http_session: requests.Session
) -> None:
    url = f"{wecom_fake.url}/cgi-bin/webhook/send?key=nobody"
    assert http_session.post(url, json={"msgtype": "text", "text": {"content": "x"}}).json() == {
        "errcode": 93000,
        "errmsg": "invalid webhook url",
    }
    wecom_fake.add_bot("k")
    bad = http_session.post(f"{wecom_fake.url}/cgi-bin/webhook/send?key=k", data=b"{not json")
    assert bad.json()["errcode"] == 40035


def test_modes_answer_in_order_then_the_default(
    feishu_fake: FeishuFake, http_session: requests.Session
) -> None:
    feishu_fake.add_bot("b")
    feishu_fake.queue(Mode.SERVER_ERROR, Mode.CODE)
    url = f"{feishu_fake.url}/open-apis/bot/v2/hook/b"
    body = {"msg_type": "text", "content": {"text": "反诈"}}
    answers = [http_session.post(url, json=body) for _ in range(3)]
    assert [a.status_code for a in answers] == [500, 200, 200]
    assert [answers[1].json()["code"], answers[2].json()["code"]] == [-1, 0]
    assert feishu_fake.total_accepted() == 1
