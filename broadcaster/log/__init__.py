"""The delivery log: an append-only record of every occurrence and every delivery.

Rows are only ever inserted: a status change is a new event, never an update
(the database refuses UPDATE and DELETE). Recipients are stored as a masked display
form plus a keyed hash, never in clear; the exact text of every message is kept once,
by its sha256. SQLite (WAL) by default, any SQLAlchemy URL (PostgreSQL) by choice.
"""

from broadcaster.log.records import (
    CoverageRow,
    DeliveryRecord,
    DeliveryState,
    Event,
    OccurrenceState,
)
from broadcaster.log.store import DeliveryLog, default_url

__all__ = [
    "CoverageRow",
    "DeliveryLog",
    "DeliveryRecord",
    "DeliveryState",
    "Event",
    "OccurrenceState",
    "default_url",
]
