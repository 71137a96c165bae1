"""IP broadcast platforms: where the loudspeaker channel hands its MP3s and timed tasks.

Not a channel of its own: the `loudspeaker` channel uses one `BroadcastPlatform`.
A platform takes an MP3 plus a timed task (air time, weekday mask, date range,
repeat/interval, zones) and acknowledges it; that acknowledgement is the delivery. A
play report, where the platform gives one, is the late outcome.

`HttpBridge` is the generic bridge, shaped like the public Xiaoboshu example
(channels.md §10): form/multipart POSTs answering `{"res": true|false}`:

* `POST {base}/user/gtoken` (username, password) → `{"res": true, "token": "…"}`;
* `POST {base}/user/uploadfile` multipart `file` (audio/mpeg) + `sha256` → `file_id`;
* `POST {base}/user/add_task` (JSON task, `external_id` = our delivery key) → `task_id`,
  created disabled; `POST {base}/user/enabletask` (task_id) turns it on;
* `GET {base}/user/task?external_id=…` finds a task whose answer was lost;
* `GET {base}/user/playlog?task_id=…` → `played` / `failed` terminals.

The upload goes first (idempotent by sha256: safe to retry); the task creation is not
idempotent, so a timeout or 5xx after it leaves the outcome unknown until the task is
looked up by our key. An expired token logs in again once; `res:false` is permanent;
"busy" is throttled; 5xx before the task is transient.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import Field

from broadcaster.audio.playlist import PlaylistEntry, PlaylistFolder
from broadcaster.channel import ChannelSettings, Delivery, EnvSecret, ErrorClass, Result, Status

if TYPE_CHECKING:
    import requests

__all__ = ["BridgeSettings", "BroadcastPlatform", "BundlePlatform", "HttpBridge"]


class BroadcastPlatform(Protocol):
    """Where timed playlist entries go."""

    def deliver(self, delivery: Delivery, entry: PlaylistEntry, audio: Path) -> Result: ...

    def lookup(self, delivery: Delivery) -> Result | None: ...  # a lost answer, or a play report


class BundlePlatform:
    """No platform API: a folder per target (MP3s, playlist.m3u8, schedule.json) for the
    operator, e.g. a county emergency-broadcast chain that takes signed files by hand."""

    def __init__(self, root: Path):
        self.folder = PlaylistFolder(root)

    def deliver(self, delivery: Delivery, entry: PlaylistEntry, audio: Path) -> Result:
        folder = self.folder.add(entry, audio)
        return Result.ok(delivery, f"bundle:{folder.name}/{entry.file}")

    def lookup(self, delivery: Delivery) -> Result | None:
        entries = self.folder.entries(delivery.recipient.target_id)
        if any(e.key == delivery.key for e in entries):
            return Result.ok(delivery, delivery.provider_id)
        return Result.fail(delivery, ErrorClass.TRANSIENT, "播单中没有 not in the bundle")


class BridgeSettings(ChannelSettings):
    """The generic HTTP bridge to an IP broadcast platform."""

    base_url: str  # e.g. https://gb.example.cn/api (tests: http://127.0.0.1:PORT)
    username: str
    password: EnvSecret
    timeout: tuple[float, float] = (5.0, 60.0)  # connect, read (an upload may be slow)
    busy_retry_seconds: float = Field(default=120.0, gt=0)


class _Answer(Exception):
    """A request's outcome decided before a task exists (becomes a Result)."""

    def __init__(self, error_class: ErrorClass, reason: str, **kw: Any):
        super().__init__(reason)
        self.error_class = error_class
        self.reason = reason
        self.kw = kw


