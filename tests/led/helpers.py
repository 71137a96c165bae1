"""Putting LED deliveries in a log the way `run` does: the rule fired through a real
dispatcher, on a manual clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from broadcaster.engine.app import App
from broadcaster.engine.clock import ManualClock
from broadcaster.engine.registry import Registry
from broadcaster.log import DeliveryLog
from broadcaster.model.plan import Planner

TOKEN = "tok-7f3a9c21e5"
ENV = {"TEST_SECRET_DOOR": TOKEN, "TEST_SECRET_BRIDGE": "S3cr3t-Token-XYZ"}


def load(path: Path, now: dt.datetime) -> App:
    return App.load(path, now=now, environ=ENV, state_dir=path.parent / "var", registry=Registry())


def fire(app: App, store: DeliveryLog, key: bytes, rule_id: str, *times: dt.datetime) -> list[str]:
    """Fire the rule at each time; the delivery keys, in order."""
    clock = ManualClock(times[0])
    dispatcher = app.dispatcher(store, key, clock=clock, heartbeat=False)
    keys: list[str] = []
    try:
        spec = app.campaign.rule(rule_id)
        for at in times:
            clock.set(at)
            [occurrence] = Planner(app.campaign).rule_occurrences(
                spec, at, at + dt.timedelta(minutes=1)
            )
            handle = dispatcher.fire(occurrence)
            handle.wait()
            keys += handle.keys
    finally:
        dispatcher.close()
    return keys
