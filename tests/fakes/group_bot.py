"""What the three fake group-bot providers share (`wecom.py`, `dingtalk.py`, `feishu.py`).

A `BotFake` holds bots by key (`add_bot(key, secret=..., keywords=...)`), checks each
request the way its provider does (subclasses: key, signature, keywords, shape,
size), then enforces the provider's limits per bot on sliding windows of accepted
messages, read from an injectable clock (`clock`: epoch seconds; tests pass the
virtual clock) and scaled by `scale` (0.1 turns "20 a minute" into "20 per 6 s" for
the benchmark). Over a limit it answers the provider's throttling code, and a
provider that blocks (DingTalk) refuses every message to that bot for the block.

It records, per bot, the messages it accepted in order (`accepted[key]`), and counts
every refusal by code (`refused`); `rate_refusals` counts the throttling answers.
How it answers a well-formed request is switched per test: `mode` (default OK),
`queue(*modes)` for the next requests, `forced` (code, message) for `Mode.CODE`;
`latency` delays every answer (real seconds, for the benchmark).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .http import FakeHTTPServer, RecordedRequest, Reply

__all__ = ["Bot", "BotFake", "Mode", "Refusal"]


class Mode(StrEnum):
    OK = "ok"  # act on it, answer code 0
    CODE = "code"  # answer `forced` (code, message) without acting
    SERVER_ERROR = "server_error"  # answer `server_error_status` (5xx) without acting
    HANG = "hang"  # act on it, never answer (until the server stops)
    HTML = "html"  # act on it, answer 200 with an HTML page (a proxy)
    TRUNCATED = "truncated"  # act on it, answer 200 with cut-off JSON


@dataclass
class Bot:
    key: str
    secret: str | None = None  # signing secret (DingTalk, Feishu)
    keywords: tuple[str, ...] = ()  # security keywords: each message must hold one
    removed: bool = False  # the bot was removed from its group
    times: deque[float] = field(default_factory=deque)  # when messages were accepted
    blocked_until: float = 0.0


class Refusal(Exception):
    """A request the provider refuses: its code and message."""

    def __init__(self, code: int, message: str, *, throttle: bool = False):
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.throttle = throttle


class BotFake(FakeHTTPServer):
    """A group-bot provider; subclasses parse and check one provider's requests."""

    code_field = "errcode"
    message_field = "errmsg"
    limits: tuple[tuple[int, float], ...] = ((20, 60.0),)  # (count, seconds) per bot
    block_seconds = 0.0  # a bot over its limit is refused this long (DingTalk: 600)
    throttle = (0, "")  # the throttling code and message
    removed_code = (0, "")  # what a removed bot answers
    unknown_code = (0, "")  # what an unknown key answers
    server_error_status = 502

    def __init__(
        self, clock: Callable[[], float] | None = None, *, scale: float = 1.0, latency: float = 0.0
    ) -> None:
        super().__init__()
        self.clock = clock or time.time
        self.scale = scale
        self.latency = latency
        self.mode = Mode.OK
        self.forced: tuple[int, str] = (-1, "system busy")
        self.bots: dict[str, Bot] = {}
        self.accepted: dict[str, list[Any]] = defaultdict(list)  # key -> messages, in order
        self.refused: Counter[int] = Counter()
        self.rate_refusals = 0
        self._modes: deque[Mode] = deque()
        self._bots_lock = threading.Lock()

    # -- set-up

    def add_bot(
        self, key: str, *, secret: str | None = None, keywords: tuple[str, ...] = ()
    ) -> Bot:
        bot = Bot(key, secret, tuple(keywords))
        with self._bots_lock:
            self.bots[key] = bot
        return bot

    def remove_bot(self, key: str) -> None:
        with self._bots_lock:
            self.bots[key].removed = True

    def queue(self, *modes: Mode) -> None:
        with self._bots_lock:
            self._modes.extend(modes)

    def total_accepted(self) -> int:
        with self._bots_lock:
            return sum(len(v) for v in self.accepted.values())

    # -- what a subclass provides

    def parse(self, request: RecordedRequest) -> tuple[str, dict[str, Any]]:
        """(bot key, JSON body) of a request, or raise Refusal."""
        raise NotImplementedError

    def check(self, request: RecordedRequest, bot: Bot, body: dict[str, Any], now: float) -> Any:
        """Check signature, shape, size and keywords; return the message as recorded."""
        raise NotImplementedError

    def success(self) -> dict[str, Any]:
        return {self.code_field: 0, self.message_field: "ok"}

    # -- answering

    def answer(self, code: int, message: str) -> Reply:
        return Reply.json({self.code_field: code, self.message_field: message})

    def handle(self, request: RecordedRequest) -> Reply:
        with self._bots_lock:
            mode = self._modes.popleft() if self._modes else self.mode
        try:
            reply = self._handle(request, mode)
        except Refusal as refusal:
            with self._bots_lock:
                self.refused[refusal.code] += 1
                if refusal.throttle:
                    self.rate_refusals += 1
            reply = self.answer(refusal.code, refusal.message)
        if self.latency and reply.action == "answer":
            reply = Reply(reply.status, reply.body, reply.headers, delay=self.latency)
        return reply

    def _handle(self, request: RecordedRequest, mode: Mode) -> Reply:
        if mode is Mode.SERVER_ERROR:
            return Reply(self.server_error_status, "<html><body>Bad Gateway</body></html>")
        if mode is Mode.CODE:
            raise Refusal(*self.forced)
        key, body = self.parse(request)
        now = self.clock()
        with self._bots_lock:
            bot = self.bots.get(key)
        if bot is None:
            raise Refusal(*self.unknown_code)
        if bot.removed:
            raise Refusal(*self.removed_code)
        message = self.check(request, bot, body, now)
        with self._bots_lock:
            self._take(bot, now)
            self.accepted[key].append(message)
        if mode is Mode.HANG:
            return Reply.hang()
        if mode is Mode.HTML:
            return Reply(200, "<!DOCTYPE html><html><body>网关 gateway</body></html>")
        if mode is Mode.TRUNCATED:
            text = json.dumps(self.success())
            return Reply(200, text[: len(text) // 2], {"Content-Type": "application/json"})
        return Reply.json(self.success())

    def _take(self, bot: Bot, now: float) -> None:
        """Count one message against the bot's windows, or refuse it (lock held)."""
        if now < bot.blocked_until:
            raise Refusal(*self.throttle, throttle=True)
        longest = max(seconds for _, seconds in self.limits) * self.scale
        while bot.times and bot.times[0] <= now - longest:
            bot.times.popleft()
        for count, seconds in self.limits:
            start = now - seconds * self.scale
            if sum(1 for t in bot.times if t > start) >= count:
                if self.block_seconds:
                    bot.blocked_until = now + self.block_seconds * self.scale
                raise Refusal(*self.throttle, throttle=True)
        bot.times.append(now)


def json_body(request: RecordedRequest, bad: tuple[int, str]) -> dict[str, Any]:
    """The request's JSON object, or the provider's refusal for a malformed body."""
    try:
        body = request.json()
    except ValueError:
        raise Refusal(*bad) from None
    if not isinstance(body, dict):
        raise Refusal(*bad)
    return body
