"""echo: a third-party channel plugin that implements the protocol without `BaseChannel`.

Plugin alias: echo. Provider docs: none, it talks to nobody. It proves that the
`broadcaster.channel.Channel` protocol alone is enough to write a plugin: every member
is written out here. Each sent delivery is appended as one JSON line to
`<data_dir>/echo.jsonl` (masked recipient, text, greeting) and reported accepted with
a provider id `echo-<n>`.

Registered in this distribution's `pyproject.toml`:

    [project.entry-points."broadcaster.channels"]
    echo = "broadcaster_example_plugin:EchoChannel"
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from broadcaster.channel import (
    Capabilities,
    ChannelContext,
    ChannelSettings,
    Delivery,
    EnvSecret,
    ErrorClass,
    Message,
    MessageKind,
    Recipient,
    Result,
    Status,
)

__all__ = ["EchoChannel", "EchoSettings"]


class EchoSettings(ChannelSettings):
    """`settings:` of an echo channel: one secret, one plain field."""

    token: EnvSecret  # given as {env: NAME}; never shown
    greeting: str = "echo"  # written in front of every line's text


class EchoChannel:
    """Appends deliveries to `<data_dir>/echo.jsonl`; everything it is given is accepted."""

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

    @property
    def path(self) -> Path:
        return self.context.data_dir / "echo.jsonl"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(kinds=frozenset(MessageKind), batch_size=10, concurrency=1)

    def check(self) -> str | None:
        if self.settings.token.value is None:
            return f"缺少环境变量 environment variable {self.settings.token.env} not set"
        return None

    def check_message(self, message: Message) -> list[str]:
        if "禁止" in message.text:
            return ["echo 不接受含“禁止”的文字 echo refuses text containing '禁止'"]
        return []

    def endpoint(self, recipient: Recipient) -> str:
        return self.context.instance_id

    def send(self, batch: Sequence[Delivery]) -> list[Result]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        start = len(self.path.read_text(encoding="utf-8").splitlines()) if self.path.exists() else 0
        results = []
        with self.path.open("a", encoding="utf-8") as handle:
            for n, d in enumerate(batch, start=start + 1):
                line = {
                    "key": d.key,
                    "recipient": d.recipient.display,
                    "text": f"{self.settings.greeting} {d.message.text}",
                    "provider_id": f"echo-{n}",
                }
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
                results.append(Result(d.key, Status.ACCEPTED, provider_id=f"echo-{n}"))
        return results

    def reconcile(self, pending: Sequence[Delivery]) -> list[Result]:
        seen: dict[str, str] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                seen[record["key"]] = record["provider_id"]
        out = []
        for d in pending:
            if d.key in seen:
                out.append(Result(d.key, Status.ACCEPTED, provider_id=seen[d.key]))
            else:
                out.append(
                    Result(d.key, Status.FAILED, ErrorClass.TRANSIENT, "not echoed; safe to resend")
                )
        return out

    def close(self) -> None:
        self.closed = True
