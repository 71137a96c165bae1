"""Alembic environment: always run from `DeliveryLog.open()` with a connection handed in.

The caller puts an open SQLAlchemy `Connection` in `config.attributes["connection"]`;
there is no alembic.ini and no URL here, so a password never passes through
configparser or a log line.
"""

from __future__ import annotations

from alembic import context

from broadcaster.log.models import metadata

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "迁移须由 DeliveryLog.open() 运行 migrations run only through DeliveryLog.open()"
    )

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
