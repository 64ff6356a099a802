"""An operation: one unit of work on a Connection, run in one transaction by either facade.

The facades differ only in how they run an `Operation` (`engine.begin()` versus `AsyncConnection.run_sync`); the
operations themselves, and how failures are retried or translated, exist once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from agent_control_plane.errors import ControlPlaneError, StorageError
from agent_control_plane.store.dialect import RetryTransaction, begin, is_retryable, translate

T = TypeVar("T")

MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Operation(Generic[T]):
    """`fn(conn)` inside one transaction. `connection=False` runs it with no database at all."""

    name: str
    fn: Callable[[Any], T]
    read_only: bool = False
    connection: bool = True
    recover: Callable[[ControlPlaneError], T] | None = None
    """When set, a storage failure is handed to this instead of being raised (used for best-effort writes)."""


def perform(conn: Connection, op: Operation[T]) -> T:
    """Run `op` in the transaction the facade opened on `conn` (both facades call this, the async one via run_sync)."""
    begin(conn, read_only=op.read_only)
    return op.fn(conn)


def failure(op: Operation[Any], exc: BaseException, attempt: int) -> ControlPlaneError | None:
    """What to do after `op` raised `exc` on its `attempt`-th try: None to retry, else the error to surface.

    Errors that are not the database's (a `ControlPlaneError`, or a bug) are re-raised unchanged.
    """
    if isinstance(exc, RetryTransaction):
        if attempt < MAX_ATTEMPTS:
            return None
        return StorageError(f"{op.name} failed: it kept conflicting with concurrent writers; nothing was executed")
    if isinstance(exc, DBAPIError) and is_retryable(exc) and attempt < MAX_ATTEMPTS:
        return None
    if isinstance(exc, SQLAlchemyError):
        return translate(exc, op.name)
    raise exc
