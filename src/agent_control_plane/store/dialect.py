"""Everything that differs between SQLite and PostgreSQL, in one place.

- URLs: `sqlite:///f.db` and `postgresql://…` get the drivers this package ships with (pysqlite / aiosqlite,
  psycopg / asyncpg). A synchronous engine given an asyncio driver's URL uses its synchronous twin instead, so one
  URL serves both facades and `acp`.
- SQLite: WAL journal, a busy timeout, and `BEGIN IMMEDIATE` for writing transactions: a transaction that will
  write takes the database write lock when it starts instead of failing with "database is locked" when it first
  writes after another process did. Read-only work uses a plain deferred `BEGIN`.
- PostgreSQL: READ COMMITTED with row locks taken by the conditional UPDATEs (see statements.py); read-only
  operations run REPEATABLE READ so they see one snapshot; an advisory lock serialises concurrent schema upgrades.
- Driver exceptions become `StorageError` / `SchemaNotReadyError` here, so callers never see a driver's type.
  Missing tables name the database and table prefix they were looked for in, since a wrong URL or prefix looks
  exactly like a database that was never set up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_control_plane.errors import ControlPlaneError, SchemaNotReadyError, StorageError
from agent_control_plane.store.prepared import trace
from agent_control_plane.store.tables import ScopedModelRegistry

SqliteSync = Literal["FULL", "NORMAL", "OFF", "EXTRA"]


@dataclass(frozen=True, slots=True)
class StorageOptions:
    """How the engine talks to its database."""

    sqlite_synchronous: SqliteSync = "FULL"
    busy_timeout_ms: int = 30_000
    pool_size: int = 5


class RetryTransaction(Exception):
    """Raised inside an operation when its transaction lost a race and should run again from the start."""


_SYNC_DRIVERS = {
    "sqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    # asyncio drivers, for a synchronous engine: their synchronous twins reach the same database
    "sqlite+aiosqlite": "sqlite",
    "postgresql+asyncpg": "postgresql+psycopg",
}
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+psycopg",
}


def normalize_url(url: str | URL, *, asynchronous: bool) -> URL:
    """Give a bare `sqlite://` or `postgresql://` URL the driver this package uses; keep other explicit drivers.

    A synchronous engine cannot run an asyncio driver (it would fail on its first statement with a greenlet
    error), so for one `sqlite+aiosqlite` becomes pysqlite and `postgresql+asyncpg` becomes psycopg.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(
            f"cannot parse database URL {str(url)!r} "
            "(expected e.g. sqlite:///./acp.db or postgresql://user@host:5432/dbname)"
        ) from None
    table = _ASYNC_DRIVERS if asynchronous else _SYNC_DRIVERS
    name = parsed.drivername
    if name in table:
        return parsed.set(drivername=table[name])
    if asynchronous and name in ("sqlite+pysqlite", "postgresql+psycopg2"):
        raise StorageError(f"{name} is a synchronous driver; use sqlite+aiosqlite or postgresql+asyncpg")
    return parsed


def synchronous_twin(url: str | URL) -> URL:
    """The same database through a synchronous driver (for set-up work done before an async engine runs).

    `url` must suit an async engine: a synchronous driver is refused here as it would be by the async engine."""
    return normalize_url(normalize_url(url, asynchronous=True), asynchronous=False)


def describe_database(url: URL) -> str:
    """The database URL as it may be shown in a message: the password hidden."""
    return url.render_as_string(hide_password=True)


def place(database: str | None, table_prefix: str | None, schema: str | None = None) -> list[str]:
    """The parts that say where the control plane's tables were looked for (those that are known)."""
    parts = [] if database is None else [f"database {database}"]
    if table_prefix is not None:
        parts.append(f"table prefix {table_prefix!r}")
    if schema is not None:
        parts.append(f"schema {schema!r}")
    return parts


CHECK_PLACE = "check the database URL, table prefix and schema (--database-url, --table-prefix, --schema)"


_DATABASE_NOTE = "acp_database"
"""Attribute the engines' error hook sets on a SQLAlchemy error: the database it came from (see `translate`)."""


