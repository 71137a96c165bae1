"""The delivery log: an append-only record of every occurrence and every delivery.

Rows are only ever inserted: a status change is a new event, never an update (the
database refuses UPDATE and DELETE, and REPLACE on SQLite). Beside the events the log
keeps each delivery's current state and claim, so the engine finds what is unfinished
through an index. Recipients are stored as a masked display form plus a keyed hash,
never in clear; the exact text of every message is kept once, by its sha256. SQLite
(WAL) by default, any SQLAlchemy URL (PostgreSQL) by choice.
"""

from broadcaster.log.records import (
    AreaCoverageRow,
    Claim,
    CoverageRow,
    DeliveryRecord,
    DeliveryState,
    Event,
    LeaseState,
    OccurrenceState,
)
from broadcaster.log.store import DeliveryLog, OutcomeTally, default_url, key_id

__all__ = [
    "AreaCoverageRow",
    "Claim",
    "CoverageRow",
    "DeliveryLog",
    "DeliveryRecord",
    "DeliveryState",
    "Event",
    "LeaseState",
    "OccurrenceState",
    "OutcomeTally",
    "default_url",
    "key_id",
]
