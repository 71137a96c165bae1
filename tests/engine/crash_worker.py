"""Run by tests/test_crash.py in a subprocess: fire a fan-out, or restart as `run` does."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from broadcaster.engine.clock import SystemClock
from broadcaster.engine.dispatch import Dispatcher
from broadcaster.engine.runner import Runner
from broadcaster.log import DeliveryLog
from broadcaster.model.config import load_campaign
from broadcaster.model.plan import Planner
from tests.engine.helpers import DAY, TOKEN_ENV, at

KEY = b"crash-key"


def main(path: str, db: str, mode: str) -> None:
    config = Path(path)
    campaign = load_campaign(config, today=DAY, environ=TOKEN_ENV, state_dir=config.parent / "var")
    store = DeliveryLog.open(db, hash_key=KEY)
    clock = SystemClock()
    try:
        if mode == "fire":
            dispatcher = Dispatcher(
                campaign, store, clock=clock, hash_key=KEY, state_dir=config.parent / "var"
            )
            occurrence = next(
                Planner(campaign).rule_occurrences(
                    campaign.rule("blast"), at(2026, 3, 3), at(2026, 3, 4)
                )
            )
            print("firing", flush=True)
            dispatcher.fire(occurrence)
            dispatcher.close()
        else:
            runner = Runner(
                campaign, store, clock=clock, hash_key=KEY, state_dir=config.parent / "var"
            )
            runner.recover()  # exactly what `broadcaster run` does on start, before scheduling
            # ... and then its sweep, every minute in `run`, here until nothing is left: attempts
            # cut off by the kill are reconciled once their outcome has settled
            deadline = time.monotonic() + 120
            while any(s.campaign == campaign.id for s in store.unfinished()):
                if time.monotonic() > deadline:
                    raise SystemExit("deliveries still unfinished after 120 s")
                time.sleep(0.5)
                runner.sweep()
            print("recovered", flush=True)
            runner.dispatcher.close()
    finally:
        store.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
