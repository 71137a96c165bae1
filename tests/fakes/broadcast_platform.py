"""A fake IP broadcast platform: what the loudspeaker channel's HTTP bridge is tested against.

Shaped like the public Xiaoboshu example (channels.md §10, §11): form and multipart
POSTs answering `{"res": true|false}`. It checks what a real platform checks and
refuses malformed input with `res:false`:

* `POST /user/gtoken` (username, password) → a token; a wrong password is refused;
* every other call needs `X-Token`; `expire_token()` makes the current one answer
  `{"res": false, "code": "token_expired"}` (the client logs in again once);
* `POST /user/uploadfile`: multipart with a `file` part named `*.mp3`, type
  `audio/mpeg`, bytes that start like an MP3 (ID3 or a frame sync) and whose sha256
  equals the `sha256` field; anything else is `bad_upload`;
* `POST /user/add_task` (JSON): a known `file_id`, an ISO `start`, a 7-digit 0/1
  `weekdays`, `ebm_class` 5 (routine; emergency classes are refused), an `external_id`;
  tasks are created **disabled**; `POST /user/enabletask` enables one;
* `GET /user/task?external_id=…` finds a task by our key; `GET /user/playlog?task_id=…`
  answers what `play_reports[task_id]` holds (default: nothing played yet).

Faults: `busy` (`res:false, code:busy`), `upload_status` (e.g. 502 on upload),
`hang_on_task` (create the task, never answer), `task_status` (create, then answer 5xx).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from .http import FakeHTTPServer, RecordedRequest, Reply

__all__ = ["BroadcastPlatformFake"]


def _multipart(request: RecordedRequest) -> dict[str, tuple[str | None, str, bytes]]:
    """name -> (filename, content type, bytes) of a multipart/form-data body."""
    content_type = request.headers.get("Content-Type", "")
    if not content_type.startswith("multipart/form-data"):
        return {}
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.body)
    parts: dict[str, tuple[str | None, str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts[name] = (part.get_filename(), part.get_content_type(), payload)
    return parts


class BroadcastPlatformFake(FakeHTTPServer):
    """The platform; `files`, `tasks` and the counters are for the test to inspect."""

    def __init__(self, username: str = "county", password: str = "pw") -> None:
        super().__init__()
        self.username = username
        self.password = password
        self.token_no = 0
        self.valid_token: str | None = None
        self.files: dict[str, bytes] = {}  # file_id -> bytes
        self.tasks: dict[str, dict[str, Any]] = {}  # task_id -> task
        self.play_reports: dict[str, dict[str, Any]] = {}
        self.busy = False
        self.upload_status: int | None = None
        self.task_status: int | None = None
        self.hang_on_task = False
        self.logins = 0
        self._state = threading.Lock()

    def expire_token(self) -> None:
        self.valid_token = None

    def _no(self, code: str, msg: str) -> Reply:
        return Reply.json({"res": False, "code": code, "msg": msg})

    def handle(self, request: RecordedRequest) -> Reply:
        with self._state:
            return self._handle(request)

    def _handle(self, request: RecordedRequest) -> Reply:
        path = request.path
        if path == "/user/gtoken":
            form = {k: v[0] for k, v in _form(request).items()}
            if form.get("username") != self.username or form.get("password") != self.password:
                return self._no("login_failed", "用户名或密码错误")
            self.logins += 1
            self.token_no += 1
            self.valid_token = f"tok{self.token_no}"
            return Reply.json({"res": True, "token": self.valid_token})
        token = request.headers.get("X-Token")
        if token is None or token != self.valid_token:
            return self._no("token_expired", "token 已过期")
        if self.busy:
            return self._no("busy", "系统繁忙")
        if path == "/user/uploadfile":
            return self._upload(request)
        if path == "/user/add_task":
            return self._add_task(request)
        if path == "/user/enabletask":
            task_id = _form(request).get("task_id", [""])[0]
            if task_id not in self.tasks:
                return self._no("no_task", "任务不存在")
            self.tasks[task_id]["enabled"] = True
            return Reply.json({"res": True})
        if path == "/user/task":
            key = request.query.get("external_id", [""])[0]
            found = [t for t in self.tasks.values() if t["external_id"] == key]
            return Reply.json({"res": True, "task": found[0] if found else None})
        if path == "/user/playlog":
            task_id = request.query.get("task_id", [""])[0]
            if task_id not in self.tasks:
                return self._no("no_task", "任务不存在")
            return Reply.json({"res": True, **self.play_reports.get(task_id, {})})
        return Reply(404, "not found")

    def _upload(self, request: RecordedRequest) -> Reply:
        if self.upload_status is not None:
            return Reply(self.upload_status, "upstream error")
        parts = _multipart(request)
        if "file" not in parts:
            return self._no("bad_upload", "缺少文件 no file part")
        filename, content_type, data = parts["file"]
        if not filename or not filename.endswith(".mp3") or content_type != "audio/mpeg":
            return self._no("bad_upload", f"只收 MP3 only MP3: {filename} {content_type}")
        if not (data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] >= 0xE0)):
            return self._no("bad_upload", "不是 MP3 文件 not an MP3")
        sha = parts.get("sha256", (None, "", b""))[2].decode()
        if sha != hashlib.sha256(data).hexdigest():
            return self._no("bad_upload", "校验和不符 sha256 mismatch")
        file_id = f"f-{sha[:12]}"
        self.files[file_id] = data
        return Reply.json({"res": True, "file_id": file_id})

    def _add_task(self, request: RecordedRequest) -> Reply:
        try:
            task = request.json()
        except ValueError:
            return self._no("bad_task", "不是 JSON")
        problems = []
        if task.get("file_id") not in self.files:
            problems.append("file_id")
        if not re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?[+-]\d\d:\d\d", str(task.get("start"))
        ):
            problems.append("start")
        if not re.fullmatch(r"[01]{7}", str(task.get("weekdays"))):
            problems.append("weekdays")
        if task.get("ebm_class") != 5:
            problems.append("ebm_class")
        if not task.get("external_id"):
            problems.append("external_id")
        if problems:
            return self._no("bad_task", f"字段错误 bad fields: {', '.join(problems)}")
        task_id = f"t-{len(self.tasks) + 1:04d}"
        self.tasks[task_id] = {**task, "task_id": task_id, "enabled": False}
        if self.hang_on_task:
            return Reply.hang()
        if self.task_status is not None:
            return Reply(self.task_status, "upstream error")
        return Reply.json({"res": True, "task_id": task_id})


def _form(request: RecordedRequest) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    if "json" in request.headers.get("Content-Type", ""):
        return {k: [str(v)] for k, v in json.loads(request.body).items()}
    return parse_qs(request.text, keep_blank_values=True)
