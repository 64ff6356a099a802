"""Ticket and grant rows. Every change of a ticket's status is one conditional UPDATE on its current status, so a
ticket is decided once and consumed once, however many processes race for it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, and_, or_, select, update

from agent_control_plane.store.tables import ScopedModelRegistry


def insert_ticket(conn: Connection, t: ScopedModelRegistry, row: dict[str, Any]) -> None:
    conn.execute(t.tickets.insert().values(**row))


def get_ticket(conn: Connection, t: ScopedModelRegistry, ticket_id: str) -> RowMapping | None:
    row = conn.execute(select(t.tickets).where(t.tickets.c.id == ticket_id)).first()
    return None if row is None else row._mapping


def find_ticket(
    conn: Connection, t: ScopedModelRegistry, session_id: str, digest: str, status: str
) -> RowMapping | None:
    k = t.tickets
    stmt = select(k).where(k.c.session_id == session_id, k.c.digest == digest, k.c.status == status)
    row = conn.execute(stmt.order_by(k.c.created_at, k.c.id)).first()
    return None if row is None else row._mapping


def latest_ticket(conn: Connection, t: ScopedModelRegistry, session_id: str, digest: str) -> RowMapping | None:
    k = t.tickets
    stmt = select(k).where(k.c.session_id == session_id, k.c.digest == digest)
    row = conn.execute(stmt.order_by(k.c.created_at.desc(), k.c.id.desc())).first()
    return None if row is None else row._mapping


def move_ticket(
    conn: Connection, t: ScopedModelRegistry, ticket_id: str, *, from_status: str, values: dict[str, Any]
) -> bool:
    """Change a ticket only if it still has `from_status`; False when another transaction got there first."""
    k = t.tickets
    result = conn.execute(update(k).where(k.c.id == ticket_id, k.c.status == from_status).values(**values))
    return result.rowcount == 1


def list_tickets(
    conn: Connection, t: ScopedModelRegistry, *, status: str | None, session_id: str | None, limit: int | None
) -> list[RowMapping]:
    k = t.tickets
    stmt = select(k).order_by(k.c.created_at, k.c.id)
    if status is not None:
        stmt = stmt.where(k.c.status == status)
    if session_id is not None:
        stmt = stmt.where(k.c.session_id == session_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [row._mapping for row in conn.execute(stmt)]


def overdue_tickets(conn: Connection, t: ScopedModelRegistry, now: int) -> list[RowMapping]:
    k = t.tickets
    stmt = select(k).where(k.c.status == "pending", k.c.deadline.is_not(None), k.c.deadline < now)
    return [row._mapping for row in conn.execute(stmt.order_by(k.c.deadline, k.c.id))]


def insert_grant(conn: Connection, t: ScopedModelRegistry, row: dict[str, Any]) -> None:
    conn.execute(t.grants.insert().values(**row))


def usable_grants(conn: Connection, t: ScopedModelRegistry, session_id: str, action: str, now: int) -> list[RowMapping]:
    """Grants of this session for this action that are neither expired nor used up (the resource is checked by
    the caller, since grants may name a glob)."""
    g = t.grants
    stmt = select(g).where(
        g.c.session_id == session_id,
        g.c.action == action,
        or_(g.c.expires_at.is_(None), g.c.expires_at > now),
        or_(g.c.max_uses.is_(None), g.c.uses < g.c.max_uses),
    )
    return [row._mapping for row in conn.execute(stmt.order_by(g.c.created_at, g.c.id))]


def use_grant(conn: Connection, t: ScopedModelRegistry, grant_id: str) -> bool:
    """Count one use, only while uses remain; False when a concurrent use took the last one."""
    g = t.grants
    result = conn.execute(
        update(g)
        .where(
            g.c.id == grant_id, or_(g.c.max_uses.is_(None), and_(g.c.max_uses.is_not(None), g.c.uses < g.c.max_uses))
        )
        .values(uses=g.c.uses + 1)
    )
    return result.rowcount == 1
