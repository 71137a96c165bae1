"""A fake batch gateway answering per number, and the test channel that sends to it.

The gateway (`BatchGatewayFake`) takes `POST /batch` with a JSON body
`{"items": [{"key": ..., "to": ..., "text": ...}, ...]}` and answers
`{"results": [{"key": ..., "code": ..., "id": ...}, ...]}`: one result per item, like
Tencent's SendStatusSet. What it answers for a key on its n-th arrival comes from
`script[key]` (a list of codes, the last one repeating), else `default`:

    OK        acted on, answered accepted
    THROTTLED not acted on, answered throttled (the channel waits `retry_after`)
    BUSY      not acted on, answered transient
    LOST      acted on, but the channel is told the answer was lost (unknown)
    BAD       not acted on, the number is refused (permanent)

`acted` counts, per key, how often the gateway acted: more than once is a duplicate
message. `GET /lookup?key=K` answers whether K was acted on (for reconciling).

`BatchChannel` (plugin name "batch") is a real plugin posting batches there; its
`resend_on_unknown`, `batch_size`, `reconciles` come from its settings.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import requests

from broadcaster.channel import (
    BaseChannel,
    Capabilities,
    ChannelSettings,
    Delivery,
    ErrorClass,
    MessageKind,
    Result,
    Status,
)
from broadcaster.vocab import Addressing

from .http import FakeHTTPServer, RecordedRequest, Reply

__all__ = ["BatchChannel", "BatchGatewayFake"]

ACTING = {"OK", "LOST"}


class BatchGatewayFake(FakeHTTPServer):
    def __init__(self) -> None:
        super().__init__()
        self.script: dict[str, list[str]] = {}
        self.default = "OK"
        self.arrivals: Counter[str] = Counter()
        self.acted: Counter[str] = Counter()
        self.calls = 0
        self._lock = threading.Lock()

    def duplicates(self) -> dict[str, int]:
        with self._lock:
            return {k: n for k, n in self.acted.items() if n > 1}

    def handle(self, request: RecordedRequest) -> Reply:
        if request.method == "GET" and request.path == "/lookup":
            key = request.query.get("key", [""])[0]
            with self._lock:
                acted = self.acted[key] > 0
            return Reply.json({"found": acted})
        body = request.json()
        results = []
        with self._lock:
            self.calls += 1
            for item in body["items"]:
                key = item["key"]
                self.arrivals[key] += 1
                codes = self.script.get(key, [self.default])
                code = codes[min(self.arrivals[key], len(codes)) - 1]
                if code in ACTING:
                    self.acted[key] += 1
                results.append({"key": key, "code": code, "id": f"id-{key[:6]}"})
        return Reply.json({"results": results})


class BatchSettings(ChannelSettings):
    url: str
    batch_size: int = 100
    resend_on_unknown: int = 0
    reconciles: bool = False
    retry_after: float = 5.0
    concurrency: int = 4
    settle_seconds: float = 10.0


class BatchChannel(BaseChannel):
    """Sends a batch in one POST; reads one result per number."""

    name = "batch"
    Settings = BatchSettings

    @property
    def capabilities(self) -> Capabilities:
        s = self.settings
        return Capabilities(
            kinds=frozenset(MessageKind),
            addressing=Addressing.CONTACTS,
            batch_size=s.batch_size,
            concurrency=s.concurrency,
            resend_on_unknown=s.resend_on_unknown,
            reconciles=s.reconciles,
            settle_seconds=s.settle_seconds,
        )

    def endpoint(self, recipient: Any) -> str:
        return self.settings.url

    def send(self, batch: Sequence[Delivery]) -> list[Result]:
        items = [{"key": d.key, "to": d.recipient.address, "text": d.message.text} for d in batch]
        try:
            response = self.context.http.post(
                f"{self.settings.url}/batch", json={"items": items}, timeout=(2, 5)
            )
        except requests.RequestException as exc:
            return [
                Result.fail(d, ErrorClass.UNKNOWN, f"lost: {type(exc).__name__}") for d in batch
            ]
        answers = {r["key"]: r for r in response.json()["results"]}
        out = []
        for d in batch:
            code = answers[d.key]["code"]
            if code == "OK":
                out.append(Result.ok(d, answers[d.key]["id"], raw=json.dumps(answers[d.key])))
            elif code == "THROTTLED":
                out.append(
                    Result.fail(
                        d, ErrorClass.THROTTLED, "throttled", retry_after=self.settings.retry_after
                    )
                )
            elif code == "BUSY":
                out.append(Result.fail(d, ErrorClass.TRANSIENT, "busy"))
            elif code == "LOST":
                out.append(Result.fail(d, ErrorClass.UNKNOWN, "answer lost"))
            else:
                out.append(Result.fail(d, ErrorClass.RECIPIENT, "number refused"))
        return out

    def reconcile(self, pending: Sequence[Delivery]) -> list[Result]:
        if not self.settings.reconciles:
            return []
        out = []
        for d in pending:
            found = self.context.http.get(
                f"{self.settings.url}/lookup", params={"key": d.key}, timeout=(2, 5)
            ).json()["found"]
            if found:
                out.append(Result(d.key, Status.ACCEPTED, reason="found by lookup"))
            else:
                out.append(Result.fail(d, ErrorClass.TRANSIENT, "never arrived"))
        return out
