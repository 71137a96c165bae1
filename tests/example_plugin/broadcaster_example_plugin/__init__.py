"""echo: a third-party channel plugin that implements the protocol without `BaseChannel`.

Plugin alias: echo. Provider docs: none, it talks to nobody. It proves that the
`broadcaster.channel.Channel` protocol alone is enough to write a plugin, and shows
every member of the contract at work:

* `prepare()` splits a text longer than `max_bytes` into numbered parts and makes an
  artefact (a small SVG card of the text), cached by content;
* `send()` appends each part, from the first one not yet accepted, as one JSON line to
  `<data_dir>/echo.jsonl` with the message's parameters and the card's hash, and
  reports the delivery accepted with a provider id `echo-<n>`;
* outcomes come later by every route: `reconcile()` reads the file back;
  `pull_outcomes()` reads receipts the far end writes to `<data_dir>/receipts.jsonl`,
  100 per page, resuming from a cursor (the line number); `routes()` serves
  `POST /hooks/<channel>/receipts`, authenticated by the `X-Echo-Token` header.

Registered in this distribution's `pyproject.toml`:

    [project.entry-points."broadcaster.channels"]
    echo = "broadcaster_example_plugin:EchoChannel"
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import replace
from html import escape
from pathlib import Path
from typing import Any, ClassVar

from broadcaster.channel import (
    ArtefactStore,
    Capabilities,
    ChannelContext,
    ChannelSettings,
    Delivery,
    EnvSecret,
    ErrorClass,
    InboundReply,
    InboundRequest,
    InboundRoute,
    Message,
    MessageKind,
    Outcome,
    OutcomePage,
    Recipient,
    Result,
    ScheduledSend,
    Status,
)
from broadcaster.kit import split_parts

__all__ = ["EchoChannel", "EchoSettings"]

PAGE = 100  # outcomes per pull


class EchoSettings(ChannelSettings):
    """`settings:` of an echo channel: one secret, plain fields."""

    token: EnvSecret  # given as {env: NAME}; never shown
    greeting: str = "echo"  # written in front of every line's text
    max_bytes: int = 400  # longer texts go as numbered parts
    max_per_day: int = 0  # check_schedule: at most this many sends a day per target (0: any)


class EchoChannel:
    """Appends deliveries to `<data_dir>/echo.jsonl`; receipts arrive later."""

    name: ClassVar[str] = "echo"
    Settings: ClassVar[type[ChannelSettings]] = EchoSettings
    # used by tests/channels/test_contract.py: a settings dict that makes this channel ready
    contract_example: ClassVar[dict[str, Any]] = {
        "token": {"env": "ECHO_TOKEN"},
        "greeting": "你好",
    }

    def __init__(self, settings: EchoSettings, context: ChannelContext) -> None:
        self.settings = settings
        self.context = context
        self.closed = False
        context.http.headers.update({"User-Agent": "broadcaster-echo"})  # configured here, once

    @property
    def path(self) -> Path:
        return self.context.data_dir / "echo.jsonl"

    @property
    def receipts(self) -> Path:
        return self.context.data_dir / "receipts.jsonl"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            kinds=frozenset(MessageKind),
            batch_size=10,
            concurrency=1,
            settle_seconds=0,
            reconciles=True,
            outcome_window=3600,
            outcome_poll=60,
        )

    def check(self) -> str | None:
        if self.settings.token.value is None:
            return f"缺少环境变量 environment variable {self.settings.token.env} not set"
        return None

    def check_message(self, message: Message) -> list[str]:
        if "禁止" in message.text:
            return ["echo 不接受含“禁止”的文字 echo refuses text containing '禁止'"]
        return []

    def check_schedule(self, sends: Sequence[ScheduledSend]) -> list[str]:
        if not self.settings.max_per_day:
            return []
        per_day: dict[tuple[str, str], int] = {}
        for s in sends:
            day = (s.target_id, f"{s.at:%Y-%m-%d}")
            per_day[day] = per_day.get(day, 0) + 1
        return [
            f"echo: {target} 在 {day} 有 {n} 次 gets {n} sends on {day}, over {self.settings.max_per_day}"
            for (target, day), n in sorted(per_day.items())
            if n > self.settings.max_per_day
        ]

    def endpoint(self, recipient: Recipient) -> str:
        return self.context.instance_id

    def prepare(self, message: Message, artefacts: ArtefactStore) -> Message:
        card = artefacts.make(
            f"echo-card:v1:{message.text_sha256}",
            "card.svg",
            "image/svg+xml",
            lambda: (
                '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="80">'
                f"<text x='10' y='40'>{escape(message.text[:40])}</text></svg>"
            ).encode(),
        )
        parts = split_parts(message.text, self.settings.max_bytes)
        return replace(message, parts=parts, artefacts=(card,))

    def send(self, batch: Sequence[Delivery]) -> list[Result]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        start = len(self.path.read_text(encoding="utf-8").splitlines()) if self.path.exists() else 0
        results = []
        n = start
        with self.path.open("a", encoding="utf-8") as handle:
            for d in batch:
                pieces = d.message.pieces
                for part in range(d.first_part, len(pieces)):
                    n += 1
                    line = {
                        "key": d.key,
                        "part": part + 1,
                        "of": len(pieces),
                        "recipient": d.recipient.display,
                        "text": f"{self.settings.greeting} {pieces[part]}",
                        "params": dict(d.message.params),
                        "card": [a.sha256 for a in d.message.artefacts],
                        "provider_id": f"echo-{n}",
                    }
                    handle.write(json.dumps(line, ensure_ascii=False) + "\n")
                parts = len(pieces) if len(pieces) > 1 else None
                results.append(
                    Result(d.key, Status.ACCEPTED, provider_id=f"echo-{n}", parts_done=parts)
                )
        return results

    def reconcile(self, pending: Sequence[Delivery]) -> list[Result]:
        seen: dict[str, str] = {}
        delivered = self._receipts()
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                seen[record["key"]] = record["provider_id"]
        out = []
        for d in pending:
            if d.key in seen:
                status = Status.DELIVERED if seen[d.key] in delivered else Status.ACCEPTED
                out.append(Result(d.key, status, provider_id=seen[d.key]))
            else:
                out.append(
                    Result(d.key, Status.FAILED, ErrorClass.TRANSIENT, "not echoed; safe to resend")
                )
        return out

    def _receipts(self) -> set[str]:
        if not self.receipts.exists():
            return set()
        lines = self.receipts.read_text(encoding="utf-8").splitlines()
        return {json.loads(line)["provider_id"] for line in lines if line.strip()}

    def pull_outcomes(self, cursor: str | None) -> OutcomePage | None:
        if not self.receipts.exists():
            return OutcomePage([], cursor, False)
        lines = self.receipts.read_text(encoding="utf-8").splitlines()
        start = int(cursor or 0)
        page = lines[start : start + PAGE]
        outcomes = [self._outcome(json.loads(line)) for line in page if line.strip()]
        end = start + len(page)
        return OutcomePage(outcomes, str(end), end < len(lines))

    @staticmethod
    def _outcome(record: dict[str, Any]) -> Outcome:
        ok = record.get("status", "delivered") == "delivered"
        return Outcome(
            Status.DELIVERED if ok else Status.FAILED,
            provider_id=record["provider_id"],
            error_class=None if ok else ErrorClass.RECIPIENT,
            reason="echo 回执 receipt",
            raw=json.dumps(record, ensure_ascii=False),
        )

    def routes(self) -> Sequence[InboundRoute]:
        return (
            InboundRoute(
                "/receipts",
                self._receive,
                methods=("POST",),
                summary="echo 回执 receipts pushed by the far end: a JSON list of "
                "{provider_id, status}",
            ),
        )

    def _receive(self, request: InboundRequest) -> InboundReply:
        token = self.settings.token.value or ""
        given = request.headers.get("x-echo-token", "")
        if not token or not hmac.compare_digest(
            hashlib.sha256(given.encode()).digest(), hashlib.sha256(token.encode()).digest()
        ):
            return InboundReply.json({"error": "bad token"}, status=401)
        try:
            records = request.json()
            outcomes = [self._outcome(r) for r in records]
        except (ValueError, TypeError, KeyError):
            return InboundReply.json({"error": "expected a JSON list of receipts"}, status=400)
        return InboundReply.json({"ok": True, "received": len(outcomes)}, outcomes=outcomes)

    def close(self) -> None:
        self.closed = True
