"""`run` prunes what is past log.retention_days once a day, from the leader's sweep, and the
hash chain still verifies."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from broadcaster.engine.clock import VirtualClock
from broadcaster.log import DeliveryLog, chain
from tests.engine.helpers import DAY, at, load, write_engine_campaign
from tests.log.test_store import record

KEY = b"retention-key"


def test_run_prunes_expired_texts_once_a_day_and_the_chain_holds(tmp_path: Path) -> None:
    path = write_engine_campaign(tmp_path, "http://127.0.0.1:9")
    config = json.loads(path.read_text(encoding="utf-8"))
    config["log"] = {"retention_days": 30}
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    app = load(path)
    url = f"sqlite:///{tmp_path}/log.sqlite3"
    with DeliveryLog.open(url, hash_key=KEY) as store:
        old, recent = at(2026, 1, 20, 10), at(2026, 3, 1, 10)
        store.add_deliveries(
            [
                record(store, "old", scheduled_at=old, text="一月的提醒 January's text"),
                record(store, "recent", scheduled_at=recent),
            ],
            old,
        )
        clock = VirtualClock(at(DAY.year, DAY.month, DAY.day, 9))
        runner = app.runner(store, KEY, clock=clock)
        try:
            assert runner.claim_leadership()
            runner.sweep()
            shown = {k: s.recipient_display for k, s in store.latest(["old", "recent"]).items()}
            assert shown["old"].startswith(chain.PRUNED) and "****" in shown["recent"]
            assert (
                store.text(record(store, "old", text="一月的提醒 January's text").text_sha256)
                is None
            )
            assert store.text(record(store, "recent").text_sha256) is not None
            assert any(kind == "pruned" for _, kind, _ in runner.activity.lines)
            runner.sweep()  # the same day: no second prune
            clock.set(at(DAY.year, DAY.month, DAY.day + 1, 9))
            runner.sweep()  # the next day: one more (nothing left to drop)
        finally:
            runner.close()
        found = store.verify()
        assert found.ok, found.broken
    with sa.create_engine(url).connect() as conn:
        prunes = conn.exec_driver_sql("SELECT cutoff, actor, displays FROM log_prunes").all()
    assert [(p[1], p[2]) for p in prunes] == [("run", 1), ("run", 0)]
    # local midnight 30 days before each day, stored in UTC
    assert [p[0] for p in prunes] == ["2026-01-31 16:00:00.000000", "2026-02-01 16:00:00.000000"]
