"""Small campaigns aimed at the local fakes, for engine tests (dispatch, runner, crash)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from broadcaster.engine.app import App
from broadcaster.engine.registry import Registry
from tests.conftest import SECRET_CANARY, TZ

TOKEN_ENV = {"TEST_SECRET_TOKEN": SECRET_CANARY}
DAY = dt.date(2026, 3, 3)  # a Tuesday
TEST_PLUGINS = {"batch": "tests.fakes.batch_gateway:BatchChannel"}


def numbers(n: int) -> list[str]:
    """n distinct valid mainland mobile numbers."""
    return [f"138{i:08d}" for i in range(1, n + 1)]


def write_engine_campaign(
    folder: Path,
    url: str,
    *,
    contacts: int = 3,
    channel: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    rules: list[dict[str, Any]] | None = None,
    phases: bool = True,
    batch: dict[str, Any] | None = None,
) -> Path:
    """A campaign with one SMS webhook channel (the fake) and one outbox, as JSON (valid YAML)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "people.csv").write_text(
        "name,phone\n" + "".join(f"P{i},{n}\n" for i, n in enumerate(numbers(contacts))),
        encoding="utf-8",
    )
    sms = {
        "type": "webhook",
        "kind": "sms",
        "max_length": 70,
        "settings": {
            "url": f"{url}/send",
            "headers": {"Authorization": "Bearer {token}"},
            "secrets": {"token": {"env": "TEST_SECRET_TOKEN"}},
            "success": {"json_path": "code", "equals": "OK", "id_path": "biz_id"},
            "status_url": f"{url}/status/{{key}}",
            "timeout": [2, 2],
            **(settings or {}),
        },
        **(channel or {}),
    }
    config: dict[str, Any] = {
        "campaign": {"id": "engine", "name": "引擎测试", "office": "测试派出所"},
        "default_theme": "routine",
        "themes": {
            "routine": {"name": "日常", "topics": ["order_brushing", "loan", "fake_police"]}
        },
        "targets": [
            {
                "id": "town",
                "name": "测试镇",
                "audience": "villagers",
                "children": [
                    {
                        "id": "people",
                        "name": "短信名单",
                        "tags": ["sms_list"],
                        "contacts_file": "people.csv",
                    },
                    {"id": "g1", "name": "一组群", "tags": ["group"]},
                    {"id": "g2", "name": "二组群", "tags": ["group"]},
                ],
            }
        ],
        "channels": {"sms": sms, "handoff": {"type": "outbox", "kind": "bot"}},
        "rules": rules
        or [
            {
                "id": "blast",
                "channels": ["sms"],
                "targets": {"tags": ["sms_list"]},
                "when": {"dates": [DAY.isoformat()], "at": "10:00"},
            },
            {
                "id": "groups",
                "channels": ["handoff"],
                "targets": {"tags": ["group"]},
                "when": {"weekdays": ["tue", "fri"], "at": "10:00"},
            },
        ],
    }
    if batch is not None:  # the per-number batch gateway (tests/fakes/batch_gateway.py)
        config["channels"]["bulk"] = {"type": "batch", "kind": "sms", "settings": batch}
        config["rules"].append(
            {
                "id": "bulk",
                "channels": ["bulk"],
                "targets": {"tags": ["sms_list"]},
                "when": {"dates": [DAY.isoformat()], "at": "10:00"},
            }
        )
    if phases:
        config["phases"] = [
            {"id": "main", "name": "集中宣传", "start": "2026-01-01", "end": "2026-12-31"}
        ]
    path = folder / "schedules.yaml"
    path.write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def load(
    path: Path,
    environ: dict[str, str] | None = None,
    now: dt.datetime | None = None,
) -> App:
    """The campaign with its channels (the test plugins too), as `run` loads it."""
    return App.load(
        path,
        now=now or dt.datetime.combine(DAY, dt.time(9), tzinfo=TZ),
        environ=TOKEN_ENV if environ is None else environ,
        state_dir=path.parent / "var",
        registry=Registry(extra=TEST_PLUGINS),
    )


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=TZ)
