"""feishu-bot: real HTTP from `FeishuBotChannel` to the fake bot (`tests/fakes/feishu.py`)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import requests

from broadcaster.channel import ErrorClass, Status
from broadcaster.channels.feishu_bot import FeishuBotChannel, feishu_sign
from tests.conftest import NOW
from tests.fakes.feishu import FeishuFake
from tests.fakes.group_bot import Mode
from tests.fakes.http import FakeHTTPServer, Reply

from .bots import BOT_KEY, BOT_SECRET, LONG_TEXT, bot_delivery, make_bot_channel, prepared

# channels.md §7: computed from the documented steps (not vendor-published)
PIN_SECRET, PIN_TS, PIN_SIGN = (
    "example0123456789",
    1700000000,
    ("5j9WLiOpRibDdCWTLUTmymrczl6+qR9i6PLPs7XxzCQ="),
)


@pytest.fixture
def fake(feishu_fake: FeishuFake) -> FeishuFake:
    feishu_fake.add_bot(BOT_KEY, secret=BOT_SECRET)
    return feishu_fake


def channel(
    fake: FeishuFake, session: requests.Session, tmp_path: Path, **settings: Any
) -> FeishuBotChannel:
    settings.setdefault("timeout", [1, 2])
    return make_bot_channel(  # type: ignore[no-any-return]
        FeishuBotChannel, session, tmp_path, base_url=fake.url, **settings
    )


def test_the_signer_meets_the_pinned_vector() -> None:
    assert feishu_sign(PIN_SECRET, PIN_TS) == PIN_SIGN


def test_a_signed_post_is_accepted(
    fake: FeishuFake, http_session: requests.Session, tmp_path: Path
) -> None:
    d = bot_delivery(text="### 反诈提醒\n凡是刷单返利都是诈骗", secret=BOT_SECRET)
    [result] = channel(fake, http_session, tmp_path).send([d])
    assert (result.status, result.error_class) == (Status.ACCEPTED, None)
    [request] = fake.requests
    assert request.path == f"/open-apis/bot/v2/hook/{BOT_KEY}"
    ts = int(NOW.timestamp())
    assert request.json() == {
        "timestamp": str(ts),
        "sign": feishu_sign(BOT_SECRET, ts),
        "msg_type": "post",
        "content": {
            "post": {
                "zh_cn": {
                    "title": "反诈提醒",
                    "content": [
                        [{"tag": "text", "text": "### 反诈提醒"}],
                        [{"tag": "text", "text": "凡是刷单返利都是诈骗"}],
                    ],
                }
            }
        },
    }


def test_text_without_a_secret_carries_no_signature(
    fake: FeishuFake, http_session: requests.Session, tmp_path: Path
) -> None:
    fake.add_bot("open-bot")
    bot = channel(fake, http_session, tmp_path, msg_type="text")
    d = bot_delivery(key="open-bot")
    assert bot.send([d])[0].status is Status.ACCEPTED
    assert fake.requests[0].json() == {"msg_type": "text", "content": {"text": d.message.text}}


def test_wrong_secret_or_stale_timestamp_is_19021(
    fake: FeishuFake, http_session: requests.Session, tmp_path: Path
) -> None:
    [wrong] = channel(fake, http_session, tmp_path).send([bot_delivery(secret="nope")])
    stale = NOW - dt.timedelta(hours=1, seconds=5)
    late = channel(fake, http_session, tmp_path, clock=lambda: stale)
    [old] = late.send([bot_delivery(secret=BOT_SECRET)])
    for result in (wrong, old):
        assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.CONFIG)
        assert result.reason.startswith("code=19021 ")
    assert fake.refused == {19021: 2} and fake.accepted == {}


def test_long_texts_go_in_parts_in_order(
    fake: FeishuFake, http_session: requests.Session, tmp_path: Path
) -> None:
    bot = channel(fake, http_session, tmp_path, msg_type="text", max_bytes=3000)
    d = prepared(bot, bot_delivery(text=LONG_TEXT, secret=BOT_SECRET))
    assert len(d.message.parts) == 3
    [result] = bot.send([d])
    assert (result.status, result.parts_done) == (Status.ACCEPTED, 3)
    assert [m["text"] for m in fake.accepted[BOT_KEY]] == list(d.message.parts)


def test_the_bot_refuses_a_message_without_its_keyword(
    fake: FeishuFake, http_session: requests.Session, tmp_path: Path
) -> None:
    fake.add_bot("kw-bot", keywords=("防骗",))
    [result] = channel(fake, http_session, tmp_path).send([bot_delivery(key="kw-bot")])
    assert (result.error_class, fake.refused) == (ErrorClass.CONTENT, {19024: 1})
    keyed = channel(fake, http_session, tmp_path, keywords=["防骗"])
    assert keyed.check_message(bot_delivery().message) == [
        "缺少关键词 the message lacks every keyword of the bot: expected one of 防骗"
    ]


def test_the_fake_allows_5_a_second_and_100_a_minute(
    fake: FeishuFake, http_session: requests.Session, tmp_path: Path
) -> None:
    now = [NOW.timestamp()]
    fake.clock = lambda: now[0]
    bot = channel(fake, http_session, tmp_path)

    def send() -> Status:
        return bot.send([bot_delivery(secret=BOT_SECRET)])[0].status  # type: ignore[no-any-return]

    assert [send() for _ in range(6)] == [Status.ACCEPTED] * 5 + [Status.FAILED]
    for _ in range(19):  # 95 more, 5 a second
        now[0] += 1.0
        assert [send() for _ in range(5)] == [Status.ACCEPTED] * 5
    now[0] += 1.0
    assert send() is Status.FAILED  # the 101st within the minute
    assert fake.refused == {11232: 2} and fake.rate_refusals == 2


@pytest.mark.parametrize(
    ("forced", "error_class"),
    [
        ((11232, "frequency limited"), ErrorClass.THROTTLED),
        ((9499, "Bad Request"), ErrorClass.CONTENT),
        ((19001, "param invalid: incoming webhook access token invalid"), ErrorClass.CONFIG),
        ((19021, "sign match fail"), ErrorClass.CONFIG),
        ((19022, "Ip Not Allowed"), ErrorClass.CONFIG),
        ((19024, "Key Words Not Found"), ErrorClass.CONTENT),
    ],
)
def test_each_documented_code_is_classified(
    fake: FeishuFake,
    http_session: requests.Session,
    tmp_path: Path,
    forced: tuple[int, str],
    error_class: ErrorClass,
) -> None:
    fake.mode, fake.forced = Mode.CODE, forced
    [result] = channel(fake, http_session, tmp_path).send([bot_delivery(secret=BOT_SECRET)])
    assert (result.status, result.error_class) == (Status.FAILED, error_class)
    assert (result.retry_after is not None) is (error_class is ErrorClass.THROTTLED)


def test_a_removed_bot_is_permanent(
    fake: FeishuFake, http_session: requests.Session, tmp_path: Path
) -> None:
    fake.remove_bot(BOT_KEY)
    [result] = channel(fake, http_session, tmp_path).send([bot_delivery(secret=BOT_SECRET)])
    assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.CONFIG)


def test_over_20_kb_the_fake_answers_9499(
    fake: FeishuFake, http_session: requests.Session, tmp_path: Path
) -> None:
    big = bot_delivery(text="诈" * 7000, secret=BOT_SECRET)  # unsplit: 21,000 bytes
    [result] = channel(fake, http_session, tmp_path).send([big])
    assert (result.error_class, fake.refused) == (ErrorClass.CONTENT, {9499: 1})


@pytest.mark.parametrize("mode", [Mode.SERVER_ERROR, Mode.HTML])
def test_500_and_html_are_unknown(
    fake: FeishuFake, http_session: requests.Session, tmp_path: Path, mode: Mode
) -> None:
    fake.mode = mode
    [result] = channel(fake, http_session, tmp_path).send([bot_delivery(secret=BOT_SECRET)])
    assert (result.status, result.error_class) == (Status.UNKNOWN, ErrorClass.UNKNOWN)


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ({"StatusCode": 0, "StatusMessage": "success"}, Status.ACCEPTED),
        ({"code": 0, "msg": "success", "data": {}, "StatusCode": 0}, Status.ACCEPTED),
        ({"StatusCode": 19001, "StatusMessage": "token invalid"}, Status.FAILED),
        ({"msg": "success"}, Status.UNKNOWN),
    ],
)
def test_older_answers_carry_statuscode(
    http_server: FakeHTTPServer,
    http_session: requests.Session,
    tmp_path: Path,
    answer: dict[str, Any],
    status: Status,
) -> None:
    http_server.enqueue(Reply.json(answer))
    bot = make_bot_channel(FeishuBotChannel, http_session, tmp_path, base_url=http_server.url)
    assert bot.send([bot_delivery()])[0].status is status
