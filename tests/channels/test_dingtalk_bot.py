"""dingtalk-bot: real HTTP from `DingTalkBotChannel` to the fake robot (`tests/fakes/dingtalk.py`)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import pytest
import requests
from pydantic import ValidationError

from broadcaster.channel import ErrorClass, Status
from broadcaster.channels.dingtalk_bot import BODY_BYTES, DingTalkBotChannel, dingtalk_sign
from tests.conftest import NOW
from tests.fakes.dingtalk import DingTalkFake
from tests.fakes.group_bot import Mode

from .bots import BOT_KEY, BOT_SECRET, bot_delivery, make_bot_channel, prepared

# channels.md §6: computed from the documented steps (not vendor-published)
PIN_SECRET, PIN_TS = "SECexample0123456789", 1700000000000
PIN_SIGN = "figG6qqCA%2FlRh0hsGCW2zNtNV5znkAFut5BI0zKhqnQ%3D"


@pytest.fixture
def fake(dingtalk_fake: DingTalkFake) -> DingTalkFake:
    dingtalk_fake.add_bot(BOT_KEY, secret=BOT_SECRET)
    return dingtalk_fake


def channel(
    fake: DingTalkFake, session: requests.Session, tmp_path: Path, **settings: Any
) -> DingTalkBotChannel:
    settings.setdefault("timeout", [1, 2])
    return make_bot_channel(  # type: ignore[no-any-return]
        DingTalkBotChannel, session, tmp_path, base_url=fake.url, **settings
    )


def test_the_signer_meets_the_pinned_vector() -> None:
    assert dingtalk_sign(PIN_SECRET, PIN_TS) == PIN_SIGN


def test_a_signed_markdown_message_is_accepted(
    fake: DingTalkFake, http_session: requests.Session, tmp_path: Path
) -> None:
    d = bot_delivery(secret=BOT_SECRET, title="反诈提醒")
    [result] = channel(fake, http_session, tmp_path).send([d])
    assert (result.status, result.error_class) == (Status.ACCEPTED, None)
    [request] = fake.requests
    ts = int(NOW.timestamp() * 1000)
    assert request.query == {
        "access_token": [BOT_KEY],
        "timestamp": [str(ts)],
        "sign": [unquote_plus(dingtalk_sign(BOT_SECRET, ts))],
    }
    assert request.json() == {
        "msgtype": "markdown",
        "markdown": {"title": "反诈提醒", "text": d.message.text},
        "at": {"atMobiles": [], "isAtAll": False},
    }
    # the body is UTF-8, not \\u escapes (6 bytes a character against the 20,000-byte cap)
    assert "刷单".encode() in request.body


def test_text_mentions_and_link_bodies(
    fake: DingTalkFake, http_session: requests.Session, tmp_path: Path
) -> None:
    text = channel(fake, http_session, tmp_path, msgtype="text", at_mobiles=["13800000001"])
    link = channel(fake, http_session, tmp_path, msgtype="link", link_url="https://example.org/a")
    d = bot_delivery(secret=BOT_SECRET)
    assert text.send([d])[0].status is Status.ACCEPTED
    assert link.send([d])[0].status is Status.ACCEPTED
    first, second = (r.json() for r in fake.requests)
    assert first == {
        "msgtype": "text",
        "text": {"content": d.message.text},
        "at": {"atMobiles": ["13800000001"], "isAtAll": False},
    }
    assert second == {
        "msgtype": "link",
        "link": {
            "title": "【反诈提醒】凡是刷单返利都是诈骗，请拨打96110咨询。",
            "text": d.message.text,
            "messageUrl": "https://example.org/a",
        },
    }


def test_a_wrong_secret_is_refused_as_config(
    fake: DingTalkFake, http_session: requests.Session, tmp_path: Path
) -> None:
    [result] = channel(fake, http_session, tmp_path).send([bot_delivery(secret="SECwrong")])
    assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.CONFIG)
    assert "sign not match" in result.reason and BOT_SECRET not in repr(result)
    assert fake.accepted == {}


def test_an_unsigned_request_to_a_signing_robot_is_refused(
    fake: DingTalkFake, http_session: requests.Session, tmp_path: Path
) -> None:
    [result] = channel(fake, http_session, tmp_path).send([bot_delivery()])
    assert (result.error_class, fake.refused) == (ErrorClass.CONFIG, {310000: 1})


def test_a_stale_timestamp_is_refused(
    fake: DingTalkFake, http_session: requests.Session, tmp_path: Path
) -> None:
    late = NOW - dt.timedelta(hours=1, seconds=1)  # our clock an hour behind the provider's
    bot = channel(fake, http_session, tmp_path, clock=lambda: late)
    [result] = bot.send([bot_delivery(secret=BOT_SECRET)])
    assert (result.error_class, result.reason) == (
        ErrorClass.CONFIG,
        "errcode=310000 时间戳无效，检查时钟 invalid timestamp: check the clock: invalid timestamp",
    )
    on_time = NOW - dt.timedelta(minutes=59)
    bot = channel(fake, http_session, tmp_path, clock=lambda: on_time)
    assert bot.send([bot_delivery(secret=BOT_SECRET)])[0].status is Status.ACCEPTED


# -- keywords


def test_validate_fails_a_message_without_a_keyword(
    http_session: requests.Session, tmp_path: Path
) -> None:
    bot = make_bot_channel(DingTalkBotChannel, http_session, tmp_path, keywords=["反诈", "防骗"])
    assert bot.check_message(bot_delivery().message) == []
    assert bot.check_message(bot_delivery(text="今天天气很好").message) == [
        "缺少关键词 the message lacks every keyword of the bot: expected one of 反诈, 防骗"
    ]
    split = make_bot_channel(
        DingTalkBotChannel, http_session, tmp_path, keywords=["反诈"], max_bytes=64
    )
    text = (
        "反诈：不要转账给陌生人\n\n" + "陌生来电说你涉案，要你转账到安全账户" + "\n\n反诈中心提醒"
    )
    assert split.check_message(bot_delivery(text=text).message) == [
        "缺少关键词 the message lacks every keyword of the bot (part 2): expected one of 反诈"
    ]


def test_a_part_without_a_keyword_is_not_sent(
    fake: DingTalkFake, http_session: requests.Session, tmp_path: Path
) -> None:
    bot = channel(fake, http_session, tmp_path, keywords=["反诈"])
    [result] = bot.send([bot_delivery(text="今天天气很好", secret=BOT_SECRET)])
    assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.CONTENT)
    assert fake.requests == []


def test_the_robot_refuses_a_message_without_its_keyword(
    fake: DingTalkFake, http_session: requests.Session, tmp_path: Path
) -> None:
    fake.add_bot("kw-bot", keywords=("防骗",))
    bot = channel(fake, http_session, tmp_path)  # the channel was not told the keyword
    [result] = bot.send([bot_delivery(key="kw-bot")])
    assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.CONTENT)
    assert "keywords not in content" in result.reason


# -- limits and codes


def test_long_texts_split_so_every_body_fits_20000_bytes(
    fake: DingTalkFake, http_session: requests.Session, tmp_path: Path
) -> None:
    text = "\n\n".join(f"第{i}段" + "凡是刷单返利都是诈骗。" * 300 for i in range(6))
    bot = channel(fake, http_session, tmp_path)
    d = prepared(bot, bot_delivery(text=text, secret=BOT_SECRET))
    assert len(text.encode()) > BODY_BYTES and len(d.message.parts) == 6
    [result] = bot.send([d])
    assert (result.status, result.parts_done) == (Status.ACCEPTED, 6)
    assert all(len(r.body) <= BODY_BYTES for r in fake.requests)
    assert [m["text"] for m in fake.accepted[BOT_KEY]] == list(d.message.parts)


def test_the_fake_refuses_a_body_over_20000_bytes(
    fake: DingTalkFake, http_session: requests.Session, tmp_path: Path
) -> None:
    big = bot_delivery(text="诈" * 7000, secret=BOT_SECRET)  # unsplit: 21,000 bytes
    [result] = channel(fake, http_session, tmp_path).send([big])
    assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.CONTENT)
    assert "body 大小不合法" in result.reason


@pytest.mark.parametrize("code", [130101, 410100])
def test_throttling_blocks_the_robot_for_ten_minutes(
    fake: DingTalkFake, http_session: requests.Session, tmp_path: Path, code: int
) -> None:
    fake.mode, fake.forced = Mode.CODE, (code, "send too fast")
    [result] = channel(fake, http_session, tmp_path).send([bot_delivery(secret=BOT_SECRET)])
    assert (result.status, result.error_class, result.retry_after, result.block) == (
        Status.FAILED,
        ErrorClass.THROTTLED,
        600.0,
        True,
    )


def test_the_fake_blocks_a_robot_past_20_a_minute_for_10_minutes(
    fake: DingTalkFake, http_session: requests.Session, tmp_path: Path
) -> None:
    now = [NOW.timestamp()]
    fake.clock = lambda: now[0]
    at = [NOW]
    bot = channel(fake, http_session, tmp_path, clock=lambda: at[0])

    def send() -> Status:
        at[0] = dt.datetime.fromtimestamp(now[0], dt.UTC)
        return bot.send([bot_delivery(secret=BOT_SECRET)])[0].status  # type: ignore[no-any-return]

    assert [send() for _ in range(21)] == [Status.ACCEPTED] * 20 + [Status.FAILED]
    now[0] += 61  # the minute has passed, the block has not
    assert send() is Status.FAILED
    now[0] += 540
    assert send() is Status.ACCEPTED
    assert fake.refused == {130101: 2}


@pytest.mark.parametrize(
    ("forced", "error_class"),
    [
        ((310000, "keywords not in content"), ErrorClass.CONTENT),
        ((310000, "sign not match"), ErrorClass.CONFIG),
        ((310000, "invalid timestamp"), ErrorClass.CONFIG),
        ((310000, "ip 1.2.3.4 not in whitelist"), ErrorClass.CONFIG),
        ((400101, "access_token 不存在"), ErrorClass.CONFIG),
        ((300005, "token is not exist"), ErrorClass.CONFIG),
        ((400102, "机器人已停用"), ErrorClass.CONFIG),
        ((400106, "robot 不存在"), ErrorClass.CONFIG),
        ((400013, "群已被解散"), ErrorClass.CONFIG),
        ((400105, "不支持的消息类型"), ErrorClass.CONTENT),
        ((430102, "含有不安全的外链"), ErrorClass.CONTENT),
        ((-1, "系统繁忙"), ErrorClass.TRANSIENT),
    ],
)
def test_each_documented_code_is_classified(
    fake: DingTalkFake,
    http_session: requests.Session,
    tmp_path: Path,
    forced: tuple[int, str],
    error_class: ErrorClass,
) -> None:
    fake.mode, fake.forced = Mode.CODE, forced
    [result] = channel(fake, http_session, tmp_path).send([bot_delivery(secret=BOT_SECRET)])
    assert (result.status, result.error_class) == (Status.FAILED, error_class)
    assert json.loads(result.raw) == {"errcode": forced[0], "errmsg": forced[1]}


def test_a_removed_robot_is_permanent(
    fake: DingTalkFake, http_session: requests.Session, tmp_path: Path
) -> None:
    fake.remove_bot(BOT_KEY)
    [result] = channel(fake, http_session, tmp_path).send([bot_delivery(secret=BOT_SECRET)])
    assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.CONFIG)


@pytest.mark.parametrize("mode", [Mode.SERVER_ERROR, Mode.TRUNCATED])
def test_503_and_cut_off_json_are_unknown(
    fake: DingTalkFake, http_session: requests.Session, tmp_path: Path, mode: Mode
) -> None:
    fake.mode = mode
    [result] = channel(fake, http_session, tmp_path).send([bot_delivery(secret=BOT_SECRET)])
    assert (result.status, result.error_class) == (Status.UNKNOWN, ErrorClass.UNKNOWN)


def test_the_url_never_shows_in_a_result(
    fake: DingTalkFake, http_session: requests.Session, tmp_path: Path
) -> None:
    fake.mode = Mode.HANG
    bot = channel(fake, http_session, tmp_path, timeout=[1, 0.3])
    [result] = bot.send([bot_delivery(secret=BOT_SECRET)])
    assert result.status is Status.UNKNOWN
    assert BOT_KEY not in repr(result) and BOT_SECRET not in repr(result)
    assert urlsplit(fake.requests[0].path).path == "/robot/send"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"msgtype": "link"}, "a link message needs link_url"),
        ({"at_mobiles": ["110"]}, "expected 11-digit mainland mobiles"),
        ({"keywords": [" "]}, "a keyword cannot be empty"),
        ({"keywords": [str(i) for i in range(11)]}, "at most 10 items"),
        ({"max_bytes": 19000}, "less than or equal to 18000"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DingTalkBotChannel.Settings.model_validate(settings)
    assert message in str(caught.value)
