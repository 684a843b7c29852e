"""The migrated schema is exactly the ORM's: columns, types, indexes and constraint names."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from worker.adapters.postgres.migrate import alembic_config, downgrade, upgrade
from worker.adapters.postgres.tables import Base

ORM_SCHEMA = "orm_reference"

# Every index and constraint of the tables in a schema, as Postgres itself prints them.
CATALOG_SQL = """
SELECT 'index', t.relname, i.relname, pg_get_indexdef(i.oid)
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = :schema AND t.relname <> 'alembic_version'
UNION ALL
SELECT 'constraint', t.relname, c.conname, pg_get_constraintdef(c.oid)
FROM pg_constraint c
JOIN pg_class t ON t.oid = c.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = :schema AND t.relname <> 'alembic_version'
"""


def differences(connection) -> list:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


def schema_catalog(connection, schema: str) -> set[tuple[str, str, str, str]]:
    # Definitions name objects outside the search path with their schema; strip it.
    # pg_trgm's operator classes live in public: on the path, they print unqualified.
    connection.execute(text(f"SET LOCAL search_path TO {schema}, public"))
    rows = connection.execute(text(CATALOG_SQL), {"schema": schema})
    return {(kind, table, name, sql.replace(f"{schema}.", "")) for kind, table, name, sql in rows}


def test_database_is_at_the_head_revision(engine, services):
    head = ScriptDirectory.from_config(alembic_config(services["DATABASE_URL"])).get_current_head()

    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head


def test_autogenerate_finds_no_difference_between_the_migrated_database_and_the_orm(engine):
    with engine.connect() as conn:
        assert differences(conn) == []


def test_the_comparison_does_see_partial_indexes(engine):
    """A control for the test above: dropping a has_proxy partial index is noticed."""
    with engine.connect() as conn:
        conn.execute(text("DROP INDEX ix_videos_live_no_proxy_recent"))
        found = differences(conn)
        conn.rollback()

    assert [(kind, index.name) for kind, index in found] == [
        ("add_index", "ix_videos_live_no_proxy_recent")
    ]


def test_indexes_and_constraints_have_the_orms_names_and_definitions(engine):
    """What autogenerate does not compare: index column order and direction, check
    constraint names and bodies, foreign key actions. The ORM is created in a scratch
    schema, inside a transaction that is rolled back, and both catalogues compared."""
    with engine.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {ORM_SCHEMA}"))
        Base.metadata.create_all(conn.execution_options(schema_translate_map={None: ORM_SCHEMA}))
        from_orm = schema_catalog(conn, ORM_SCHEMA)
        migrated = schema_catalog(conn, "public")
        conn.rollback()

    assert len(from_orm) > 20
    assert sorted(migrated - from_orm) == []
    assert sorted(from_orm - migrated) == []


def test_every_migration_downgrades_to_base_and_upgrades_again(engine, services, deps):
    # deps: the clean slate its fixture gives is what this test leaves behind too.
    downgrade(services["DATABASE_URL"], "base")
    with engine.connect() as conn:
        tables = conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).scalars()
        assert set(tables) <= {"alembic_version"}

    upgrade(services["DATABASE_URL"], "head")

    with engine.connect() as conn:
        assert differences(conn) == []
