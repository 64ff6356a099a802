"""`Prepared`: a Core statement compiled once per dialect and run directly on the connection's DBAPI cursor.

Going through `Connection.execute` costs SQLAlchemy 50-80 µs per statement (execution context, cache lookup,
parameter construction, result set-up), which is several times what SQLite needs to run a short indexed
statement. The statements on the path of every propose and settle are therefore compiled once, by SQLAlchemy, for
the connection's dialect; each run only converts the parameters with the column types' own bind/result processors
and calls the driver. They still run inside the SQLAlchemy transaction of the connection (same DBAPI
connection), and driver errors are wrapped exactly as SQLAlchemy wraps them, so callers see no difference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import Select

Processor = Callable[[Any], Any] | None

TRACE = "acp_statement_trace"
"""Key in a connection's `info` dict. While it holds a list, every statement run here is appended to it as
(sql, driver parameters). The benchmark uses it to replay exactly these statements with the bare driver."""
Statement = Select[Any] | UpdateBase


@dataclass(slots=True)
class _Compiled:
    sql: str
    positional: bool
    # (placeholder name, is the caller's parameter, bind processor, processed constant) in placeholder order
    slots: tuple[tuple[str, bool, Processor, Any], ...]
    result_keys: tuple[str, ...]
    # Built from the first result's cursor.description, as SQLAlchemy does (some drivers need the type code).
    result_processors: tuple[Processor, ...] | None
    error_class: type[Exception]


class Prepared:
    """One hot-path statement. `run` returns its result rows as tuples (processed like SQLAlchemy would)."""

    __slots__ = ("_by_dialect", "_columns", "statement")

    def __init__(self, statement: Statement, *, insert_columns: Sequence[str] | None = None) -> None:
        self.statement = statement
        self._columns = list(insert_columns) if insert_columns is not None else None
        # Keyed by dialect and driver: psycopg and asyncpg speak PostgreSQL with different placeholders, and one
        # registry may serve both (ControlPlaneSetup.build_async sets up through psycopg, then runs on asyncpg).
        self._by_dialect: dict[tuple[str, str], _Compiled] = {}

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect, column_keys=self._columns)
        binds = compiled.binds
        callers = {name for name, bind in binds.items() if bind.required}
        # Placeholder names in order, with the statement's own literal values filled in.
        values = compiled.construct_params(dict.fromkeys(callers))
        order = compiled.positiontup if compiled.positional and compiled.positiontup else list(values)
        slots = []
        for name in order:
            processor = binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            constant = values[name]
            if name not in callers and constant is not None and processor is not None:
                constant = processor(constant)
            slots.append((name, name in callers, processor, constant))
        keys = tuple(str(column.key) for column in self.statement.exported_columns)
        error_class = dialect.loaded_dbapi.Error
        return _Compiled(compiled.string, bool(compiled.positional), tuple(slots), keys, None, error_class)

    def _result_processors(self, dialect: Dialect, description: Sequence[Any]) -> tuple[Processor, ...]:
        columns = list(self.statement.exported_columns)
        return tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, entry[1])
            for column, entry in zip(columns, description, strict=True)
        )

    def _compiled_for(self, conn: Connection) -> _Compiled:
        key = (conn.dialect.name, conn.dialect.driver)
        compiled = self._by_dialect.get(key)
        if compiled is None:
            compiled = self._by_dialect[key] = self._compile(conn.dialect)
        return compiled

    @staticmethod
    def _bind(compiled: _Compiled, params: Mapping[str, Any]) -> Any:
        values = [
            (params[name] if processor is None else processor(params[name])) if caller else constant
            for name, caller, processor, constant in compiled.slots
        ]
        if compiled.positional:
            return tuple(values)
        return {slot[0]: value for slot, value in zip(compiled.slots, values, strict=True)}

    def run(self, conn: Connection, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """Execute once with `params`; returns the (processed) result rows, empty for statements without any."""
        compiled = self._compiled_for(conn)
        bound = self._bind(compiled, params)
        trace(conn, compiled.sql, bound)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, bound)
            if not compiled.result_keys:
                return []
            rows = cursor.fetchall()
            processors = compiled.result_processors
            if processors is None:
                processors = compiled.result_processors = self._result_processors(conn.dialect, cursor.description)
        except compiled.error_class as exc:
            from agent_control_plane.store.dialect import driver_error  # dialect imports this module

            raise driver_error(conn, compiled.sql, bound, exc, compiled.error_class) from exc
        finally:
            cursor.close()
        if not any(processors):
            return list(rows)
        return [[value if proc is None else proc(value) for value, proc in zip(row, processors, strict=True)]
                for row in rows]  # fmt: skip

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute once per parameter set (an INSERT of several rows)."""
        compiled = self._compiled_for(conn)
        bound = [self._bind(compiled, params) for params in rows]
        for one in bound:
            trace(conn, compiled.sql, one)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if len(bound) == 1:
                cursor.execute(compiled.sql, bound[0])
            else:
                cursor.executemany(compiled.sql, bound)
        except compiled.error_class as exc:
            from agent_control_plane.store.dialect import driver_error  # dialect imports this module

            raise driver_error(conn, compiled.sql, bound, exc, compiled.error_class) from exc
        finally:
            cursor.close()

    def first(self, conn: Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first result row as a dict keyed by column name, or None."""
        rows = self.run(conn, params)
        if not rows:
            return None
        return dict(zip(self._compiled_for(conn).result_keys, rows[0], strict=True))


def trace(conn: Connection, sql: str, params: Any) -> None:
    """Record a statement about to run, when tracing is on for this connection (see `TRACE`)."""
    statements = conn.info.get(TRACE)
    if statements is not None:
        statements.append((sql, params))
