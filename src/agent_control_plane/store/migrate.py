"""Apply the shipped Alembic migrations to one registry's tables, on a connection the caller holds."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from agent_control_plane.store.dialect import ensure_schema, lock_for_migration
from agent_control_plane.store.tables import ScopedModelRegistry

_SCRIPTS = Path(__file__).with_name("migrations")


def _config(conn: Connection, registry: ScopedModelRegistry) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["connection"] = conn
    config.attributes["registry"] = registry
    return config


def upgrade(conn: Connection, registry: ScopedModelRegistry) -> str:
    """Bring the schema to the newest revision (idempotent) and return that revision."""
    lock_for_migration(conn)
    ensure_schema(conn, registry.schema)
    command.upgrade(_config(conn, registry), "head")
    return head_revision()


def current_revision(conn: Connection, registry: ScopedModelRegistry) -> str | None:
    context = MigrationContext.configure(
        conn, opts={"version_table": registry.version_table, "version_table_schema": registry.schema}
    )
    return context.get_current_revision()


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head
