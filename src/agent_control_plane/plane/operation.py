"""An operation: one unit of work on a Connection, run in one transaction by either facade.

The facades differ only in how they run an `Operation` (`engine.begin()` versus `AsyncConnection.run_sync`); the
operations themselves, and how failures are retried or translated, exist once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from agent_control_plane.errors import ControlPlaneError, StorageError
from agent_control_plane.store.dialect import RetryTransaction, begin, is_retryable, translate

T = TypeVar("T")

MAX_ATTEMPTS = 5


class GatherVerdicts(Exception):
    """Raised inside propose when the session's policy has asynchronous evaluators whose verdicts were not
    gathered yet: the transaction is abandoned (nothing written) and the operation's `refresh` is run instead."""


@dataclass(frozen=True, slots=True)
class Operation(Generic[T]):
    """`fn(conn)` inside one transaction. `connection=False` runs it with no database at all."""

    name: str
    fn: Callable[[Any], T]
    read_only: bool = False
    connection: bool = True
    recover: Callable[[ControlPlaneError], T] | None = None
    """When set, a storage failure is handed to this instead of being raised (used for best-effort writes)."""
    prelude: Callable[[], Awaitable[Operation[T]]] | None = None
    """Awaited before the transaction (outside any lock); returns the operation to run (e.g. with the verdicts
    of asynchronous evaluators filled in)."""
    refresh: Callable[[], Operation[T]] | None = None
    """Builds the operation again after `GatherVerdicts` (now that the session's policy is known)."""
    after: Callable[[T], T] | None = None
    """Called with the result once the transaction has committed; it may raise (e.g. a recorded usage that took a
    budget past its cap raises `TokenBudgetExhaustedError`, and the usage stays recorded)."""

    def finish(self, result: T) -> T:
        return result if self.after is None else self.after(result)


def run_blocking(awaitable: Awaitable[T]) -> T:
    """Await from synchronous code: on this thread when no event loop runs here, else on a private thread."""

    async def wait() -> T:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, wait()).result()


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
