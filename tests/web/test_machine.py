"""The machine routes: /healthz, /metrics, the OpenAPI document (fuzzed with schemathesis)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from broadcaster.web.settings import WebOptions
from tests.web.conftest import NOW, Live, fire
from tests.web.test_hooks import SMS_AT, post


def test_health_says_what_is_wrong(live: Live) -> None:
    r = requests.get(live.url + "/healthz", timeout=10)
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "degraded"
    assert body["log"]["ok"] is True
    assert body["scheduler"] == {"ok": False, "detail": "未运行 no scheduler has run on this log"}
    assert body["calendar"]["ok"] is True
    # a scheduler takes its lease: healthy
    log = live.service.log
    now = live.clock.now()
    log.acquire_lease(
        "scheduler:webtest", "run-1", now=now, until=now + dt.timedelta(seconds=60), info=""
    )
    r = requests.get(live.url + "/healthz", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    live.clock.advance(61)  # the scheduler died: its lease ran out
    body = requests.get(live.url + "/healthz", timeout=10).json()
    assert body["scheduler"]["ok"] is False and "已停止" in body["scheduler"]["detail"]


def test_health_fails_when_next_years_holidays_are_missing_after_october(
    live_factory: Callable[..., Live],
) -> None:
    live = live_factory(now=dt.datetime(2026, 10, 2, 9, 0, tzinfo=NOW.tzinfo))
    body = requests.get(live.url + "/healthz", timeout=10).json()
    assert body["calendar"]["ok"] is False
    assert "2027" in body["calendar"]["detail"]


def test_metrics_count_deliveries_queue_errors_and_receipt_lag(live: Live) -> None:
    fire(live, "sms-monthly", SMS_AT)
    live.clock.advance(90)
    assert post(live, [{"provider_id": "echo-1", "status": "delivered"}]).status_code == 200
    assert post(live, [{"provider_id": "echo-2", "status": "failed"}]).status_code == 200
    text = requests.get(live.url + "/metrics", timeout=10).text
    assert 'broadcaster_deliveries{channel="receipts",status="delivered"} 1.0' in text
    assert 'broadcaster_deliveries{channel="receipts",status="accepted"} 1.0' in text
    assert 'broadcaster_deliveries{channel="receipts",status="failed"} 1.0' in text
    assert 'broadcaster_provider_errors{channel="receipts",error_class="recipient"} 1.0' in text
    assert 'broadcaster_receipt_lag_seconds_bucket{channel="receipts",le="60"} 0.0' in text
    assert 'broadcaster_receipt_lag_seconds_bucket{channel="receipts",le="300"} 1.0' in text
    assert 'broadcaster_receipt_lag_seconds_sum{channel="receipts"} 90.0' in text
    assert "broadcaster_log_up 1.0" in text


def test_metrics_count_the_queue(live: Live) -> None:
    from broadcaster.log import DeliveryRecord

    log = live.service.log
    now = live.clock.now()
    text = "排队 queued"
    import hashlib

    sha = hashlib.sha256(text.encode()).hexdigest()
    log.add_deliveries(
        [
            DeliveryRecord(
                key=f"q{i}",
                campaign="webtest",
                occurrence_id="o@1",
                rule_id="r",
                channel_id="handoff",
                endpoint="e",
                target_id="g1",
                recipient_display="一组群",
                recipient_hash=f"h{i}",
                kind="bot",
                template="t",
                template_sha="s",
                text_sha256=sha,
                text=text,
                scheduled_at=now,
            )
            for i in range(4)
        ],
        now,
    )
    body = requests.get(live.url + "/metrics", timeout=10).text
    assert 'broadcaster_queue_depth{channel="handoff"} 4.0' in body


def test_the_openapi_document_lists_every_machine_route_and_no_page(live: Live) -> None:
    doc = requests.get(live.url + "/openapi.json", timeout=10).json()
    assert set(doc["paths"]) == {"/healthz", "/metrics", "/hooks/receipts/receipts"}
    hook = doc["paths"]["/hooks/receipts/receipts"]["post"]
    assert hook["summary"].startswith("echo 回执")
    assert {"400", "404", "413", "default"} <= set(hook["responses"])
    assert "ErrorBody" in doc["components"]["schemas"]


def test_no_docs_page_loads_assets_from_the_internet(live: Live) -> None:
    assert requests.get(live.url + "/docs", timeout=10).status_code in (303, 404)


def test_machine_routes_survive_fuzzing(live: Live) -> None:
    """Every operation of the OpenAPI document, with valid and invalid bodies, headers and
    queries: no 500, no status or body outside the document."""
    fire(live, "sms-monthly", SMS_AT)
    now = live.clock.now()  # a scheduler runs: /healthz answers 503 only when degraded
    live.service.log.acquire_lease(
        "scheduler:webtest", "run-1", now=now, until=now + dt.timedelta(hours=1), info=""
    )
    schema = schemathesis.openapi.from_url(live.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {
        "GET /healthz",
        "GET /metrics",
        "POST /hooks/receipts/receipts",
    }
    for op in operations:
        modes = [GenerationMode.POSITIVE]
        if op.method.upper() == "POST":  # a GET without parameters has no invalid form
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(
                max_examples=40,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def run(case: schemathesis.Case) -> None:
                case.call_and_validate()

            run()


def test_small_body_limit_applies_to_machine_routes(live_factory: Callable[..., Live]) -> None:
    live = live_factory(WebOptions(port=0, max_body=100))
    r = post(live, [{"provider_id": "echo-1", "status": "delivered", "pad": "x" * 200}])
    assert r.status_code == 413
    assert r.json()["错误"] == "请求内容过大 the request is too large"
