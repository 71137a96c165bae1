"""Run by tests/engine/test_sms_crash.py in a subprocess: fire an aliyun-sms fan-out, or
restart as `run` does and finish it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from broadcaster.engine.clock import SystemClock
from broadcaster.log import DeliveryLog
from broadcaster.model.plan import Planner
from tests.conftest import SECRET_CANARY
from tests.engine.helpers import at, load
from tests.fakes.fixtures import ALIYUN_KEY_ID

KEY = b"sms-crash-key"
ENVIRON = {
    "SMS_ALIYUN_ID": ALIYUN_KEY_ID,
    "SMS_ALIYUN_SECRET": SECRET_CANARY,
    "BROADCASTER_LEASE_SECONDS": "2",
}


def main(path: str, db: str, mode: str) -> None:
    app = load(Path(path), environ=ENVIRON)
    store = DeliveryLog.open(db, hash_key=KEY)
    clock = SystemClock()
    try:
        if mode == "fire":
            dispatcher = app.dispatcher(store, KEY, clock=clock)
            occurrence = next(
                Planner(app.campaign).rule_occurrences(
                    app.campaign.rule("blast"), at(2026, 3, 3), at(2026, 3, 4)
                )
            )
            print("firing", flush=True)
            dispatcher.fire(occurrence).wait()
            dispatcher.close()
            return
        runner = app.runner(store, KEY, clock=clock)
        deadline = time.monotonic() + 1140
        while not runner.claim_leadership():  # the killed process's lease runs out first
            if time.monotonic() > deadline:
                raise SystemExit("the dead process's lease never ran out")
            time.sleep(0.2)
        runner.recover()
        while store.unfinished(app.campaign.id):  # the sweep of `run`, until nothing is left
            if time.monotonic() > deadline:
                raise SystemExit("deliveries still unfinished after 1140 s")
            time.sleep(0.5)
            runner.sweep()
            runner.finish()
        runner.finish(wait=True)
        runner.close()
        print("recovered", flush=True)
    finally:
        store.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
