"""Loading what was loaded before: reused while nothing it read changed, never when it did."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from broadcaster.errors import ConfigError
from broadcaster.model.config import cache as config_cache
from broadcaster.model.config.load import build_campaign, forget_loaded, load_campaign
from tests.conftest import MINI, write_campaign

TODAY = dt.date(2026, 3, 2)
PEOPLE = "name,phone\n甲,13800000001\n乙,13900000002\n"
WITH_FILE = MINI.replace('contacts: ["13800000001", "13900000002"]', "contacts_file: people.csv")


@pytest.fixture(autouse=True)
def _fresh_memory() -> Iterator[None]:
    forget_loaded()
    yield
    forget_loaded()


@pytest.fixture
def no_parsing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if any YAML file or contact list is parsed."""

    def refuse(*args: object) -> None:
        raise AssertionError("parsed although the cache had it")

    monkeypatch.setattr(config_cache, "parse_yaml", refuse)
    monkeypatch.setattr(config_cache, "parse_contacts_csv", refuse)
    yield


def test_a_second_load_reuses_the_first_and_hands_out_its_own_copy(tmp_path: Path) -> None:
    path = write_campaign(tmp_path, WITH_FILE, extra={"people.csv": PEOPLE})
    first = load_campaign(path, today=TODAY)
    second = load_campaign(path, today=TODAY)
    assert second is not first
    assert second.targets is first.targets and second.config is first.config  # reused
    second.warnings.append(first.warnings[0] if first.warnings else None)  # type: ignore[arg-type]
    second.rules.clear()
    third = load_campaign(path, today=TODAY)
    assert third.warnings == first.warnings and len(third.rules) == 2


def test_touching_a_file_without_changing_it_keeps_the_build(tmp_path: Path) -> None:
    path = write_campaign(tmp_path, WITH_FILE, extra={"people.csv": PEOPLE})
    first = load_campaign(path, today=TODAY)
    os.utime(path, (1, 1))
    os.utime(tmp_path / "people.csv", (1, 1))
    assert load_campaign(path, today=TODAY).targets is first.targets


def test_another_day_builds_again(tmp_path: Path) -> None:
    path = write_campaign(tmp_path)
    first = load_campaign(path, today=TODAY)
    assert load_campaign(path, today=TODAY + dt.timedelta(days=1)).targets is not first.targets


def _changes(tmp_path: Path) -> dict[str, object]:
    """Ways a campaign's inputs change, each with what the next load must show."""
    return {
        "main file": lambda: (tmp_path / "schedules.yaml").write_text(
            (tmp_path / "schedules.yaml").read_text(encoding="utf-8").replace("一组群", "第一组群"),
            encoding="utf-8",
        ),
        "contact list": lambda: (tmp_path / "people.csv").write_text(
            PEOPLE + "丙,13700000003\n", encoding="utf-8"
        ),
        "included file": lambda: (tmp_path / "towns" / "east.yaml").write_text(
            "targets:\n  - {id: east, name: 东镇, parent: town, tags: [group]}\n", encoding="utf-8"
        ),
        "file matching an include glob": lambda: (tmp_path / "towns" / "west.yaml").write_text(
            "targets:\n  - {id: west, name: 西镇, parent: town, tags: [group]}\n", encoding="utf-8"
        ),
        "office template": lambda: (tmp_path / "tpl" / "bot" / "alpha.j2").write_text(
            "### {{ topic.name }}!\n{{ target.name }}", encoding="utf-8"
        ),
        "holiday file added": lambda: _holiday_file(tmp_path / "calendar"),
    }


def _holiday_file(folder: Path) -> None:
    folder.mkdir()
    builtin = Path(str(resources.files("broadcaster.model") / "calendar_data" / "2026.yaml"))
    (folder / "2026.yaml").write_bytes(builtin.read_bytes())


@pytest.mark.parametrize(
    ("change", "seen"),
    [
        ("main file", lambda c: c.targets["g1"].name == "第一组群"),
        ("contact list", lambda c: len(c.targets["sms1"].contacts) == 3),
        ("included file", lambda c: c.targets["east"].name == "东镇" and "east" in c.targets),
        ("file matching an include glob", lambda c: "west" in c.targets),
        ("office template", lambda c: any(v.text.startswith("### 甲类诈骗!") for v in c.variants)),
        ("holiday file added", lambda c: c.calendar.years[2026].overridden),
    ],
)
def test_any_change_to_what_was_read_builds_again(tmp_path: Path, change: str, seen) -> None:
    text = WITH_FILE + "include: [towns/*.yaml]\n"
    path = write_campaign(
        tmp_path,
        text,
        extra={
            "people.csv": PEOPLE,
            "towns/east.yaml": "targets:\n  - {id: east, name: 东, parent: town, tags: [group]}\n",
        },
    )
    first = load_campaign(path, today=TODAY)
    assert load_campaign(path, today=TODAY).targets is first.targets
    _changes(tmp_path)[change]()  # type: ignore[operator]
    again = load_campaign(path, today=TODAY)
    assert again.targets is not first.targets
    assert seen(again)


