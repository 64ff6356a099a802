"""Waking ticket waiters: PostgreSQL LISTEN/NOTIFY, and plain sleeping elsewhere.

A transaction that decides a ticket (or engages a kill switch) sends a NOTIFY on the registry's channel; it is
delivered when that transaction commits. A waiter listens on a connection of its own, outside the pool, and wakes
as soon as anything arrives, then re-reads its ticket (the notification says only "look again"). It still re-reads
on a timer, so a notification lost with a dropped connection only delays it. SQLite has no notifications: waiters
poll with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from agent_control_plane.store.tables import ScopedModelRegistry


def channel(t: ScopedModelRegistry) -> str:
    """The NOTIFY channel of one registry (prefix and schema), so control planes do not wake each other."""
    return f"acp_{(t.schema or 'public').lower()}_{t.table_prefix}tickets"[:63]


def notify(conn: Connection, t: ScopedModelRegistry, payload: str) -> None:
    """Wake the waiters of this registry when the current transaction commits (PostgreSQL only)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": channel(t), "payload": payload})


def _dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """Blocks until a notification arrives or `seconds` pass (a plain sleep where there are no notifications)."""

    def __init__(self, url: URL, t: ScopedModelRegistry) -> None:
        self._conn: Any = None
        if url.get_backend_name() != "postgresql":
            return
        import psycopg

        try:
            self._conn = psycopg.connect(_dsn(url), autocommit=True)
            self._conn.execute(f'LISTEN "{channel(t)}"')
        except psycopg.Error:
            self._conn = None  # waiters still poll; a listener is only a faster wake-up

    def wait(self, seconds: float) -> None:
        if self._conn is None:
            time.sleep(seconds)
            return
        try:
            for _ in self._conn.notifies(timeout=seconds, stop_after=1):
                pass
        except Exception:
            self._conn = None
            time.sleep(seconds)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._conn is not None:
            self._conn.close()


class AsyncListener:
    """The asyncio form of `Listener` (asyncpg or psycopg, whichever the engine uses)."""

    def __init__(self, url: URL, t: ScopedModelRegistry) -> None:
        self._url, self._channel = url, channel(t)
        self._conn: Any = None
        self._woken = asyncio.Event()
        self._asyncpg = url.get_dialect().driver == "asyncpg"

    async def __aenter__(self) -> Self:
        if self._url.get_backend_name() != "postgresql":
            return self
        try:
            if self._asyncpg:
                import asyncpg  # type: ignore[import-untyped]

                self._conn = await asyncpg.connect(_dsn(self._url))
                await self._conn.add_listener(self._channel, lambda *_: self._woken.set())
            else:
                import psycopg

                self._conn = await psycopg.AsyncConnection.connect(_dsn(self._url), autocommit=True)
                await self._conn.execute(f'LISTEN "{self._channel}"')
        except Exception:
            self._conn = None
        return self

    async def wait(self, seconds: float) -> None:
        if self._conn is None:
            await asyncio.sleep(seconds)
        elif self._asyncpg:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), seconds)
            self._woken.clear()
        else:
            try:
                async for _ in self._conn.notifies(timeout=seconds, stop_after=1):
                    pass
            except Exception:
                self._conn = None
                await asyncio.sleep(seconds)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._conn is not None:
            await self._conn.close()