def _install_hooks(engine: Engine, options: StorageOptions) -> None:
    database = describe_database(engine.url)

    # A dialect-level hook: unlike connection events, it costs the statements that succeed nothing measurable.
    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        if context.sqlalchemy_exception is not None:
            setattr(context.sqlalchemy_exception, _DATABASE_NOTE, database)

    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver must not start transactions on its own: `begin()` below decides how each one starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={options.sqlite_synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={int(options.busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def begin(conn: Connection, *, read_only: bool) -> None:
    """Start the transaction `conn.begin()` opened. On SQLite that is an explicit BEGIN (see the module docstring).

    This is not a SQLAlchemy "begin" event listener on purpose: any connection event listener makes SQLAlchemy
    dispatch events around every statement, which costs more than SQLite takes to run one.
    """
    if conn.dialect.name == "sqlite":
        # Straight to the driver: this runs twice per governed action, and SQLAlchemy's execution path costs
        # more than the statement.
        statement = "BEGIN" if read_only else "BEGIN IMMEDIATE"
        error: type[Exception] = conn.dialect.loaded_dbapi.Error
        trace(conn, statement, ())
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(statement)
        except error as exc:
            raise driver_error(conn, statement, (), exc, error) from exc
        finally:
            cursor.close()
    elif read_only:
        # Reads that span several statements (verify: the head, then the events) must see one snapshot, or an
        # append committed in between would look like tampering. READ COMMITTED gives each statement its own.
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")


def driver_error(
    conn: Connection, statement: str, params: Any, exc: Exception, error_class: type[Exception]
) -> StatementError:
    """A driver exception from a statement run straight on the DBAPI cursor, wrapped as SQLAlchemy wraps it and
    naming the database as the engines' error hook does for statements run through SQLAlchemy."""
    wrapped = DBAPIError.instance(statement, params, exc, error_class, dialect=conn.dialect)
    setattr(wrapped, _DATABASE_NOTE, describe_database(conn.engine.url))
    return wrapped


def join(conn: Connection) -> None:
    """Make sure a caller's connection (`from_session`) is inside a transaction before we write on it.

    SQLite connections of this package's engines run the driver in autocommit mode (see `begin`), so a
    `conn.begin()` alone has not started anything there yet: without this, each statement would commit on its own.
    """
    if conn.dialect.name == "sqlite" and not getattr(conn.connection.driver_connection, "in_transaction", True):
        begin(conn, read_only=False)


def create_sync_engine(url: str | URL, options: StorageOptions) -> Engine:
    target = normalize_url(url, asynchronous=False)
    try:
        engine = create_engine(target, **_engine_kwargs(target, options))
    except (ArgumentError, ImportError) as exc:
        raise StorageError(f"cannot create a database engine for {target.render_as_string()}: {exc}") from None
    _install_hooks(engine, options)
    return engine


def create_asynchronous_engine(url: str | URL, options: StorageOptions) -> AsyncEngine:
    target = normalize_url(url, asynchronous=True)
    try:
        engine = create_async_engine(target, **_engine_kwargs(target, options))
    except (ArgumentError, ImportError) as exc:
        raise StorageError(f"cannot create a database engine for {target.render_as_string()}: {exc}") from None
    _install_hooks(engine.sync_engine, options)
    return engine


def _engine_kwargs(url: URL, options: StorageOptions) -> dict[str, Any]:
    if url.get_backend_name() == "sqlite":
        return {}
    return {"pool_size": options.pool_size, "pool_pre_ping": True}


def upsert_into(dialect_name: str, table: Table) -> Any:
    """An INSERT that can take ON CONFLICT (`on_conflict_do_update` / `_do_nothing`): PostgreSQL's and SQLite's
    constructs have the same API, so callers write one statement for both."""
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    if dialect_name == "sqlite":
        return sqlite.insert(table)
    raise StorageError(f"the {dialect_name} database is not supported (use SQLite or PostgreSQL)")


def lock_for_migration(conn: Connection) -> None:
    """Serialise concurrent `setup()` calls from several processes on PostgreSQL (SQLite's write lock does it)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(7210411907)"))


def ensure_schema(conn: Connection, schema: str | None) -> None:
    if schema is not None and conn.dialect.name == "postgresql":
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))


_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected
_UNDEFINED_TABLE = "42P01"


def _sqlstate(exc: SQLAlchemyError) -> str | None:
    cause = getattr(exc, "orig", None)
    code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return code if isinstance(code, str) else None


def is_retryable(exc: DBAPIError) -> bool:
    """PostgreSQL picked this transaction as a deadlock or serialization victim: running it again is safe."""
    return _sqlstate(exc) in _RETRYABLE_SQLSTATES


_MISSING_TABLE = re.compile(r'no such table: (?P<sqlite>\S+)|relation "(?P<postgres>[^"]+)" does not exist')


def _missing_table_place(exc: SQLAlchemyError, detail: str) -> list[str]:
    """Where the missing table was looked for: the database (when the engine's error hook named it), and the table
    prefix and schema read off the missing table's name (the suffix is one of the control plane's tables)."""
    found = _MISSING_TABLE.search(detail)
    name = "" if found is None else found["sqlite"] or found["postgres"]
    schema, _, table = name.rpartition(".")
    bases = [*ScopedModelRegistry(table_prefix="").metadata.tables, "alembic_version"]
    base = max((b for b in bases if table.endswith(b)), key=len, default=None)
    prefix = None if base is None else table[: len(table) - len(base)]
    return place(getattr(exc, _DATABASE_NOTE, None), prefix, schema if schema and schema != "main" else None)


def translate(exc: SQLAlchemyError, operation: str) -> ControlPlaneError:
    """A driver/SQLAlchemy failure as the control plane's own error, naming the operation and the cause."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    detail = lines[0] if lines else type(cause).__name__
    if _sqlstate(exc) == _UNDEFINED_TABLE or detail.startswith("no such table"):
        where = "; ".join([*_missing_table_place(exc, detail), detail])
        return SchemaNotReadyError(
            f"{operation} failed: the control plane's tables are missing ({where}). If this is the right database "
            f"and table prefix, run cp.setup() or `acp db upgrade` first; otherwise {CHECK_PLACE}"
        )
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return StorageError(f"{operation} failed: lost the database connection ({detail}); nothing was executed")
    return StorageError(f"{operation} failed: database error: {detail}; nothing was executed")
