"""outbox: write every rendered message to a folder as JSON lines. Needs no credentials.

Plugin alias: outbox. The embedded default: it works on any machine, so a new
campaign can run end to end before any provider account exists, and an office can
hand the files to whoever sends by hand. One file per channel and day,
`<folder>/<YYYY-MM-DD>.jsonl`, one JSON object per delivery with the idempotency
key, the masked recipient, the exact text and the template version. Recipients
are written masked; phone numbers never reach the file.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Sequence
from pathlib import Path

from broadcaster.channel import (
    BaseChannel,
    Capabilities,
    ChannelSettings,
    Delivery,
    ErrorClass,
    MessageKind,
    Result,
)
from broadcaster.errors import RetryableError

__all__ = ["OutboxChannel"]


class OutboxSettings(ChannelSettings):
    folder: str | None = None  # default: var/channels/<channel id>; relative to the campaign folder
    fsync: bool = True  # flush each batch to disk before reporting it accepted


class OutboxChannel(BaseChannel):
    """Appends deliveries to `<folder>/<date>.jsonl`."""

    name = "outbox"
    Settings = OutboxSettings

    @property
    def folder(self) -> Path:
        if self.settings.folder is None:
            return self.context.data_dir
        return self.context.base_dir / self.settings.folder

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            kinds=frozenset(MessageKind),
            batch_size=500,
            concurrency=1,  # one writer per file keeps lines whole
            settle_seconds=0,  # a write either reached the file or it did not
            reconciles=True,  # the files say what was written
        )

    def check(self) -> str | None:
        folder = self.folder
        probe = folder if folder.exists() else next((p for p in folder.parents if p.exists()), None)
        if probe is None or not probe.is_dir() or not os.access(probe, os.W_OK):
            return f"目录不可写 folder is not writable: {folder}"
        return None

    def send(self, batch: Sequence[Delivery]) -> list[Result]:
        now = self.context.clock()
        lines = []
        for d in batch:
            record = {
                "key": d.key,
                "occurrence": d.occurrence_id,
                "rule": d.rule_id,
                "channel": d.channel_id,
                "target": d.recipient.target_id,
                "recipient": d.recipient.display,
                "kind": d.message.kind.value,
                "title": d.message.title,
                "text": d.message.text,
                "params": dict(d.message.params),
                "parts": list(d.message.parts),
                "artefacts": [a.describe() for a in d.message.artefacts],
                "template": d.message.template,
                "template_sha": d.message.template_sha,
                "scheduled_at": d.scheduled_at.isoformat(),
                "written_at": now.isoformat(),
            }
            lines.append(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        # one file per local day of the occurrence (scheduled_at carries the campaign's zone)
        path = self.folder / f"{batch[0].scheduled_at:%Y-%m-%d}.jsonl"
        data = "".join(lines).encode("utf-8")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # close a line torn by an earlier short write
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(errno.ENOSPC, "short write")
                if self.settings.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            reason = (
                "磁盘已满 disk full"
                if exc.errno == errno.ENOSPC
                else f"写入失败 cannot write {path}: {exc.strerror or exc}"
            )
            raise RetryableError(reason) from None
        return [Result.ok(d, provider_id=f"{path.name}#{d.key[:12]}") for d in batch]

    def reconcile(self, pending: Sequence[Delivery]) -> list[Result]:
        """Look for each pending key in the files: found is accepted, absent is safe to resend."""
        wanted = {d.key: d for d in pending}
        found: set[str] = set()
        if self.folder.is_dir():
            for path in sorted(self.folder.glob("*.jsonl")):
                with path.open(encoding="utf-8") as handle:
                    for line in handle:
                        if not line.endswith("\n"):
                            break  # a torn last line: that write did not complete
                        try:
                            key = json.loads(line).get("key")
                        except ValueError:
                            continue  # a line torn by a short write, closed by the next one
                        if key in wanted:
                            found.add(key)
        out = []
        for key, d in wanted.items():
            if key in found:
                out.append(Result.ok(d))
            else:
                out.append(
                    Result.fail(
                        d, ErrorClass.TRANSIENT, "未写入 not in the outbox; safe to write again"
                    )
                )
        return out
