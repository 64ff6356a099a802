"""Apply the shipped Alembic migrations to one registry's tables, on a connection the caller holds.

Alembic's own errors stop here: they become `StorageError`s naming the database and table prefix.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection

from agent_control_plane.errors import StorageError
from agent_control_plane.store.dialect import CHECK_PLACE, describe_database, ensure_schema, lock_for_migration, place
from agent_control_plane.store.tables import ScopedModelRegistry

_SCRIPTS = Path(__file__).with_name("migrations")


def _config(conn: Connection | None = None, registry: ScopedModelRegistry | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["connection"] = conn
    config.attributes["registry"] = registry
    return config


def _context(conn: Connection, registry: ScopedModelRegistry) -> MigrationContext:
    return MigrationContext.configure(
        conn, opts={"version_table": registry.version_table, "version_table_schema": registry.schema}
    )


def upgrade(conn: Connection, registry: ScopedModelRegistry) -> str:
    """Bring the schema to the newest revision (idempotent) and return that revision.

    A database at a revision this package does not ship (a newer package set it up, or the URL / prefix points at
    another application's Alembic version table) is refused with a `StorageError`, changing nothing.
    """
    lock_for_migration(conn)
    ensure_schema(conn, registry.schema)
    where = "; ".join(place(describe_database(conn.engine.url), registry.table_prefix, registry.schema))
    scripts = ScriptDirectory.from_config(_config())
    known = {script.revision for script in scripts.walk_revisions()}
    unknown = [revision for revision in _context(conn, registry).get_current_heads() if revision not in known]
    if unknown:
        raise StorageError(
            f"cannot upgrade the schema: the database is at revision {', '.join(map(repr, unknown))} ({where}; "
            f"version table {registry.version_table}), which this version of agent-control-plane does not know "
            f"(its newest is {head_revision()!r}). Upgrade the package, or {CHECK_PLACE}"
        )
    try:
        command.upgrade(_config(conn, registry), "head")
    except CommandError as exc:
        raise StorageError(f"cannot upgrade the schema ({where}): {exc}; nothing was changed") from None
    return head_revision()


def current_revision(conn: Connection, registry: ScopedModelRegistry) -> str | None:
    return _context(conn, registry).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head
