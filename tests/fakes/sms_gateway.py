"""A fake generic SMS gateway in the Kannel / playSMS shape (channels.md §4, §11).

`GET` or `POST /cgi-bin/sendsms` with `username`, `password`, `to` (numbers joined by
commas), `text` and `ref` (our references, joined the same way), in the query or as a
form. Wrong credentials: 403 `Authorization failed`. Otherwise one line per number:
`OK <id>`, or `ERR <code> <message>` for a number in `bad_numbers` (INVALID_NUMBER),
`optout_numbers` (BLACKLIST) or `busy` (BUSY, as often as its count says; nothing sent).

`mode` (or `queue(...)`, one mode per request, first) changes the whole answer:
`ok`, `throttled` (429, Retry-After: 30; nothing sent), `http_500` (nothing sent),
`hang` (sent, never answers), `garbage` (sent, answers bytes that mean nothing),
`late_500` (sent, then 500).

`GET /status?ref=KEY` answers `DELIVRD <id>` for a reference in `delivered`,
`ACCEPTD <id>` for any other it sent, 404 `NOT FOUND` for one it never sent.
`sent` counts each (number, text) sent: more than one is a duplicate SMS.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter, deque
from urllib.parse import parse_qs

from .http import FakeHTTPServer, RecordedRequest, Reply

__all__ = ["GATEWAY_PASSWORD", "SmsGatewayFake"]

GATEWAY_PASSWORD = "gw-secret-7c1e"
SENDING_MODES = {"ok", "hang", "garbage", "late_500"}


class SmsGatewayFake(FakeHTTPServer):
    def __init__(self) -> None:
        super().__init__()
        self.username = "office"
        self.password = GATEWAY_PASSWORD
        self.mode = "ok"
        self.bad_numbers: set[str] = set()
        self.optout_numbers: set[str] = set()
        self.busy: Counter[str] = Counter()  # number -> answers of ERR BUSY still to give
        self.delivered: set[str] = set()  # references whose status is DELIVRD
        self.sent: Counter[tuple[str, str]] = Counter()  # (number, text) -> times sent
        self.by_ref: dict[str, tuple[str, str]] = {}  # reference -> (message id, number)
        self.send_requests: list[dict[str, str]] = []  # the fields of every send request
        self._modes: deque[str] = deque()
        self._ids = itertools.count(1)
        self._state = threading.Lock()

    def queue(self, *modes: str) -> None:
        with self._state:
            self._modes.extend(modes)

    def duplicates(self) -> dict[tuple[str, str], int]:
        return {k: n for k, n in self.sent.items() if n > 1}

    def handle(self, request: RecordedRequest) -> Reply:
        if request.path == "/status":
            return self._status(request)
        if request.path != "/cgi-bin/sendsms":
            return Reply(404, "NOT FOUND")
        fields = {k: v[-1] for k, v in request.query.items()}
        if request.method == "POST":
            form = parse_qs(request.text, keep_blank_values=True)
            fields.update({k: v[-1] for k, v in form.items()})
        with self._state:
            self.send_requests.append(fields)
            mode = self._modes.popleft() if self._modes else self.mode
        if fields.get("username") != self.username or fields.get("password") != self.password:
            return Reply(403, "Authorization failed")
        if mode == "throttled":
            return Reply(429, "ERR 429 too many requests", {"Retry-After": "30"})
        if mode == "http_500":
            return Reply(500, "Internal Server Error")
        numbers = [n for n in fields.get("to", "").split(",") if n]
        refs = fields.get("ref", "").split(",")
        text = fields.get("text", "")
        lines = []
        with self._state:
            for i, number in enumerate(numbers):
                if number in self.bad_numbers:
                    lines.append("ERR INVALID_NUMBER invalid destination")
                elif number in self.optout_numbers:
                    lines.append("ERR BLACKLIST number unsubscribed")
                elif self.busy[number] > 0:
                    self.busy[number] -= 1
                    lines.append("ERR BUSY try again")
                else:
                    message_id = f"m{next(self._ids):06d}"
                    self.sent[(number, text)] += 1
                    if i < len(refs) and refs[i]:
                        self.by_ref[refs[i]] = (message_id, number)
                    lines.append(f"OK {message_id}")
        if mode == "hang":
            return Reply.hang()
        if mode == "garbage":
            return Reply(200, b"\x00\xff<html>gateway \x8f</html>")
        if mode == "late_500":
            return Reply(500, "Internal Server Error")
        return Reply(200, "\n".join(lines) + "\n")

    def _status(self, request: RecordedRequest) -> Reply:
        ref = (request.query.get("ref") or [""])[-1]
        with self._state:
            found = self.by_ref.get(ref)
            delivered = ref in self.delivered
        if found is None:
            return Reply(404, "NOT FOUND")
        return Reply(200, f"{'DELIVRD' if delivered else 'ACCEPTD'} {found[0]}")
