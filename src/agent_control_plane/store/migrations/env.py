"""Alembic environment: always run from `agent_control_plane.store.migrate` with a live connection and registry."""

from __future__ import annotations

from alembic import context

from agent_control_plane.store.tables import ScopedModelRegistry

config = context.config
connection = config.attributes["connection"]
registry: ScopedModelRegistry = config.attributes["registry"]

context.configure(
    connection=connection,
    target_metadata=registry.metadata,
    version_table=registry.version_table,
    version_table_schema=registry.schema,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
