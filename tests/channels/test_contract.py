"""One contract suite for every channel plugin, built-in or installed.

The suite runs once per plugin that `Registry()` can load when the tests are collected
(built-ins and every installed `broadcaster.channels` entry point), plus the example
plugin in `tests/example_plugin/` (installed for its tests by the `example_plugin`
fixture). A new plugin is tested without editing this file.

Each plugin needs a settings dict that makes it ready, and somewhere harmless to send:

* built-ins: the `EXAMPLES` table below (webhook aimed at the fake gateway, outbox
  writing under `tmp_path`);
* any other plugin declares a class attribute `contract_example: dict` with such a
  settings dict. Secrets are written as `{env: NAME}`: the suite sets each named
  variable to a distinctive value (and checks it never shows). The channel gets
  `tmp_path/"data"` as data_dir and `tmp_path` as base_dir; base URLs must point at
  something local. A plugin without `contract_example` is skipped, with that reason.

Every channel gets exactly the context the engine gives it (`channel_context`): a real
`requests.Session` shared by its threads, which `send()` may be called from at once.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import ValidationError

from broadcaster.channel import (
    Capabilities,
    Channel,
    ChannelContext,
    ChannelSettings,
    Delivery,
    InboundReply,
    InboundRequest,
    InboundRoute,
    MessageKind,
    OutcomePage,
    Result,
    ScheduledSend,
    Status,
)
from broadcaster.engine.artefacts import FileArtefactStore
from broadcaster.engine.http import channel_context
from broadcaster.engine.registry import Registry
from tests.fakes.deliveries import delivery

EXAMPLE_PLUGIN = "echo"  # from tests/example_plugin, installed by the example_plugin fixture


def secret_value(env: str) -> str:
    """The distinctive value the suite gives the secret variable `env`."""
    return f"contract-secret-{env}-9d2f"


def webhook_example(request: pytest.FixtureRequest) -> dict[str, Any]:
    server = request.getfixturevalue("webhook_server")
    server.token = secret_value("CONTRACT_WEBHOOK_TOKEN")
    return {
        "url": f"{server.url}/send",
        "headers": {"Authorization": "Bearer {token}"},
        "secrets": {"token": {"env": "CONTRACT_WEBHOOK_TOKEN"}},
        "success": {"json_path": "code", "equals": "OK", "id_path": "biz_id"},
        "timeout": [1, 5],
    }


def sms_http_example(request: pytest.FixtureRequest) -> dict[str, Any]:
    server = request.getfixturevalue("sms_gateway")
    server.password = secret_value("CONTRACT_SMS_PASSWORD")
    return {
        "url": f"{server.url}/cgi-bin/sendsms",
        "method": "GET",
        "query": {
            "username": "office",
            "password": "{{ secrets.password }}",
            "to": "{{ to }}",
            "text": "{{ text }}",
            "ref": "{{ key }}",
        },
        "secrets": {"password": {"env": "CONTRACT_SMS_PASSWORD"}},
        "sign_name": "反诈中心",
        "batch_size": 5,
        "answers": "lines",
        "success": {"regex": r"^OK (?P<id>\S+)"},
        "error_regex": r"^ERR (?P<code>\S+)",
        "timeout": [1, 5],
    }


def aliyun_sms_example(request: pytest.FixtureRequest) -> dict[str, Any]:
    fake = request.getfixturevalue("aliyun_fake")
    fake.keys = {secret_value("CONTRACT_ALIYUN_ID"): secret_value("CONTRACT_ALIYUN_SECRET")}
    return {
        "access_key_id": {"env": "CONTRACT_ALIYUN_ID"},
        "access_key_secret": {"env": "CONTRACT_ALIYUN_SECRET"},
        "sign_name": "反诈中心",
        "template_code": "SMS_10001",
        "endpoint": f"{fake.url}/",
        "timeout": [1, 5],
    }


def tencent_sms_example(request: pytest.FixtureRequest) -> dict[str, Any]:
    fake = request.getfixturevalue("tencent_fake")
    fake.keys = {secret_value("CONTRACT_TENCENT_ID"): secret_value("CONTRACT_TENCENT_KEY")}
    return {
        "secret_id": {"env": "CONTRACT_TENCENT_ID"},
        "secret_key": {"env": "CONTRACT_TENCENT_KEY"},
        "sdk_app_id": fake.app_id,
        "sign_name": "反诈中心",
        "template_id": "1110",
        "endpoint": f"{fake.url}/",
        "timeout": [1, 5],
    }


def voice_call_example(request: pytest.FixtureRequest) -> dict[str, Any]:
    fake = request.getfixturevalue("aliyun_fake")
    fake.keys = {secret_value("CONTRACT_VOICE_ID"): secret_value("CONTRACT_VOICE_SECRET")}
    return {
        "provider": "aliyun",
        "key_id": {"env": "CONTRACT_VOICE_ID"},
        "key_secret": {"env": "CONTRACT_VOICE_SECRET"},
        "template": "TTS_10001",
        "endpoint": f"{fake.url}/",
        "timeout": [1, 5],
    }


def bot_example(fixture: str) -> Callable[[pytest.FixtureRequest], dict[str, Any]]:
    """A group-bot channel aimed at its fake, which knows the bots the suite's deliveries
    address (their numbers stand in for bot keys)."""

    def example(request: pytest.FixtureRequest) -> dict[str, Any]:
        server = request.getfixturevalue(fixture)
        for n in range(1, 17):
            server.add_bot(delivery(n).recipient.address)
        return {"base_url": server.url, "timeout": [1, 5]}

    return example


# name -> settings dict for a ready channel with a harmless destination
EXAMPLES: dict[str, Callable[[pytest.FixtureRequest], dict[str, Any]]] = {
    "aliyun-sms": aliyun_sms_example,
    "tencent-sms": tencent_sms_example,
    "voice-call": voice_call_example,
    "outbox": lambda request: {"folder": "outbox"},
    "webhook": webhook_example,
    "sms-http": sms_http_example,
    "wecom-bot": bot_example("wecom_fake"),
    "dingtalk-bot": bot_example("dingtalk_fake"),
    "feishu-bot": bot_example("feishu_fake"),
}


def plugin_names() -> list[str]:
    names = Registry().names()
    return sorted({*names, EXAMPLE_PLUGIN})


@dataclass
class Case:
    """One plugin under test, with a ready channel instance."""

    name: str
    cls: type[Channel]
    data: dict[str, Any]  # the settings dict
    environ: dict[str, str]  # every secret's variable, set
    channel: Channel
    context: ChannelContext
    artefacts: FileArtefactStore

    def settings(self, data: dict[str, Any]) -> ChannelSettings:
        return self.cls.Settings.model_validate(data, context={"environ": self.environ})

    def batch(self, size: int) -> list[Delivery]:
        kinds = self.channel.capabilities.kinds
        kind = next(k for k in MessageKind if k in kinds)
        return [delivery(n, channel=self.name, kind=kind) for n in range(1, size + 1)]


@pytest.fixture(params=plugin_names())
def case(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    clock: Callable[[], dt.datetime],
) -> Iterator[Case]:
    name: str = request.param
    if name == EXAMPLE_PLUGIN:
        request.getfixturevalue("example_plugin")
    info = Registry().get(name)
    assert info is not None and info.cls is not None, info
    cls = info.cls
    if name in EXAMPLES:
        data = EXAMPLES[name](request)
    elif isinstance(getattr(cls, "contract_example", None), dict):
        data = dict(cls.contract_example)  # type: ignore[attr-defined]
    else:
        pytest.skip(f"{name}: declare `contract_example: dict` on {cls.__name__} to be tested")
    unset = cls.Settings.model_validate(data, context={"environ": {}})
    environ = {secret.env: secret_value(secret.env) for _, secret in unset.secret_fields()}
    settings = cls.Settings.model_validate(data, context={"environ": environ})
    context = channel_context(
        name, concurrency=4, clock=clock, data_dir=tmp_path / "data", base_dir=tmp_path
    )
    channel = cls(settings, context)
    try:
        yield Case(name, cls, data, environ, channel, context, FileArtefactStore(tmp_path / "a"))
    finally:
        channel.close()
        context.http.close()


def test_name_is_the_registry_name(case: Case) -> None:
    assert case.cls.name == case.name
    assert case.name in Registry().names()


def test_meets_the_protocol(case: Case) -> None:
    assert isinstance(case.channel, Channel)


def test_settings_forbid_unknown_keys(case: Case) -> None:
    assert issubclass(case.cls.Settings, ChannelSettings)
    with pytest.raises(ValidationError) as caught:
        case.settings({**case.data, "no_such_key": 1})
    assert [(e["type"], e["loc"]) for e in caught.value.errors()] == [
        ("extra_forbidden", ("no_such_key",))
    ]


def test_secrets_are_masked(case: Case) -> None:
    settings = case.settings(case.data)
    secrets = settings.secret_fields()
    assert sorted(s.env for _, s in secrets) == sorted(case.environ)
    shown = [repr(settings), str(settings), settings.model_dump_json()]
    for field, secret in secrets:
        assert secret.value is not None, field
        assert [text for text in shown if secret.value in text] == [], field


def test_capabilities(case: Case) -> None:
    caps = case.channel.capabilities
    assert isinstance(caps, Capabilities)
    assert caps.kinds and caps.kinds <= set(MessageKind)
    assert caps.batch_size >= 1
    assert caps.concurrency >= 1


def test_check_answers_none_or_a_reason(case: Case) -> None:
    answer = case.channel.check()
    assert answer is None or (isinstance(answer, str) and answer)


def test_check_message_answers_a_list_of_problems(case: Case) -> None:
    problems = case.channel.check_message(case.batch(1)[0].message)
    assert isinstance(problems, list)
    assert all(isinstance(p, str) for p in problems)


def test_endpoint_is_a_string(case: Case) -> None:
    endpoint = case.channel.endpoint(case.batch(1)[0].recipient)
    assert isinstance(endpoint, str) and endpoint


def test_send_answers_once_per_delivery(case: Case) -> None:
    batch = case.batch(case.channel.capabilities.batch_size)
    results = case.channel.send(batch)
    assert all(isinstance(r, Result) for r in results)
    assert Counter(r.key for r in results) == Counter(d.key for d in batch)
    assert {r.status for r in results} <= {Status.ACCEPTED, Status.DELIVERED}, [
        (r.status, r.reason) for r in results if r.status not in (Status.ACCEPTED, Status.DELIVERED)
    ]


def test_reconcile_answers_only_for_pending_keys(case: Case) -> None:
    sent, never_sent = case.batch(2)
    case.channel.send([sent])
    results = case.channel.reconcile([sent, never_sent])
    assert all(isinstance(r, Result) for r in results)
    keys = [r.key for r in results]
    assert len(keys) == len(set(keys))
    assert set(keys) <= {sent.key, never_sent.key}
    assert all(r.status is not Status.ACCEPTED for r in results if r.key == never_sent.key)


def test_the_session_is_a_real_requests_session(case: Case) -> None:
    """What the contract declares: headers, auth, mount, every verb; shared by threads."""
    http = case.context.http
    assert isinstance(http, requests.Session)
    assert callable(http.put) and callable(http.delete) and callable(http.mount)
    http.headers.update({"X-Contract": "1"})


def test_send_from_several_threads_at_once(case: Case) -> None:
    """send() may run in up to `concurrency` threads at once: one result per delivery each."""
    threads = min(4, case.channel.capabilities.concurrency)
    batches = [
        case.batch(threads * 2)[i::threads] for i in range(threads)
    ]  # distinct deliveries per thread
    results: list[list[Result]] = [[] for _ in batches]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = case.channel.send(batches[i])
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    for batch, answers in zip(batches, results, strict=True):
        assert Counter(r.key for r in answers) == Counter(d.key for d in batch)


def test_prepare_keeps_the_text_and_fits_parts(case: Case) -> None:
    message = case.batch(1)[0].message
    prepared = case.channel.prepare(message, case.artefacts)
    assert prepared.text == message.text
    assert prepared.kind is message.kind
    assert all(isinstance(p, str) and p for p in prepared.parts)
    for artefact in prepared.artefacts:
        assert artefact.path.is_file() and artefact.size == artefact.path.stat().st_size


def test_check_schedule_answers_a_list_of_problems(case: Case) -> None:
    d = case.batch(1)[0]
    sends = [ScheduledSend(d.scheduled_at, d.rule_id, "town", "测试镇", d.message)]
    problems = case.channel.check_schedule(sends)
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)


def test_pull_outcomes_is_none_or_a_page(case: Case) -> None:
    page = case.channel.pull_outcomes(None)
    assert page is None or isinstance(page, OutcomePage)


def test_routes_refuse_garbage_without_raising(case: Case) -> None:
    routes = case.channel.routes()
    assert all(isinstance(r, InboundRoute) for r in routes)
    for route in routes:
        assert route.path.startswith("/")
        assert set(route.methods) <= {"GET", "POST", "PUT", "HEAD"}
        garbage = InboundRequest(route.methods[0], route.path, {}, {}, b"\x00 not json")
        reply = route.handler(garbage)
        assert isinstance(reply, InboundReply)
        assert 400 <= reply.status < 500 and not reply.outcomes
