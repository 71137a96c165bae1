"""Alembic migrations of the delivery log; run to head by `DeliveryLog.open()`."""
