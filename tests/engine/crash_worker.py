"""Run by tests/engine/test_crash.py in a subprocess: fire a fan-out, or restart as `run` does."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from broadcaster.engine.clock import SystemClock
from broadcaster.log import DeliveryLog
from broadcaster.model.plan import Planner
from tests.engine.helpers import TOKEN_ENV, at, load

KEY = b"crash-key"
LEASE = "2"  # seconds: how long the killed process's claims outlive it


def main(path: str, db: str, mode: str) -> None:
    config = Path(path)
    app = load(config, environ={**TOKEN_ENV, "BROADCASTER_LEASE_SECONDS": LEASE})
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
        else:
            runner = app.runner(store, KEY, clock=clock)
            deadline = time.monotonic() + 120
            # standing by until the killed process's scheduler lease runs out, as `run` does
            while not runner.claim_leadership():
                if time.monotonic() > deadline:
                    raise SystemExit("the dead process's lease never ran out")
                time.sleep(0.2)
            runner.recover()  # what `broadcaster run` does when it takes the lead
            # ... and then its sweep, every ten seconds in `run`, here until nothing is left:
            # attempts cut off by the kill are reconciled once their outcome has settled
            while store.unfinished(app.campaign.id):
                if time.monotonic() > deadline:
                    raise SystemExit("deliveries still unfinished after 120 s")
                time.sleep(0.5)
                runner.sweep()
                runner.finish()
            print("recovered", flush=True)
            runner.finish(wait=True)
            runner.close()
    finally:
        store.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
