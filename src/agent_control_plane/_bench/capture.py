"""Capturing the SQL of one governed action: every statement the facade sends to the driver, and each commit.

The hot-path statements run as `Prepared` straight on the DBAPI cursor, past SQLAlchemy's execution events, so
they are captured with the storage layer's own trace (`store.prepared.TRACE`), which also records SQLite's
`BEGIN IMMEDIATE`. Commits are not traced: every facade call is one transaction on one checked-out connection,
so each checkout starts a new transaction and a commit ends it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event

from agent_control_plane._bench.action import BenchError, governed_action, propose, settle
from agent_control_plane.facade import ControlPlaneFacade
from agent_control_plane.store import eventlog
from agent_control_plane.store.eventlog import EventRow
from agent_control_plane.store.prepared import TRACE

_RETURNING = re.compile(r"\sRETURNING\s+(.+)$", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CapturedStatement:
    """One statement as the driver got it, or the commit that ends a transaction."""

    sql: str
    values: tuple[Any, ...] = ()
    """Parameter values exactly as passed to `cursor.execute`."""
    names: tuple[str, ...] | None = None
    """The dict keys of `values` when the driver takes named parameters (psycopg's pyformat); None when it takes
    a positional tuple (sqlite3's qmark)."""
    commit: bool = False

    @property
    def verb(self) -> str:
        return "COMMIT" if self.commit else self.sql.lstrip().split(None, 1)[0].upper()

    @property
    def returning(self) -> tuple[str, ...]:
        """The columns of the statement's RETURNING clause, unqualified; empty without one."""
        match = _RETURNING.search(self.sql)
        if match is None:
            return ()
        return tuple(column.strip().rsplit(".", 1)[-1].strip('"') for column in match.group(1).split(","))


@dataclass(frozen=True, slots=True)
class Capture:
    """The statements of one propose+settle, the ids in their parameters, and the events they wrote."""

    statements: tuple[CapturedStatement, ...]
    session_id: str
    proposal_id: str
    events: tuple[EventRow, ...]
    """The session's events written by these statements, as stored (canonical payload text, hashes)."""


def capture_action(cp: ControlPlaneFacade, session_id: str) -> Capture:
    """Run one propose+settle on `cp` and record every statement it sent to the driver, and each commit.

    Tracing is on only for this one action: afterwards `cp.engine` has no listener of ours and no connection
    carries the trace key, so nothing traced or dispatched remains on the path of later actions.
    """
    governed_action(cp, session_id)  # warm: policy snapshot cached, statements compiled
    written_before = _events(cp, session_id)
    with traced_transactions(cp.engine) as transactions:
        proposal_id = propose(cp, session_id)
        proposed_in = len(transactions)
        settle(cp, proposal_id)
    if proposed_in != 1 or len(transactions) != 2:
        raise BenchError(
            f"propose and settle ran in {proposed_in} and {len(transactions) - proposed_in} transactions; "
            "the replay expects one each"
        )
    last_seq = written_before[-1].seq if written_before else 0
    written = _events(cp, session_id, after_seq=last_seq)
    return Capture(captured_statements(transactions), session_id, proposal_id, tuple(written))


@contextmanager
def traced_transactions(engine: Engine) -> Iterator[list[list[tuple[str, Any]]]]:
    """While open, every traced statement of each connection checked out of `engine`: one list per checkout.

    Each checkout is one transaction of a facade call. On exit no listener of ours stays on `engine` and no
    connection keeps the trace key.
    """
    transactions: list[list[tuple[str, Any]]] = []
    records: list[Any] = []

    def on_checkout(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        transactions.append([])
        record.info[TRACE] = transactions[-1]
        records.append(record)

    event.listen(engine, "checkout", on_checkout)
    try:
        yield transactions
    finally:
        event.remove(engine, "checkout", on_checkout)
        for record in records:
            record.info.pop(TRACE, None)


def captured_statements(transactions: Sequence[Sequence[tuple[str, Any]]]) -> tuple[CapturedStatement, ...]:
    """The traced transactions as captured statements, each transaction ended by its commit."""
    statements: list[CapturedStatement] = []
    for transaction in transactions:
        statements.extend(_captured(sql, params) for sql, params in transaction)
        statements.append(CapturedStatement("COMMIT", commit=True))
    return tuple(statements)


def _captured(sql: str, params: Any) -> CapturedStatement:
    if isinstance(params, dict):
        return CapturedStatement(sql, tuple(params.values()), tuple(params))
    if isinstance(params, tuple):
        return CapturedStatement(sql, params)
    raise BenchError(f"cannot replay the parameters of {sql!r}: {type(params).__name__}")


def _events(cp: ControlPlaneFacade, session_id: str, *, after_seq: int = 0) -> list[EventRow]:
    with cp.engine.connect() as conn:
        return eventlog.read(conn, cp.registry, session_id, after_seq=after_seq)
