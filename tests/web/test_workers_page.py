"""The send queue of `broadcaster worker` processes on /metrics and the console's channel
page, and `broadcaster workers`; jobs carry delivery keys only, never a number or a text."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner

from broadcaster.cli import cli
from broadcaster.engine.executor import SendTask
from broadcaster.engine.queue import QueueExecutor, queue_stats
from tests.conftest import TZ
from tests.web.conftest import Live, fire

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("log_url", ["postgresql"], indirect=True)
def test_queued_jobs_show_on_metrics_the_channel_page_and_the_workers_command(
    live: Live, log_url: str
) -> None:
    executor = QueueExecutor(live.service.log.connect_url())
    try:
        keys = fire(live, "sms-monthly", dt.datetime(2026, 3, 5, 9, tzinfo=TZ))
        tasks = [SendTask("webtest", "o@1", "receipts", f"e{i}", (k,)) for i, k in enumerate(keys)]
        executor.hand_over(tasks, live.service.log, live.clock.now())
        live.service.log.flush()
    finally:
        executor.shutdown()
    engine = sa.create_engine(log_url)
    with engine.connect() as conn:
        args = [row[0] for row in conn.exec_driver_sql("SELECT args FROM procrastinate_jobs")]
    engine.dispose()
    assert len(args) == 1  # one channel's tasks bundled into one job
    carried = json.dumps(args, ensure_ascii=False)
    assert sorted(k for t in args[0]["tasks"] for k in t["keys"]) == sorted(keys)
    assert "1380000" not in carried and "张三" not in carried  # keys only: no number, no name

    stats = queue_stats(log_url)
    assert (stats.todo, stats.doing, stats.failed, stats.workers) == (1, 0, 0, ())
    metrics = requests.get(live.url + "/metrics", timeout=10).text
    assert 'broadcaster_send_jobs{status="todo"} 1.0' in metrics
    page = live.session("olga").get(live.url + "/channels", timeout=10).text
    assert '工作进程 <span class="en">Workers</span>' in page and "待处理 1 todo" in page

    result = CliRunner().invoke(cli, ["-c", str(live.app.config_path), "workers", "--db", log_url])
    assert result.exit_code == 0, result.output
    assert "待处理 1 todo" in result.output
    assert "没有工作进程 no worker is running" in result.output
