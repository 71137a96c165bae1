"""Prometheus metrics at /metrics, read from the log when scraped (cached briefly).

broadcaster_deliveries{channel, status}                  deliveries by current status
broadcaster_queue_depth{channel}                         unfinished deliveries
broadcaster_provider_errors{channel, error_class}        failed/unknown in the last 24 h
broadcaster_receipt_lag_seconds{channel} (histogram)     accepted -> delivered, last hour
broadcaster_inbound_requests_total{channel, scope, code} requests to plugin routes
broadcaster_log_up                                       1 when the log answers
broadcaster_send_jobs{status}                            queued send jobs (`broadcaster worker`)
broadcaster_send_job_wait_seconds                        age of the oldest job waiting
broadcaster_worker_deliveries_per_second{worker}         each worker's rate, last 5 minutes
broadcaster_worker_heartbeat_age_seconds{worker}         since each worker's last heartbeat
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from broadcaster.vocab import UNFINISHED
from broadcaster.web import queries
from broadcaster.web.tally import StatusTally

if TYPE_CHECKING:
    from broadcaster.web.service import WebService

__all__ = ["LAG_BUCKETS", "Metrics"]

LAG_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0)
CACHE_SECONDS = 5.0  # scrapes closer together than this share one reading of the log


class _LogCollector(Collector):
    def __init__(self, service: WebService):
        self.service = service
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None
        self.tally = StatusTally()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > CACHE_SECONDS:
                self._cached = (time.monotonic(), self._read())
            yield from self._cached[1]

    def _read(self) -> list[Metric]:
        now = self.service.clock.now()
        up = GaugeMetricFamily("broadcaster_log_up", "1 when the delivery log answers")
        try:
            counts, depth, errors, lags = self.service.log.read(
                lambda conn: (
                    self.tally.counts(conn),
                    queries.queue_depth(conn, UNFINISHED),
                    queries.channel_errors(conn, now - dt.timedelta(hours=24)),
                    queries.receipt_lags(conn, now - dt.timedelta(hours=1)),
                )
            )
        except Exception:
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        deliveries = GaugeMetricFamily(
            "broadcaster_deliveries",
            "Deliveries by current status",
            labels=["channel", "status"],
        )
        for (channel, status), n in sorted(counts.items()):
            deliveries.add_metric([channel, status], n)
        queue = GaugeMetricFamily(
            "broadcaster_queue_depth",
            "Unfinished deliveries (planned, deferred, sending, interrupted, unknown)",
            labels=["channel"],
        )
        for channel, n in depth:
            queue.add_metric([channel], n)
        failed = GaugeMetricFamily(
            "broadcaster_provider_errors",
            "Deliveries failed, unknown or unresolved in the last 24 hours, by error class",
            labels=["channel", "error_class"],
        )
        for channel, error_class, n in errors:
            failed.add_metric([channel, error_class], n)
        lag = HistogramMetricFamily(
            "broadcaster_receipt_lag_seconds",
            "Seconds from accepted to delivered, deliveries delivered in the last hour",
            labels=["channel"],
        )
        per_channel: dict[str, list[float]] = defaultdict(list)
        for channel, seconds in lags:
            per_channel[channel].append(seconds)
        for channel, values in sorted(per_channel.items()):
            values.sort()
            buckets = [(f"{b:g}", float(bisect.bisect_right(values, b))) for b in LAG_BUCKETS] + [
                ("+Inf", float(len(values)))
            ]
            lag.add_metric([channel], buckets, sum_value=sum(values))
        return [up, deliveries, queue, failed, lag, *self._workers()]

    def _workers(self) -> list[Metric]:
        """The send queue's figures, when sends run on worker processes (PostgreSQL)."""
        from broadcaster.web.console.channels import worker_queue

        stats = worker_queue(self.service.log)
        if stats is None:
            return []
        jobs = GaugeMetricFamily("broadcaster_send_jobs", "Queued send jobs", labels=["status"])
        for status, n in (("todo", stats.todo), ("doing", stats.doing), ("failed", stats.failed)):
            jobs.add_metric([status], n)
        wait = GaugeMetricFamily(
            "broadcaster_send_job_wait_seconds", "Age of the oldest send job waiting"
        )
        wait.add_metric([], stats.oldest_seconds)
        rate = GaugeMetricFamily(
            "broadcaster_worker_deliveries_per_second",
            "Deliveries each worker finished per second, last 5 minutes",
            labels=["worker"],
        )
        beat = GaugeMetricFamily(
            "broadcaster_worker_heartbeat_age_seconds",
            "Seconds since each worker's last heartbeat",
            labels=["worker"],
        )
        for w in stats.workers:
            rate.add_metric([str(w.id)], w.deliveries_recent / stats.window_seconds)
            beat.add_metric([str(w.id)], w.heartbeat_seconds)
        return [jobs, wait, rate, beat]


class Metrics:
    """The service's registry: log-derived gauges and its own request counters."""

    def __init__(self, service: WebService):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_LogCollector(service))
        self.inbound = Counter(
            "broadcaster_inbound_requests",
            "Requests to plugin routes by channel, scope and answer",
            ["channel", "scope", "code"],
            registry=self.registry,
        )

    def hook(self, channel: str, scope: str, code: int) -> None:
        self.inbound.labels(channel, scope, str(code)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
