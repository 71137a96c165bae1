"""Plugin discovery: built-ins, the example plugin's entry points, broken and clashing ones.

`tests/example_plugin/` is a real distribution, installed with pip for these tests (see
`tests/fakes/plugins.py`). Its entry points: `echo` (works), `broken` (its module imports
a missing dependency), `missing_class` (names a class that does not exist) and `outbox`
(clashes with the built-in).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from broadcaster.channel import (
    BaseChannel,
    ChannelContext,
    ErrorClass,
    Message,
    MessageKind,
    Result,
    Status,
)
from broadcaster.channels.outbox import OutboxChannel
from broadcaster.channels.webhook import WebhookChannel
from broadcaster.engine.registry import BUILTINS, PluginInfo, Registry
from tests.conftest import NOW
from tests.fakes.deliveries import delivery
from tests.fakes.plugins import DIST_NAME, example_plugin, example_plugin_site  # noqa: F401

with_example = pytest.mark.usefixtures("example_plugin")


def test_builtins_load_without_entry_points() -> None:
    registry = Registry(include_entry_points=False)
    assert registry.names() == sorted(BUILTINS)
    assert registry.get("outbox") == PluginInfo(
        "outbox", "built-in", BUILTINS["outbox"], cls=OutboxChannel
    )
    assert registry.get("webhook") == PluginInfo(
        "webhook", "built-in", BUILTINS["webhook"], cls=WebhookChannel
    )


@with_example
def test_the_example_plugin_is_found() -> None:
    from broadcaster_example_plugin import EchoChannel

    registry = Registry()
    assert "echo" in registry.names()
    assert registry.get("echo") == PluginInfo(
        "echo", DIST_NAME, "broadcaster_example_plugin:EchoChannel", cls=EchoChannel
    )


@with_example
def test_entry_points_are_ignored_when_asked() -> None:
    assert "echo" not in Registry(include_entry_points=False).names()


@with_example
def test_a_plugin_that_cannot_import_only_disables_itself() -> None:
    registry = Registry()
    assert registry.get("broken") == PluginInfo(
        "broken",
        DIST_NAME,
        "broadcaster_example_plugin.broken:BrokenChannel",
        error="无法导入 cannot import broadcaster_example_plugin.broken:BrokenChannel: "
        "No module named 'broadcaster_example_missing_dependency'",
    )
    assert "broken" in [i.name for i in registry.all()]
    assert "broken" not in registry.names()
    assert {"echo", "outbox", "webhook"} <= set(registry.names())


@with_example
def test_an_entry_point_naming_a_missing_class_only_disables_itself() -> None:
    registry = Registry()
    assert registry.get("missing_class") == PluginInfo(
        "missing_class",
        DIST_NAME,
        "broadcaster_example_plugin:DoesNotExist",
        error="加载失败 failed to load broadcaster_example_plugin:DoesNotExist: "
        "AttributeError(\"module 'broadcaster_example_plugin' has no attribute 'DoesNotExist'\")",
    )
    assert "missing_class" not in registry.names()


@with_example
def test_a_name_clash_with_a_built_in_is_rejected() -> None:
    registry = Registry()
    clashes = [i for i in registry.all() if i.name == "outbox" and i.source == DIST_NAME]
    assert clashes == [
        PluginInfo(
            "outbox",
            DIST_NAME,
            "broadcaster_example_plugin:EchoChannel",
            error="名称冲突 name clashes with the built-in plugin 'outbox'; this one is ignored",
        )
    ]
    builtin = registry.get("outbox")
    assert builtin is not None and builtin.cls is OutboxChannel


@with_example
def test_all_lists_every_plugin_seen() -> None:
    seen = [(i.name, i.source, i.cls is not None) for i in Registry().all()]
    assert [e for e in seen if e[1] in (DIST_NAME, "built-in")] == [
        ("aliyun-sms", "built-in", True),
        ("broken", DIST_NAME, False),
        ("dingtalk-bot", "built-in", True),
        ("echo", DIST_NAME, True),
        ("feishu-bot", "built-in", True),
        ("handoff", "built-in", True),
        ("led", "built-in", True),
        ("loudspeaker", "built-in", True),
        ("missing_class", DIST_NAME, False),
        ("outbox", DIST_NAME, False),
        ("outbox", "built-in", True),
        ("sms-http", "built-in", True),
        ("tencent-sms", "built-in", True),
        ("voice-call", "built-in", True),
        ("webhook", "built-in", True),
        ("wecom-bot", "built-in", True),
    ]


@with_example
def test_the_example_plugin_works_through_the_protocol_alone(tmp_path: Path) -> None:
    """EchoChannel does not subclass BaseChannel; the registry and every member still work."""
    from broadcaster_example_plugin import EchoChannel

    assert not issubclass(EchoChannel, BaseChannel)
    data = {"token": {"env": "ECHO_TOKEN"}, "greeting": "你好"}
    with requests.Session() as session:
        context = ChannelContext("echo1", session, lambda: NOW, tmp_path)
        unset = EchoChannel.Settings.model_validate(data, context={"environ": {}})
        assert EchoChannel(unset, context).check() == (
            "缺少环境变量 environment variable ECHO_TOKEN not set"
        )
        settings = EchoChannel.Settings.model_validate(
            data, context={"environ": {"ECHO_TOKEN": "x"}}
        )
        channel = EchoChannel(settings, context)
        assert channel.check() is None
        assert channel.check_message(delivery(1).message) == []
        assert channel.check_message(Message(MessageKind.SMS, "禁止转发", "sms/x.j2", "0")) == [
            "echo 不接受含“禁止”的文字 echo refuses text containing '禁止'"
        ]
        results = channel.send([delivery(1), delivery(2)])
        assert [(r.status, r.provider_id) for r in results] == [
            (Status.ACCEPTED, "echo-1"),
            (Status.ACCEPTED, "echo-2"),
        ]
        assert channel.reconcile([delivery(2), delivery(3)]) == [
            Result(delivery(2).key, Status.ACCEPTED, provider_id="echo-2"),
            Result(
                delivery(3).key, Status.FAILED, ErrorClass.TRANSIENT, "not echoed; safe to resend"
            ),
        ]
        channel.close()
        assert channel.closed
