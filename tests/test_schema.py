"""Schema set-up, migrations, table prefixes / schemas, and failing closed when the database is not there."""

from __future__ import annotations

import asyncio
import multiprocessing

import psycopg
import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from agent_control_plane import (
    AsyncControlPlaneFacade,
    ControlPlaneFacade,
    SchemaNotReadyError,
    ScopedModelRegistry,
    StorageError,
)
from agent_control_plane.store.migrate import head_revision
from conftest import POLICY, Backend


def test_setup_is_idempotent_and_reports_the_revision(backend: Backend, table_prefix: str) -> None:
    cp = ControlPlaneFacade.from_database_url(backend.url, table_prefix=table_prefix)
    assert cp.schema_revision() is None
    assert cp.setup() == head_revision()
    assert cp.setup() == head_revision()
    assert cp.schema_revision() == head_revision()
    names = set(inspect(cp.engine).get_table_names())
    expected = {"policies", "sessions", "proposals", "events", "kill_switches", "alembic_version"}
    assert {f"{table_prefix}{n}" for n in expected} <= names
    cp.close()


def test_operations_before_setup_say_to_run_setup(backend: Backend, table_prefix: str) -> None:
    cp = ControlPlaneFacade.from_database_url(backend.url, table_prefix=table_prefix)
    with pytest.raises(
        SchemaNotReadyError, match=r"right database and table prefix, run cp.setup\(\) or `acp db upgrade`"
    ):
        cp.open_session("too early")
    cp.close()


def test_missing_tables_name_the_database_and_prefix_to_check_before_setting_up(
    backend: Backend, table_prefix: str
) -> None:
    url = make_url(backend.url)
    with ControlPlaneFacade.from_database_url(url, policy=POLICY, table_prefix=table_prefix) as cp:
        with pytest.raises(SchemaNotReadyError) as listing:
            cp.list_sessions()
        with pytest.raises(SchemaNotReadyError) as proposing:
            cp.propose("s", action="read_x")
    message = str(listing.value)
    assert f"database {url.render_as_string(hide_password=True)}; table prefix {table_prefix!r}" in message
    if url.password:
        assert str(url.password) not in message
    for error in (listing.value, proposing.value):
        assert f"table prefix {table_prefix!r}" in str(error)
        assert "otherwise check the database URL, table prefix and schema (--database-url, --table-prefix" in str(error)


def _pretend_a_newer_package_set_up(cp: ControlPlaneFacade) -> None:
    with cp.engine.begin() as conn:
        conn.execute(text(f"UPDATE {cp.registry.version_table} SET version_num = 'ffffffffffff'"))


def test_setup_refuses_a_schema_newer_than_the_package_and_changes_nothing(backend: Backend, table_prefix: str) -> None:
    with ControlPlaneFacade.from_database_url(backend.url, table_prefix=table_prefix) as cp:
        cp.setup()
        _pretend_a_newer_package_set_up(cp)
        with pytest.raises(StorageError) as raised:
            cp.setup()
        assert not isinstance(raised.value, SchemaNotReadyError)  # running setup again would not help
        message = str(raised.value)
        assert "the database is at revision 'ffffffffffff'" in message
        assert "which this version of agent-control-plane does not know" in message
        assert f"table prefix {table_prefix!r}" in message and make_url(backend.url).database in message
        assert "Upgrade the package, or check the database URL, table prefix and schema" in message
        assert cp.schema_revision() == "ffffffffffff"


def test_the_async_facade_setup_refuses_a_newer_schema_too(backend: Backend, table_prefix: str) -> None:
    with ControlPlaneFacade.from_database_url(backend.url, table_prefix=table_prefix) as cp:
        cp.setup()
        _pretend_a_newer_package_set_up(cp)

    async def setup() -> None:
        async with AsyncControlPlaneFacade.from_database_url(backend.async_url, table_prefix=table_prefix) as acp:
            await acp.setup()

    with pytest.raises(StorageError, match="revision 'ffffffffffff'.*does not know"):
        asyncio.run(setup())


def test_the_sync_facade_runs_on_the_synchronous_twin_of_an_asyncio_url(backend: Backend, table_prefix: str) -> None:
    with ControlPlaneFacade.from_database_url(backend.async_url, policy=POLICY, table_prefix=table_prefix) as cp:
        assert cp.engine.url.drivername in ("sqlite", "postgresql+psycopg")
        assert cp.setup() == head_revision()
        sid = cp.open_session("async url, sync facade")
        assert cp.propose(sid, action="read_x").allowed
        assert [s.session_id for s in cp.list_sessions()] == [sid]


def test_unreachable_database_fails_closed_with_the_cause() -> None:
    cp = ControlPlaneFacade.from_database_url("postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(StorageError, match="propose failed.*nothing was executed"):
        cp.propose("s", action="read_x")
    cp.close()


def test_bad_url_is_a_clear_error() -> None:
    with pytest.raises(StorageError, match="cannot parse database URL"):
        ControlPlaneFacade.from_database_url("not a url")


def test_registry_in_a_postgres_schema_coexists_with_host_tables(postgres_database: str) -> None:
    schema = "acp_schema_test"
    registry = ScopedModelRegistry(table_prefix="", schema=schema)
    cp = ControlPlaneFacade.from_database_url(postgres_database, policy=POLICY, registry=registry)
    cp.setup()
    sid = cp.open_session("in a schema")
    assert cp.propose(sid, action="read_x").allowed
    assert "sessions" in inspect(cp.engine).get_table_names(schema=schema)
    assert "sessions" not in inspect(cp.engine).get_table_names()
    cp.close()
    dsn = postgres_database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _setup(url: str, prefix: str) -> str:
    with ControlPlaneFacade.from_database_url(url, table_prefix=prefix) as cp:
        return cp.setup()


def test_setup_from_several_processes_at_once_succeeds(backend: Backend, table_prefix: str) -> None:
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        revisions = pool.starmap(_setup, [(backend.url, table_prefix)] * 3)
    assert revisions == [head_revision()] * 3
    engine = create_engine(backend.url)
    assert f"{table_prefix}events" in inspect(engine).get_table_names()
    engine.dispose()


def test_the_migrations_build_exactly_the_tables_the_code_declares(backend: Backend, table_prefix: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    cp = ControlPlaneFacade.from_database_url(backend.url, table_prefix=table_prefix)
    cp.setup()

    def ours(name: str | None, kind: str, parent: object) -> bool:
        return kind != "table" or ((name or "").startswith(table_prefix) and name != cp.registry.version_table)

    with cp.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": ours, "compare_type": False})
        assert compare_metadata(context, cp.registry.metadata) == []
    cp.close()
