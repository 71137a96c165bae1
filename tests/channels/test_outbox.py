"""outbox: JSON lines in a folder, one per delivery, recipients masked."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from broadcaster.channel import (
    Capabilities,
    ChannelContext,
    ErrorClass,
    MessageKind,
    Result,
    Status,
)
from broadcaster.channels.outbox import OutboxChannel
from broadcaster.errors import RetryableError
from tests.conftest import NOW
from tests.fakes.deliveries import delivery

MakeOutbox = Callable[..., OutboxChannel]
DAY_FILE = "2026-03-03.jsonl"  # the local day the deliveries are scheduled for (not the clock's)
NOT_WRITTEN = "未写入 not in the outbox; safe to write again"


@pytest.fixture
def make_outbox(
    tmp_path: Path, http_session: requests.Session, clock: Callable[[], dt.datetime]
) -> MakeOutbox:
    """`make_outbox(**settings)`: data_dir is tmp/data, the campaign folder tmp/campaign."""

    def make(**settings: Any) -> OutboxChannel:
        context = ChannelContext(
            "handoff", http_session, clock, tmp_path / "data", base_dir=tmp_path / "campaign"
        )
        return OutboxChannel(OutboxChannel.Settings.model_validate(settings), context)

    return make


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_one_json_line_per_delivery_in_data_dir(make_outbox: MakeOutbox, tmp_path: Path) -> None:
    batch = [delivery(n) for n in (1, 2, 3)]
    results = make_outbox().send(batch)
    assert results == [
        Result(d.key, Status.ACCEPTED, provider_id=f"{DAY_FILE}#{d.key[:12]}") for d in batch
    ]
    path = tmp_path / "data" / DAY_FILE
    assert lines(path)[0] == {
        "key": batch[0].key,
        "occurrence": "twice-weekly@2026-03-03T10:00",
        "rule": "twice-weekly",
        "channel": "hook",
        "target": "town",
        "recipient": "138****0001",
        "kind": "sms",
        "title": "",
        "text": batch[0].message.text,
        "params": {},
        "parts": [],
        "artefacts": [],
        "template": "sms/alpha.j2",
        "template_sha": "0" * 64,
        "scheduled_at": "2026-03-03T10:00:00+08:00",
        "written_at": NOW.isoformat(),
    }
    assert [r["key"] for r in lines(path)] == [d.key for d in batch]


def test_phone_numbers_never_reach_the_file(make_outbox: MakeOutbox, tmp_path: Path) -> None:
    batch = [delivery(n) for n in (1, 2)]
    make_outbox().send(batch)
    text = (tmp_path / "data" / DAY_FILE).read_text(encoding="utf-8")
    for d in batch:
        assert d.recipient.address not in text
        assert d.recipient.display in text


def test_folder_is_relative_to_the_campaign(make_outbox: MakeOutbox, tmp_path: Path) -> None:
    make_outbox(folder="out/handoff").send([delivery(1)])
    assert [r["key"] for r in lines(tmp_path / "campaign" / "out" / "handoff" / DAY_FILE)] == [
        delivery(1).key
    ]
    assert not (tmp_path / "data").exists()


def test_batches_append_to_the_same_day_file(make_outbox: MakeOutbox, tmp_path: Path) -> None:
    outbox = make_outbox()
    outbox.send([delivery(1)])
    outbox.send([delivery(2)])
    assert [r["key"] for r in lines(tmp_path / "data" / DAY_FILE)] == [
        delivery(1).key,
        delivery(2).key,
    ]


@pytest.mark.parametrize(("fsync", "calls"), [(True, 1), (False, 0)])
def test_fsync_once_per_batch(
    make_outbox: MakeOutbox, monkeypatch: pytest.MonkeyPatch, fsync: bool, calls: int
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    make_outbox(fsync=fsync).send([delivery(1), delivery(2)])
    assert len(synced) == calls


def test_capabilities(make_outbox: MakeOutbox) -> None:
    assert make_outbox().capabilities == Capabilities(
        kinds=frozenset(MessageKind),
        batch_size=500,
        concurrency=1,
        settle_seconds=0,
        reconciles=True,
    )


# -- reconcile


def test_reconcile_finds_written_keys_and_clears_absent_ones(make_outbox: MakeOutbox) -> None:
    outbox = make_outbox()
    outbox.send([delivery(1), delivery(2)])
    assert outbox.reconcile([delivery(1), delivery(2), delivery(3)]) == [
        Result(delivery(1).key, Status.ACCEPTED),
        Result(delivery(2).key, Status.ACCEPTED),
        Result(delivery(3).key, Status.FAILED, ErrorClass.TRANSIENT, NOT_WRITTEN),
    ]


def test_reconcile_before_any_write(make_outbox: MakeOutbox) -> None:
    assert make_outbox().reconcile([delivery(1)]) == [
        Result(delivery(1).key, Status.FAILED, ErrorClass.TRANSIENT, NOT_WRITTEN)
    ]


def test_a_torn_last_line_is_ignored(make_outbox: MakeOutbox, tmp_path: Path) -> None:
    outbox = make_outbox()
    outbox.send([delivery(1)])
    path = tmp_path / "data" / DAY_FILE
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f'{{"key": "{delivery(2).key}", "text": "写到一半')  # a crash mid-write
    assert outbox.reconcile([delivery(1), delivery(2)]) == [
        Result(delivery(1).key, Status.ACCEPTED),
        Result(delivery(2).key, Status.FAILED, ErrorClass.TRANSIENT, NOT_WRITTEN),
    ]


def half_write(real: Callable[[int, bytes], int]) -> Callable[[int, bytes], int]:
    """An `os.write` that stops half way, as on a disk that fills up mid-write."""
    return lambda fd, data: real(fd, data[: len(data) // 2])


def test_a_torn_line_followed_by_more_writes(
    make_outbox: MakeOutbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = make_outbox()
    with monkeypatch.context() as m:
        m.setattr(os, "write", half_write(os.write))
        with pytest.raises(RetryableError, match="磁盘已满 disk full"):
            outbox.send([delivery(1)])
    outbox.send([delivery(2)])
    assert outbox.reconcile([delivery(1), delivery(2)]) == [
        Result(delivery(1).key, Status.FAILED, ErrorClass.TRANSIENT, NOT_WRITTEN),
        Result(delivery(2).key, Status.ACCEPTED),
    ]


# -- a folder that cannot be written


def test_disk_full_is_retryable(make_outbox: MakeOutbox, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    outbox = make_outbox()
    with monkeypatch.context() as m:
        m.setattr(os, "write", full)
        with pytest.raises(RetryableError) as caught:
            outbox.send([delivery(1)])
    assert str(caught.value) == "磁盘已满 disk full"
    assert (caught.value.error_class, caught.value.retry_after) == ("transient", None)


def test_a_short_write_is_a_full_disk(
    make_outbox: MakeOutbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = make_outbox()
    with monkeypatch.context() as m:
        m.setattr(os, "write", half_write(os.write))
        with pytest.raises(RetryableError) as caught:
            outbox.send([delivery(1), delivery(2)])
    assert str(caught.value) == "磁盘已满 disk full"


def test_folder_under_a_regular_file_is_retryable(make_outbox: MakeOutbox, tmp_path: Path) -> None:
    blocker = tmp_path / "campaign" / "out"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder", encoding="utf-8")
    with pytest.raises(RetryableError) as caught:
        make_outbox(folder="out/handoff").send([delivery(1)])
    assert str(caught.value) == (
        f"写入失败 cannot write {blocker / 'handoff' / DAY_FILE}: Not a directory"
    )


def test_check_passes_for_a_folder_to_be_created(make_outbox: MakeOutbox) -> None:
    assert make_outbox(folder="not/yet/there").check() is None


def test_check_reports_a_folder_under_a_regular_file(
    make_outbox: MakeOutbox, tmp_path: Path
) -> None:
    blocker = tmp_path / "campaign" / "out"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder", encoding="utf-8")
    assert make_outbox(folder="out/handoff").check() is not None
