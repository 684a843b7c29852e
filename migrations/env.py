"""Alembic environment: migrations run online, one migrator at a time."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

from worker.adapters.postgres.tables import Base
from worker.settings import get_settings

# Any constant works; it only has to be the same for every migrator of this schema.
MIGRATION_LOCK_ID = 0x76696465  # "vide"


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url") or get_settings().database_url
    engine = create_engine(url, future=True)
    with engine.connect() as connection:
        # Two deploys starting at once must not both run the same DDL.
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                compare_type=True,
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit(
        "Offline (SQL script) migrations are not supported; run `videoworker migrate`."
    )
run_migrations_online()
