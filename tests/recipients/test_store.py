"""The recipient store: private, lists replaced whole or not at all, opt-outs kept once."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest

from broadcaster.recipients.reader import RecipientRow
from broadcaster.recipients.store import RecipientStore

AT = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


def person(n: int, **kw: object) -> RecipientRow:
    values: dict[str, object] = {
        "line": n + 1,
        "name": f"P{n}",
        "mobile": f"+86138{n:08d}",
        "landline": None,
        "area": "一组",
        "tags": ("老年人",),
    }
    values.update(kw)
    return RecipientRow(**values)  # type: ignore[arg-type]


def test_the_file_is_private_and_lists_round_trip(tmp_path: Path) -> None:
    store = RecipientStore.in_folder(tmp_path / "var")
    assert store.lists() == [] and store.rows("a") is None
    store.replace_list(
        "a", [person(1), person(2, tags=())], source="a.csv", source_sha256="x", at=AT
    )
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.rows("a") == [person(1), person(2, tags=())]
    [info] = store.lists()
    assert (info.name, info.people, info.mobiles, info.landlines) == ("a", 2, 2, 0)


def test_a_failed_import_leaves_the_previous_list_whole(tmp_path: Path) -> None:
    store = RecipientStore.in_folder(tmp_path)
    store.replace_list("a", [person(1), person(2)], source="a.csv", source_sha256="x", at=AT)
    broken = [person(3), person(4, tags=None)]  # fails half-way through the insert
    with pytest.raises(TypeError):
        store.replace_list("a", broken, source="b.csv", source_sha256="y", at=AT)
    assert [r.name for r in store.rows("a") or []] == ["P1", "P2"]
    assert store.lists()[0].source == "a.csv"


def test_opt_outs_are_kept_once_and_change_the_digest(tmp_path: Path) -> None:
    store = RecipientStore.in_folder(tmp_path)
    store.replace_list("a", [person(1)], source="a.csv", source_sha256="x", at=AT)
    before = store.digest()
    assert store.add_optouts(["+8613800000001"], reason="r", source="s", at=AT) == 1
    assert (
        store.add_optouts(["+8613800000001", "+8613900000002"], reason="r", source="s", at=AT) == 1
    )
    assert store.optouts() == {"+8613800000001", "+8613900000002"}
    assert store.digest() != before  # a build that read the store is not reused
