"""Lease rows. A lease key (session, agent or resource) has a lock row; taking its lock first makes counting the
live leases and adding one atomic for every transaction that wants that key."""

from __future__ import annotations

from sqlalchemy import Connection, RowMapping, func, select, update

from agent_control_plane.store.dialect import upsert_into
from agent_control_plane.store.tables import ScopedModelRegistry


def lock_key(conn: Connection, t: ScopedModelRegistry, scope: str, key: str) -> None:
    """Create the key's lock row if needed, then lock it (FOR UPDATE; SQLite's BEGIN IMMEDIATE already holds the
    database write lock) until the transaction ends."""
    k = t.lease_keys
    conn.execute(upsert_into(conn.dialect.name, k).values(scope=scope, key=key).on_conflict_do_nothing())
    conn.execute(select(k.c.scope).where(k.c.scope == scope, k.c.key == key).with_for_update())


def live_count(conn: Connection, t: ScopedModelRegistry, scope: str, key: str, now: int) -> int:
    """Leases on the key neither released nor expired: expired ones are reclaimed simply by not counting."""
    l_ = t.leases
    stmt = select(func.count()).where(
        l_.c.scope == scope, l_.c.key == key, l_.c.released_at.is_(None), l_.c.expires_at > now
    )
    return int(conn.execute(stmt).scalar_one())


def take(
    conn: Connection, t: ScopedModelRegistry, lease_id: str, proposal_id: str, scope: str, key: str, expires_at: int
) -> None:
    conn.execute(
        t.leases.insert().values(
            id=lease_id, proposal_id=proposal_id, scope=scope, key=key, expires_at=expires_at, released_at=None
        )
    )


def release(conn: Connection, t: ScopedModelRegistry, proposal_id: str, now: int) -> int:
    l_ = t.leases
    result = conn.execute(
        update(l_).where(l_.c.proposal_id == proposal_id, l_.c.released_at.is_(None)).values(released_at=now)
    )
    return result.rowcount


def held_by(conn: Connection, t: ScopedModelRegistry, proposal_id: str) -> list[RowMapping]:
    """A proposal's unreleased leases (live or expired): id, scope, key, expires_at, in lock order."""
    l_ = t.leases
    stmt = (
        select(l_.c.id, l_.c.scope, l_.c.key, l_.c.expires_at)
        .where(l_.c.proposal_id == proposal_id, l_.c.released_at.is_(None))
        .order_by(l_.c.scope, l_.c.key)
    )
    return [row._mapping for row in conn.execute(stmt)]


def extend(conn: Connection, t: ScopedModelRegistry, lease_ids: list[str], expires_at: int) -> None:
    """Push the leases' expiry to `expires_at`; one that already expires later keeps its expiry."""
    l_ = t.leases
    conn.execute(update(l_).where(l_.c.id.in_(lease_ids), l_.c.expires_at < expires_at).values(expires_at=expires_at))