class HttpBridge:
    """Uploads the MP3, creates the timed task and enables it; reads play reports."""

    def __init__(self, settings: BridgeSettings, http: requests.Session):
        self.settings = settings
        self.http = http
        self.base = settings.base_url.rstrip("/")
        self._token: str | None = None
        self._lock = threading.Lock()

    # -- plumbing

    def _login(self) -> str:
        try:
            reply = self._call(
                "POST",
                "/user/gtoken",
                authed=False,
                data={"username": self.settings.username, "password": self.settings.password.get()},
            )
        except _Answer as answer:
            if answer.error_class is not ErrorClass.CONTENT:
                raise
            raise _Answer(
                ErrorClass.CONFIG, f"登录被拒绝 the platform refused our login: {answer.reason}"
            ) from None
        token = reply.get("token")
        if not token:
            raise _Answer(ErrorClass.CONFIG, "登录被拒绝 the platform refused our login")
        return str(token)

    def _token_value(self, renew: bool = False) -> str:
        with self._lock:
            if self._token is None or renew:
                self._token = None
                self._token = self._login()
            return self._token

    def _call(
        self, method: str, path: str, *, authed: bool = True, retry_login: bool = True, **kw: Any
    ) -> dict[str, Any]:
        """One request; the JSON answer when `res` is true, else `_Answer` (or requests errors)."""
        headers = {"X-Token": self._token_value()} if authed else {}
        response = self.http.request(
            method,
            self.base + path,
            headers=headers,
            timeout=self.settings.timeout,
            allow_redirects=False,
            **kw,
        )
        if response.status_code == 401 and authed and retry_login:
            self._token_value(renew=True)
            return self._call(method, path, authed=authed, retry_login=False, **kw)
        if response.status_code == 429:
            raise _Answer(
                ErrorClass.THROTTLED,
                "HTTP 429 限流 throttled",
                retry_after=self.settings.busy_retry_seconds,
            )
        if response.status_code >= 500:
            raise _Answer(
                ErrorClass.TRANSIENT, f"HTTP {response.status_code} 平台错误 server error"
            )
        if response.status_code in (403, 404):
            raise _Answer(ErrorClass.CONFIG, f"HTTP {response.status_code}: check base_url")
        try:
            body = response.json()
        except ValueError:
            raise _Answer(
                ErrorClass.UNKNOWN, f"应答不是 JSON answer is not JSON: {response.text[:60]!r}"
            ) from None
        if not isinstance(body, dict) or "res" not in body:
            raise _Answer(
                ErrorClass.UNKNOWN, f"应答缺少 res answer lacks res: {response.text[:80]!r}"
            )
        if body["res"] is True:
            return body
        code = str(body.get("code", ""))
        message = str(body.get("msg", ""))[:120]
        if code == "token_expired" and authed and retry_login:
            self._token_value(renew=True)
            return self._call(method, path, authed=authed, retry_login=False, **kw)
        if code == "busy":
            raise _Answer(
                ErrorClass.THROTTLED,
                f"平台忙 platform busy: {message}",
                retry_after=self.settings.busy_retry_seconds,
            )
        raise _Answer(ErrorClass.CONTENT, f"平台拒绝 platform refused ({code}): {message}")

    # -- the contract of a platform

    def deliver(self, delivery: Delivery, entry: PlaylistEntry, audio: Path) -> Result:
        import requests

        stage = "upload"
        try:
            uploaded = self._call(
                "POST",
                "/user/uploadfile",
                files={"file": (entry.file, audio.read_bytes(), "audio/mpeg")},
                data={"sha256": entry.sha256, "title": entry.title},
            )
            file_id = str(uploaded.get("file_id") or "")
            if not file_id:
                raise _Answer(
                    ErrorClass.UNKNOWN, "上传应答缺少 file_id upload answer lacks file_id"
                )
            stage = "task"
            task = {**asdict(entry), "file_id": file_id, "external_id": entry.key}
            created = self._call("POST", "/user/add_task", json=task)
            task_id = str(created.get("task_id") or "")
            if not task_id:
                raise _Answer(ErrorClass.UNKNOWN, "应答缺少 task_id answer lacks task_id")
            stage = "enable"
            self._call("POST", "/user/enabletask", data={"task_id": task_id})
        except _Answer as answer:
            if stage != "upload" and answer.error_class is ErrorClass.TRANSIENT:
                # the task may exist: look it up by our key before anything is sent again
                return Result.fail(
                    delivery, ErrorClass.UNKNOWN, f"{answer.reason}; 结果未知 outcome unknown"
                )
            if stage == "enable" and answer.error_class is not ErrorClass.UNKNOWN:
                return Result.fail(
                    delivery,
                    ErrorClass.UNKNOWN,
                    f"任务已建但未启用 task created, not enabled: {answer.reason}",
                )
            return Result.fail(delivery, answer.error_class, answer.reason, **answer.kw)
        except requests.ConnectTimeout:
            if stage == "upload":
                return Result.fail(delivery, ErrorClass.TRANSIENT, "连接超时 connect timeout")
            return Result.fail(delivery, ErrorClass.UNKNOWN, "连接超时 connect timeout; unknown")
        except requests.ConnectionError as exc:
            if stage == "upload" or "refused" in repr(exc).lower():
                return Result.fail(delivery, ErrorClass.TRANSIENT, "连接失败 cannot connect")
            return Result.fail(delivery, ErrorClass.UNKNOWN, "连接中断 dropped; outcome unknown")
        except requests.RequestException as exc:
            cls = ErrorClass.TRANSIENT if stage == "upload" else ErrorClass.UNKNOWN
            return Result.fail(delivery, cls, f"请求失败 request failed ({type(exc).__name__})")
        return Result.ok(delivery, task_id)

    def lookup(self, delivery: Delivery) -> Result | None:
        """A task whose answer was lost (by our key), or the play report of an accepted one."""
        import requests

        try:
            if delivery.provider_id is None:
                found = self._call("GET", "/user/task", params={"external_id": delivery.key})
                task = found.get("task")
                if not task:
                    return Result.fail(
                        delivery,
                        ErrorClass.TRANSIENT,
                        "平台无此任务 no such task: safe to send again",
                    )
                task_id = str(task["task_id"])
                if not task.get("enabled"):
                    self._call("POST", "/user/enabletask", data={"task_id": task_id})
                return Result.ok(delivery, task_id)
            report = self._call("GET", "/user/playlog", params={"task_id": delivery.provider_id})
        except (_Answer, requests.RequestException):
            return None  # still unknown: asked again later
        played = report.get("played") or []
        failed = report.get("failed") or []
        if played:
            return Result(
                delivery.key,
                Status.DELIVERED,
                provider_id=delivery.provider_id,
                raw=json.dumps({"played": len(played), "failed": len(failed)}),
            )
        if failed:
            reasons = sorted({str(f.get("reason", "")) for f in failed})
            return Result.fail(
                delivery,
                ErrorClass.RECIPIENT,
                f"未播出 not played: {', '.join(reasons)} ({len(failed)} terminals)",
                provider_id=delivery.provider_id,
            )
        return None
