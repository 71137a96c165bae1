"""Every member of the contract through the engine, with the example plugin installed by
its entry point: parameters, parts, an artefact, a pulled outcome feed, inbound outcomes,
a schedule check at validate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broadcaster.channel import InboundRequest
from broadcaster.engine.app import App
from broadcaster.engine.clock import VirtualClock
from broadcaster.engine.recovery import Recovery
from broadcaster.errors import ConfigError
from broadcaster.log import DeliveryLog
from broadcaster.model.plan import Planner
from broadcaster.vocab import ErrorClass, Status
from tests.engine.helpers import at

TOKEN = "echo-token-5b1e"
KEY = b"example-key"
LONG = "\n\n".join(f"第{i}段：凡是网上刷单、先垫付再返利的兼职，都是诈骗。" for i in range(1, 6))


def write(folder: Path, *, twice: bool = False, max_per_day: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tpl = folder / "tpl" / "bot"
    tpl.mkdir(parents=True)
    (tpl / "notice.j2").write_text(
        "### {{ target.name }}反诈提醒\n\n" + LONG + "\n\n{{ vars.hotline }}", encoding="utf-8"
    )
    config = {
        "campaign": {"id": "example", "name": "示例", "vars": {"hotline": "96110"}},
        "default_theme": "routine",
        "themes": {"routine": {"name": "日常", "topics": ["order_brushing", "loan"]}},
        "templates": ["tpl"],
        "targets": [
            {
                "id": "town",
                "name": "测试镇",
                "children": [
                    {"id": "g1", "name": "一组群", "tags": ["group"]},
                    {"id": "g2", "name": "二组群", "tags": ["group"]},
                ],
            }
        ],
        "channels": {
            "echo": {
                "type": "echo",
                "kind": "bot",
                "settings": {
                    "token": {"env": "ECHO_TOKEN"},
                    "max_bytes": 160,
                    "max_per_day": max_per_day,
                },
            }
        },
        "rules": [
            {
                "id": "notice",
                "channels": ["echo"],
                "targets": {"tags": ["group"]},
                "template": "notice",
                "when": {"daily": True, "at": ["10:00", "15:00"] if twice else "10:00"},
            }
        ],
    }
    path = folder / "schedules.yaml"
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return path


def load(path: Path) -> App:
    return App.load(
        path,
        now=at(2026, 3, 3, 9),
        environ={"ECHO_TOKEN": TOKEN},
        state_dir=path.parent / "var",
    )


@pytest.fixture
def engine(example_plugin: None, tmp_path: Path) -> Iterator[Any]:
    app = load(write(tmp_path))
    store = DeliveryLog.open(f"sqlite:///{tmp_path}/log.sqlite3", hash_key=KEY)
    clock = VirtualClock(at(2026, 3, 3, 10))
    dispatcher = app.dispatcher(store, KEY, clock=clock, heartbeat=False)
    occurrence = next(Planner(app.campaign).occurrences(at(2026, 3, 3), at(2026, 3, 4)))
    dispatcher.fire(occurrence).wait()
    yield store, dispatcher
    dispatcher.close()
    store.close()


def test_parts_params_and_an_artefact_are_sent_and_logged(engine: Any, tmp_path: Path) -> None:
    store, dispatcher = engine
    rows = sorted(store.deliveries(), key=lambda r: r.target_id)
    assert [r.target_id for r in rows] == ["g1", "g2"]
    echoed = [
        json.loads(line)
        for line in (tmp_path / "var/channels/echo/echo.jsonl").read_text("utf-8").splitlines()
    ]
    for row in rows:
        payload = store.payload(row.payload_sha256)
        parts = payload["parts"]
        assert len(parts) >= 3 and all(len(p.encode()) <= 160 for p in parts)
        assert parts[0].startswith(f"(1/{len(parts)}) ")
        assert payload["params"]["vars.hotline"] == "96110"
        assert payload["params"]["target.name"] in ("一组群", "二组群")
        [card] = payload["artefacts"]
        assert (tmp_path / "var/artefacts/files" / card["sha256"]).is_file()
        lines = [e for e in echoed if e["key"] == row.key]
        assert [e["part"] for e in lines] == list(range(1, len(parts) + 1))  # in order, once
        assert {e["params"]["vars.hotline"] for e in lines} == {"96110"}
        assert {tuple(e["card"]) for e in lines} == {(card["sha256"],)}
        events = store.events(row.key)
        assert [(e.status, e.step) for e in events] == [
            (Status.PLANNED, 0),
            (Status.SENDING, 1),
            (Status.ACCEPTED, len(parts)),
        ]
    assert dispatcher.artefacts.made == 2 and dispatcher.artefacts.reused == 0  # one per text


def test_a_pulled_feed_is_written_page_by_page_and_resumes_from_its_cursor(engine: Any) -> None:
    store, dispatcher = engine
    first, second = store.deliveries()
    receipts = dispatcher.state_dir / "channels/echo/receipts.jsonl"
    receipts.write_text(json.dumps({"provider_id": first.provider_id}) + "\n", encoding="utf-8")
    recovery = Recovery(dispatcher)
    assert recovery.pull_feeds() == 1
    assert store.latest([first.key])[first.key].status is Status.DELIVERED
    assert store.feed_cursor("example:echo") == "1"
    with receipts.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"provider_id": second.provider_id, "status": "failed"}) + "\n")
    assert recovery.pull_feeds() == 1  # only the new line: the cursor was kept with the first
    state = store.latest([second.key])[second.key]
    assert (state.status, state.error_class) == (Status.FAILED, ErrorClass.RECIPIENT)


def request(body: Any, token: str = TOKEN) -> InboundRequest:
    return InboundRequest(
        "POST", "/receipts", {}, {"x-echo-token": token}, json.dumps(body).encode()
    )


def test_inbound_outcomes_are_matched_idempotent_and_refused_when_unknown(engine: Any) -> None:
    store, dispatcher = engine
    first, _ = store.deliveries()
    [route] = dispatcher.channel("echo").routes()
    recovery = Recovery(dispatcher)
    refused = recovery.inbound("echo", route, request([{"provider_id": first.provider_id}], "bad"))
    assert refused.status == 401
    assert store.latest([first.key])[first.key].status is Status.ACCEPTED
    ok = recovery.inbound("echo", route, request([{"provider_id": first.provider_id}]))
    assert ok.status == 200
    assert store.latest([first.key])[first.key].status is Status.DELIVERED
    again = recovery.inbound("echo", route, request([{"provider_id": first.provider_id}]))
    assert again.status == 200  # a repeated callback changes nothing
    assert [e.status for e in store.events(first.key)].count(Status.DELIVERED) == 1
    unknown = recovery.inbound("echo", route, request([{"provider_id": "echo-999"}]))
    assert unknown.status == 404
    assert (
        recovery.inbound(
            "echo",
            route,
            InboundRequest("POST", "/receipts", {}, {"x-echo-token": TOKEN}, b"not json"),
        ).status
        == 400
    )


def test_a_schedule_check_fails_validate_naming_the_channel(
    example_plugin: None, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, twice=True, max_per_day=1))
    assert any(
        i.path == "channels.echo" and "gets 2 sends on" in i.message for i in caught.value.issues
    )
    assert load(write(tmp_path / "ok", twice=False, max_per_day=1)).campaign.id == "example"