def test_a_config_with_errors_is_refused_again_from_memory(tmp_path: Path) -> None:
    path = write_campaign(tmp_path, MINI.replace("priority: 90", "priority: high"))
    with pytest.raises(ConfigError) as first:
        load_campaign(path, today=TODAY)
    with pytest.raises(ConfigError) as second:
        load_campaign(path, today=TODAY)
    assert [str(i) for i in second.value.issues] == [str(i) for i in first.value.issues]


def test_the_disk_cache_serves_a_new_process(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cache_dir = tmp_path / "var" / "cache"
    text = WITH_FILE.replace("name: 集中宣传,", "name: 集中宣传, theme: routine,")
    path = write_campaign(tmp_path / "c", text, extra={"people.csv": PEOPLE + "坏,12345\n"})
    first, first_issues = build_campaign(path, today=TODAY, cache_dir=cache_dir)
    assert first is not None
    entries = sorted(p.name.split("-")[0] for p in (cache_dir / "config").iterdir())
    assert entries == ["contacts", "yaml"]
    assert stat.S_IMODE((cache_dir / "config").stat().st_mode) == 0o700
    forget_loaded()  # as a new process starts
    request.getfixturevalue("no_parsing")
    second, second_issues = build_campaign(path, today=TODAY, cache_dir=cache_dir)
    assert second is not None
    assert second_issues == first_issues
    assert [str(i) for i in second_issues if i.severity == "error"] == [
        "people.csv:4: phone: 号码无效 not a mainland mobile or landline number: **** (5 digits)"
    ]
    assert second.doc.data == first.doc.data  # dates and all
    assert second.config == first.config
    assert list(second.targets) == list(first.targets)
    assert second.variants == first.variants
    assert second.doc.mark(("phases", 0, "theme")) == first.doc.mark(("phases", 0, "theme"))


CORRUPTIONS = {
    "truncated": lambda text: text[: len(text) // 2],
    "garbage": lambda text: "\x00\x01 not json",
    "payload changed": lambda text: text.replace("一组群", "改组群"),
    "header for other content": lambda text: text.replace(
        '"source_sha256": "', '"source_sha256": "0'
    ),
    "empty": lambda text: "",
    "header only": lambda text: text.partition("\n")[0],
    "payload of the wrong shape": lambda text: _rehash(text, '{"ok": "yes"}'),
}


def _rehash(text: str, payload: str) -> str:
    """An entry whose header matches its (wrong-shaped) payload."""
    head = json.loads(text.partition("\n")[0])
    head["payload_sha256"] = config_cache.sha256(payload.encode())
    return json.dumps(head) + "\n" + payload


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_cache_entry_is_ignored_and_rewritten(tmp_path: Path, corruption: str) -> None:
    cache_dir = tmp_path / "cache"
    path = write_campaign(tmp_path / "c")
    expected = load_campaign(path, today=TODAY, cache_dir=cache_dir)
    (entry,) = (cache_dir / "config").glob("yaml-*.json")
    good = entry.read_text(encoding="utf-8")
    entry.write_text(CORRUPTIONS[corruption](good), encoding="utf-8")
    forget_loaded()
    again = load_campaign(path, today=TODAY, cache_dir=cache_dir)
    assert again.targets["g1"].name == expected.targets["g1"].name == "一组群"
    assert again.doc.data == expected.doc.data
    assert entry.read_text(encoding="utf-8") == good  # parsed again and stored again


def test_an_unwritable_cache_folder_only_costs_speed(tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the folder should be", encoding="utf-8")
    path = write_campaign(tmp_path / "c")
    assert load_campaign(path, today=TODAY, cache_dir=blocker).targets["g1"].name == "一组群"


def test_a_document_using_the_date_marker_itself_is_not_cached(tmp_path: Path) -> None:
    text = MINI.replace("office: 测试派出所", 'office: "\\0date"')
    cache_dir = tmp_path / "cache"
    path = write_campaign(tmp_path / "c", text)
    campaign = load_campaign(path, today=TODAY, cache_dir=cache_dir)
    assert campaign.config.campaign.office == "\x00date"
    assert not list((cache_dir / "config").glob("yaml-*.json"))


def test_the_cache_folder_and_its_missing_parents_are_private(tmp_path: Path) -> None:
    path = write_campaign(tmp_path / "c")
    load_campaign(path, today=TODAY, cache_dir=tmp_path / "state" / "cache")
    for folder in (
        tmp_path / "state",
        tmp_path / "state" / "cache",
        tmp_path / "state" / "cache" / "config",
    ):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    (entry,) = (tmp_path / "state" / "cache" / "config").iterdir()
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
