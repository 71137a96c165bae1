"""Helpers for the group-bot channel tests: deliveries to a bot, a channel aimed at a fake."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from broadcaster.channel import ChannelContext, Delivery, MessageKind, Recipient
from tests.conftest import NOW
from tests.fakes.deliveries import delivery

__all__ = ["BOT_KEY", "BOT_SECRET", "LONG_TEXT", "bot_delivery", "make_bot_channel"]

BOT_KEY = "tok-7f3a9c21e5"  # one of the suite's canaries: it must never show
BOT_SECRET = "S3cr3t-Token-XYZ"  # a canary too
TEXT = "【反诈提醒】凡是刷单返利都是诈骗，请拨打96110咨询。"
# about 7,000 UTF-8 bytes in 10 paragraphs: 2 parts of markdown, 5 of text
LONG_TEXT = "\n\n".join(
    f"第{i}段 反诈提醒：" + "凡是刷单返利、冒充客服退款、网络贷款先交保证金的都是诈骗。" * 8
    for i in range(1, 11)
)


def bot_delivery(
    n: int = 1,
    *,
    text: str = TEXT,
    key: str = BOT_KEY,
    secret: str | None = None,
    title: str = "",
    first_part: int = 0,
) -> Delivery:
    """A delivery to group n's bot (its key, and its signing secret when given)."""
    base = delivery(n, kind=MessageKind.BOT, text=text, address=key, display=f"{n}组群")
    extra = {"secret": secret} if secret else {}
    message = dataclasses.replace(base.message, title=title)
    return dataclasses.replace(
        base,
        recipient=Recipient(f"g{n}", key, f"{n}组群", extra),
        message=message,
        first_part=first_part,
    )


def make_bot_channel(
    cls: Any,
    session: requests.Session,
    tmp_path: Path,
    clock: Callable[[], dt.datetime] = lambda: NOW,
    pace: Callable[[str], bool] | None = None,
    **settings: Any,
) -> Any:
    validated = cls.Settings.model_validate(settings, context={"environ": {}})
    context = ChannelContext("bots", session, clock, tmp_path, tmp_path)
    if pace is not None:
        context = dataclasses.replace(context, pace=pace)
    return cls(validated, context)


def prepared(channel: Any, d: Delivery) -> Delivery:
    """The delivery with its message split as the engine would."""
    return dataclasses.replace(d, message=channel.prepare(d.message, None))
