"""Channels against their plugins: secret per-target addresses, what validate refuses, and
batches grouped by message for providers that send one template per call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from broadcaster.engine.clock import VirtualClock
from broadcaster.errors import ConfigError
from broadcaster.log import DeliveryLog
from broadcaster.model.plan import Planner
from tests.conftest import SECRET_CANARY
from tests.engine.helpers import at, load, write_engine_campaign
from tests.fakes.batch_gateway import BatchGatewayFake
from tests.fakes.http import serving
from tests.fakes.webhook_server import WebhookFake

KEY = b"channels-key"


def with_bot(path: Path, url: str, addresses: dict[str, Any]) -> Path:
    """Add a webhook "bot" whose URL carries each group's own key, and a rule for it."""
    config = json.loads(path.read_text(encoding="utf-8"))
    config["channels"]["bot"] = {
        "type": "webhook",
        "kind": "bot",
        "settings": {
            "url": url + "/send?key={address}",
            "headers": {"Authorization": "Bearer {token}"},
            "secrets": {"token": {"env": "TEST_SECRET_TOKEN"}},
            "success": {"json_path": "code", "equals": "OK"},
        },
    }
    groups = config["targets"][0]["children"][1:]
    for group in groups:
        if group["id"] in addresses:
            group["address"] = {"bot": addresses[group["id"]]}
    config["rules"].append(
        {
            "id": "bots",
            "channels": ["bot"],
            "targets": {"tags": ["group"]},
            "when": {"weekdays": ["tue"], "at": "10:00"},
        }
    )
    path.write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text("utf-8").splitlines(), 1) if text in line)


def test_a_target_without_its_address_is_an_error_naming_target_and_line(
    tmp_path: Path, webhook_server: WebhookFake
) -> None:
    path = write_engine_campaign(tmp_path, webhook_server.url)
    with_bot(path, webhook_server.url, {"g1": {"env": "BOT_KEY_G1"}})
    with pytest.raises(ConfigError) as caught:
        load(path, environ={"TEST_SECRET_TOKEN": SECRET_CANARY, "BOT_KEY_G1": "k1"})
    [issue] = caught.value.issues
    assert issue.line == line_of(path, '"id": "g2"') - 1  # the target's mapping opens there
    assert issue.path == "targets[0].children[2].address"
    assert "target 'g2' (二组群) has no address for channel 'bot'" in issue.message


def test_an_address_from_the_environment_is_used_and_never_shown(
    tmp_path: Path, webhook_server: WebhookFake
) -> None:
    path = write_engine_campaign(tmp_path, webhook_server.url)
    with_bot(
        path,
        webhook_server.url,
        {"g1": {"env": "BOT_KEY_G1"}, "g2": {"key": {"env": "BOT_KEY_G2"}, "secret": "plain"}},
    )
    environ = {
        "TEST_SECRET_TOKEN": SECRET_CANARY,
        "BOT_KEY_G1": "key-g1-Qx",
        "BOT_KEY_G2": "key-g2-Qy",
    }
    app = load(path, environ=environ)
    store = DeliveryLog.open(f"sqlite:///{tmp_path}/log.sqlite3", hash_key=KEY)
    dispatcher = app.dispatcher(store, KEY, clock=VirtualClock(at(2026, 3, 3, 10)), heartbeat=False)
    try:
        occurrence = next(
            Planner(app.campaign).rule_occurrences(
                app.campaign.rule("bots"), at(2026, 3, 3), at(2026, 3, 4)
            )
        )
        assert dispatcher.fire(occurrence).wait().counts == {"accepted": 2}
        rows = store.deliveries(channel="bot")
    finally:
        dispatcher.close()
        store.close()
    assert sorted(r.query["key"][0] for r in webhook_server.sends) == ["key-g1-Qx", "key-g2-Qy"]
    shown = repr(rows) + repr(app.campaign.targets["g1"]) + "".join(r.endpoint for r in rows)
    assert "key-g1-Qx" not in shown and "key-g2-Qy" not in shown
    assert {r.recipient_display for r in rows} == {"一组群", "二组群"}


def test_a_missing_address_variable_disables_an_auto_channel_or_fails(
    tmp_path: Path, webhook_server: WebhookFake
) -> None:
    path = write_engine_campaign(tmp_path, webhook_server.url)
    with_bot(path, webhook_server.url, {"g1": {"env": "BOT_KEY_G1"}, "g2": {"env": "BOT_KEY_G2"}})
    environ = {"TEST_SECRET_TOKEN": SECRET_CANARY, "BOT_KEY_G1": "k1"}
    with pytest.raises(ConfigError) as caught:
        load(path, environ=environ)
    assert [i.message for i in caught.value.issues] == [
        "缺少环境变量 environment variable BOT_KEY_G2 is not set"
    ]
    config = json.loads(path.read_text(encoding="utf-8"))
    config["channels"]["bot"]["enabled"] = "auto"
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    bot = load(path, environ=environ).channels["bot"]
    assert not bot.enabled
    assert bot.disabled_reason == "缺少环境变量 environment variable BOT_KEY_G2 not set"


def test_batches_carry_one_message_each_when_the_provider_asks(
    tmp_path: Path, webhook_server: WebhookFake
) -> None:
    """Two audiences get two texts: a provider sending one template per call gets two calls."""
    for gateway in serving(BatchGatewayFake()):
        path = write_engine_campaign(
            tmp_path, webhook_server.url, contacts=6, batch={"url": gateway.url, "batch_size": 100}
        )
        config = json.loads(path.read_text(encoding="utf-8"))
        people = config["targets"][0]["children"][0]
        (tmp_path / "elders.csv").write_text(
            "name,phone\nE1,13900000001\nE2,13900000002\n", encoding="utf-8"
        )
        config["targets"][0]["children"].append(
            {
                **people,
                "id": "elders",
                "name": "老年人名单",
                "contacts_file": "elders.csv",
                "audience": "elderly",
            }
        )
        path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
        for by_message, calls in ((False, 1), (True, 2)):
            app = load(path)
            import dataclasses

            bulk = app.channels["bulk"]
            app.channels["bulk"] = dataclasses.replace(
                bulk,
                capabilities=dataclasses.replace(bulk.capabilities, batch_by_message=by_message),
            )
            store = DeliveryLog.open(f"sqlite:///{tmp_path}/log-{by_message}.sqlite3", hash_key=KEY)
            dispatcher = app.dispatcher(
                store, KEY, clock=VirtualClock(at(2026, 3, 3, 10)), heartbeat=False
            )
            before = gateway.calls
            try:
                occurrence = next(
                    Planner(app.campaign).rule_occurrences(
                        app.campaign.rule("bulk"), at(2026, 3, 3), at(2026, 3, 4)
                    )
                )
                assert dispatcher.fire(occurrence).wait().counts == {"accepted": 8}
                texts = {r.text_sha256 for r in store.deliveries(channel="bulk")}
            finally:
                dispatcher.close()
                store.close()
            assert len(texts) == 2  # the elders' variant differs
            assert gateway.calls - before == calls
