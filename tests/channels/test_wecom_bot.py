"""wecom-bot: real HTTP from `WeComBotChannel` to the fake robot (`tests/fakes/wecom.py`)."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import ValidationError

from broadcaster.channel import ErrorClass, Result, Status
from broadcaster.channels.wecom_bot import WeComBotChannel
from broadcaster.kit import utf8_len
from tests.conftest import NOW
from tests.fakes.group_bot import Mode
from tests.fakes.wecom import WeComFake

from .bots import BOT_KEY, LONG_TEXT, bot_delivery, make_bot_channel, prepared


@pytest.fixture
def fake(wecom_fake: WeComFake) -> WeComFake:
    wecom_fake.add_bot(BOT_KEY)
    return wecom_fake


def channel(
    fake: WeComFake, session: requests.Session, tmp_path: Path, **settings: Any
) -> WeComBotChannel:
    settings.setdefault("timeout", [1, 2])
    return make_bot_channel(  # type: ignore[no-any-return]
        WeComBotChannel, session, tmp_path, base_url=fake.url, **settings
    )


def test_markdown_is_posted_with_the_key_and_read_from_errcode(
    fake: WeComFake, http_session: requests.Session, tmp_path: Path
) -> None:
    d = bot_delivery()
    [result] = channel(fake, http_session, tmp_path).send([d])
    assert (result.key, result.status, result.error_class) == (d.key, Status.ACCEPTED, None)
    [request] = fake.requests
    assert request.path == "/cgi-bin/webhook/send"
    assert request.query == {"key": [BOT_KEY]}
    assert request.json() == {"msgtype": "markdown", "markdown": {"content": d.message.text}}
    assert fake.accepted[BOT_KEY] == [{"content": d.message.text}]


def test_text_mentions_members_by_mobile_on_the_first_part_only(
    fake: WeComFake, http_session: requests.Session, tmp_path: Path
) -> None:
    bot = channel(
        fake,
        http_session,
        tmp_path,
        msgtype="text",
        mention_mobiles=["13800000001"],
        mention_all=True,
    )
    d = prepared(bot, bot_delivery(text=LONG_TEXT))
    assert len(d.message.parts) == 5
    [result] = bot.send([d])
    assert (result.status, result.parts_done) == (Status.ACCEPTED, 5)
    bodies = [r.json()["text"] for r in fake.requests]
    assert bodies[0]["mentioned_mobile_list"] == ["13800000001"]
    assert bodies[0]["mentioned_list"] == ["@all"]
    assert all(set(b) == {"content"} for b in bodies[1:])


def test_news_carries_title_description_link_and_picture(
    fake: WeComFake, http_session: requests.Session, tmp_path: Path
) -> None:
    bot = channel(
        fake,
        http_session,
        tmp_path,
        msgtype="news",
        news_url="https://example.org/fanzha",
        news_picurl="https://example.org/card.png",
    )
    d = bot_delivery(title="警惕刷单诈骗")
    assert bot.send([d])[0].status is Status.ACCEPTED
    assert fake.requests[0].json() == {
        "msgtype": "news",
        "news": {
            "articles": [
                {
                    "title": "警惕刷单诈骗",
                    "description": d.message.text,
                    "url": "https://example.org/fanzha",
                    "picurl": "https://example.org/card.png",
                }
            ]
        },
    }
    long = bot_delivery(text="长" * 200).message
    assert bot.prepare(long, None).parts == ()  # news is never split
    assert bot.check_message(long) == [
        "图文摘要超过 512 字节会被截断 news description over 512 bytes (600) is cut by WeCom"
    ]


@pytest.mark.parametrize(("msgtype", "limit", "parts"), [("text", 2048, 5), ("markdown", 4096, 2)])
def test_a_long_text_goes_in_numbered_parts_in_order_by_utf8_bytes(
    fake: WeComFake,
    http_session: requests.Session,
    tmp_path: Path,
    msgtype: str,
    limit: int,
    parts: int,
) -> None:
    bot = channel(fake, http_session, tmp_path, msgtype=msgtype)
    d = prepared(bot, bot_delivery(text=LONG_TEXT))
    assert utf8_len(LONG_TEXT) > limit
    assert len(d.message.parts) == parts
    assert all(utf8_len(p) <= limit for p in d.message.parts)
    assert [p.split(" ", 1)[0] for p in d.message.parts] == [
        f"({i}/{parts})" for i in range(1, parts + 1)
    ]
    # split at paragraph boundaries: every paragraph arrives whole, in order
    paragraphs = [q for p in d.message.parts for q in p.split(" ", 1)[1].split("\n\n")]
    assert paragraphs == LONG_TEXT.split("\n\n")
    [result] = bot.send([d])
    assert (result.status, result.parts_done) == (Status.ACCEPTED, parts)
    assert [m["content"] for m in fake.accepted[BOT_KEY]] == list(d.message.parts)


def test_a_resend_starts_from_the_first_part_not_yet_accepted(
    fake: WeComFake, http_session: requests.Session, tmp_path: Path
) -> None:
    bot = channel(fake, http_session, tmp_path, msgtype="text")
    whole = prepared(bot, bot_delivery(text=LONG_TEXT))
    fake.queue(Mode.OK, Mode.CODE)  # part 2 meets a busy robot
    [first] = bot.send([whole])
    assert (first.status, first.error_class, first.parts_done) == (
        Status.FAILED,
        ErrorClass.TRANSIENT,
        1,
    )
    again = bot_delivery(text=LONG_TEXT, first_part=1)
    [second] = bot.send([prepared(bot, again)])
    assert (second.status, second.parts_done) == (Status.ACCEPTED, 5)
    assert [m["content"] for m in fake.accepted[BOT_KEY]] == list(whole.message.parts)


def test_each_further_part_waits_for_its_own_slot(
    fake: WeComFake, http_session: requests.Session, tmp_path: Path
) -> None:
    asked: list[str] = []

    def pace(endpoint: str) -> bool:
        asked.append(endpoint)
        return len(asked) < 2  # the engine stops while part 3 waits

    bot = channel(fake, http_session, tmp_path, msgtype="text", pace=pace)
    d = prepared(bot, bot_delivery(text=LONG_TEXT))
    [result] = bot.send([d])
    assert asked == [bot.endpoint(d.recipient)] * 2
    assert (result.status, result.error_class, result.parts_done) == (
        Status.FAILED,
        ErrorClass.TRANSIENT,
        2,
    )
    assert len(fake.accepted[BOT_KEY]) == 2


def test_the_endpoint_names_the_bot_without_its_key(
    fake: WeComFake, http_session: requests.Session, tmp_path: Path
) -> None:
    one = channel(fake, http_session, tmp_path)
    other = channel(fake, http_session, tmp_path, msgtype="text")
    d = bot_delivery()
    assert one.endpoint(d.recipient) == other.endpoint(d.recipient)  # one budget per bot
    assert BOT_KEY not in one.endpoint(d.recipient)
    assert one.endpoint(d.recipient) != one.endpoint(bot_delivery(key="another-key").recipient)
    caps = one.capabilities
    assert (caps.rate_limit, caps.endpoint_concurrency, caps.resend_on_unknown) == (
        WeComBotChannel.rate_limit,
        1,
        1,
    )
    assert caps.rate_limit is not None and caps.rate_limit.count < 20


# -- failures read from the answer


@pytest.mark.parametrize(
    ("forced", "error_class", "reason"),
    [
        ((93000, "invalid webhook url"), ErrorClass.CONFIG, "invalid key or bot removed"),
        ((40058, "markdown.content exceed max length 4096"), ErrorClass.CONTENT, "too long"),
        ((-1, "system busy"), ErrorClass.TRANSIENT, "busy"),
        ((40099, "something new"), ErrorClass.CONTENT, "unrecognised code"),
    ],
)
def test_http_200_with_a_non_zero_errcode_is_a_failure(
    fake: WeComFake,
    http_session: requests.Session,
    tmp_path: Path,
    forced: tuple[int, str],
    error_class: ErrorClass,
    reason: str,
) -> None:
    fake.mode, fake.forced = Mode.CODE, forced
    [result] = channel(fake, http_session, tmp_path).send([bot_delivery()])
    assert (result.status, result.error_class) == (Status.FAILED, error_class)
    assert result.reason.startswith(f"errcode={forced[0]} ") and reason in result.reason
    assert forced[1] in result.reason


def test_a_removed_bot_is_a_config_failure(
    fake: WeComFake, http_session: requests.Session, tmp_path: Path
) -> None:
    fake.remove_bot(BOT_KEY)
    [result] = channel(fake, http_session, tmp_path).send([bot_delivery()])
    assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.CONFIG)
    assert fake.refused == {93000: 1}


def test_over_the_byte_limit_the_fake_refuses_with_40058(
    fake: WeComFake, http_session: requests.Session, tmp_path: Path
) -> None:
    """Unsplit (as a plugin that counted characters would send it): refused for its bytes."""
    bot = channel(fake, http_session, tmp_path, msgtype="text")
    [result] = bot.send([bot_delivery(text="诈" * 700)])  # 700 characters, 2,100 bytes
    assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.CONTENT)
    assert "text.content exceed max length 2048" in result.reason


def test_45009_waits_until_the_minute_turns(
    fake: WeComFake, http_session: requests.Session, tmp_path: Path
) -> None:
    fake.mode, fake.forced = Mode.CODE, (45009, "api freq out of limit")
    at = NOW + dt.timedelta(seconds=42.5)
    bot = channel(fake, http_session, tmp_path, clock=lambda: at)
    [result] = bot.send([bot_delivery()])
    assert (result.error_class, result.retry_after) == (ErrorClass.THROTTLED, 18.5)


def test_the_fake_allows_20_a_minute_per_bot_then_45009(
    fake: WeComFake, http_session: requests.Session, tmp_path: Path
) -> None:
    now = [NOW.timestamp()]
    fake.clock = lambda: now[0]
    fake.add_bot("other")
    bot = channel(fake, http_session, tmp_path)
    results = [bot.send([bot_delivery(n)])[0] for n in range(1, 22)]
    assert [r.status for r in results] == [Status.ACCEPTED] * 20 + [Status.FAILED]
    assert results[-1].error_class is ErrorClass.THROTTLED
    assert bot.send([bot_delivery(key="other")])[0].status is Status.ACCEPTED  # per bot
    now[0] += 59.9
    assert bot.send([bot_delivery()])[0].status is Status.FAILED
    now[0] += 0.2
    assert bot.send([bot_delivery()])[0].status is Status.ACCEPTED
    assert fake.rate_refusals == 2


def test_a_scaled_window_shrinks_the_minute(
    fake: WeComFake, http_session: requests.Session, tmp_path: Path
) -> None:
    now = [NOW.timestamp()]
    fake.clock, fake.scale = (lambda: now[0]), 0.1
    bot = channel(fake, http_session, tmp_path)
    assert all(bot.send([bot_delivery()])[0].status is Status.ACCEPTED for _ in range(20))
    assert bot.send([bot_delivery()])[0].status is Status.FAILED
    now[0] += 6.01
    assert bot.send([bot_delivery()])[0].status is Status.ACCEPTED


# -- transport faults


@pytest.mark.parametrize("mode", [Mode.SERVER_ERROR, Mode.HTML, Mode.TRUNCATED])
def test_5xx_and_unreadable_answers_are_unknown(
    fake: WeComFake, http_session: requests.Session, tmp_path: Path, mode: Mode
) -> None:
    fake.mode = mode
    [result] = channel(fake, http_session, tmp_path).send([bot_delivery()])
    assert (result.status, result.error_class) == (Status.UNKNOWN, ErrorClass.UNKNOWN)


def test_no_answer_is_unknown_and_the_robot_did_post(
    fake: WeComFake, http_session: requests.Session, tmp_path: Path
) -> None:
    fake.mode = Mode.HANG
    bot = channel(fake, http_session, tmp_path, timeout=[1, 0.3])
    [result] = bot.send([bot_delivery()])
    assert result == Result(
        bot_delivery().key,
        Status.UNKNOWN,
        ErrorClass.UNKNOWN,
        "等待应答超时 no answer within 0.3s; outcome unknown",
    )
    assert len(fake.accepted[BOT_KEY]) == 1


def test_a_refused_connection_is_transient(http_session: requests.Session, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    bot = make_bot_channel(
        WeComBotChannel, http_session, tmp_path, base_url=f"http://127.0.0.1:{port}"
    )
    [result] = bot.send([bot_delivery()])
    assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.TRANSIENT)
    assert BOT_KEY not in repr(result)


# -- settings


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mention_mobiles": ["13800000001"]}, "only text messages mention by mobile"),
        ({"msgtype": "text", "mention_mobiles": ["1380000"]}, "expected 11-digit mainland"),
        ({"msgtype": "news"}, "a news message needs news_url"),
        ({"msgtype": "text", "max_bytes": 3000}, "over WeCom's 2048 bytes"),
        ({"base_url": "qyapi.weixin.qq.com"}, "expected an http(s) URL"),
        ({"key": "abc"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WeComBotChannel.Settings.model_validate(settings)
    assert message in str(caught.value)
