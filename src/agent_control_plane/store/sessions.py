"""Session rows: creating them, claiming their event head, budget reservation and settlement, status changes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, RowMapping, select, update

from agent_control_plane.store.eventlog import Head
from agent_control_plane.store.statements import SESSION_KIND
from agent_control_plane.store.tables import GENESIS_HASH, ScopedModelRegistry
from agent_control_plane.types.sessions import SessionStatus

SessionRow = RowMapping


def insert(
    conn: Connection,
    t: ScopedModelRegistry,
    *,
    session_id: str,
    name: str,
    agent_id: str | None,
    policy_hash: str,
    max_cost: Decimal | None,
    max_action_count: int | None,
    at: int,
    claimed_events: int,
) -> Head:
    """Create an active session whose first `claimed_events` seqs are claimed for its opening events."""
    conn.execute(
        t.sessions.insert().values(
            id=session_id,
            kind=SESSION_KIND,
            name=name,
            agent_id=agent_id,
            status=SessionStatus.ACTIVE.value,
            policy_hash=policy_hash,
            max_cost=max_cost,
            spent_cost=Decimal(0),
            reserved_cost=Decimal(0),
            max_action_count=max_action_count,
            action_count=0,
            last_seq=claimed_events,
            last_hash=GENESIS_HASH,
            created_at=at,
            updated_at=at,
        )
    )
    return Head(claimed_events, GENESIS_HASH)


def claim(conn: Connection, t: ScopedModelRegistry, session_id: str, count: int, at: int) -> dict[str, Any] | None:
    """Lock the stream row and claim `count` seqs; returns the row as it is after the claim, or None if unknown."""
    return t.statements.claim.first(conn, {"p_sid": session_id, "p_count": count, "p_at": at})


def reserve(
    conn: Connection, t: ScopedModelRegistry, session_id: str, agent_id: str | None, cost: Decimal, at: int
) -> tuple[Head, str | None] | None:
    """Reserve `cost` and one action, and claim one seq, if and only if the session may act.

    Returns the claimed head and the session's own agent id, or None when the session may not act.
    """
    rows = t.statements.reserve.run(conn, {"p_sid": session_id, "p_agent": agent_id, "p_cost": cost, "p_at": at})
    return (Head(rows[0][0], rows[0][1]), rows[0][2]) if rows else None


def settle_budget(
    conn: Connection, t: ScopedModelRegistry, session_id: str, reserved: Decimal, spent: Decimal, at: int
) -> Head:
    """Replace a reservation with the amount actually spent, and claim one seq for the settlement event."""
    params = {"p_sid": session_id, "p_reserved": reserved, "p_spent": spent, "p_at": at}
    rows = t.statements.settle_budget.run(conn, params)
    return Head(rows[0][0], rows[0][1])


def set_status(conn: Connection, t: ScopedModelRegistry, session_id: str, status: SessionStatus) -> None:
    s = t.sessions
    conn.execute(update(s).where(s.c.id == session_id).values(status=status.value))


def get(conn: Connection, t: ScopedModelRegistry, session_id: str) -> SessionRow | None:
    row = conn.execute(select(t.sessions).where(t.sessions.c.id == session_id)).first()
    return None if row is None else row._mapping


def facts_of(conn: Connection, t: ScopedModelRegistry, session_id: str) -> tuple[str | None, int, Decimal]:
    """(agent id, actions so far, cost spent so far) of a session, read under its row lock."""
    rows = t.statements.session_facts.run(conn, {"p_sid": session_id})
    agent_id, count, spent = rows[0]
    return agent_id, int(count), spent


def policy_hash_of(conn: Connection, t: ScopedModelRegistry, session_id: str) -> tuple[str | None, str] | None:
    """(policy hash, kind) of a stream, or None when there is no such stream."""
    rows = t.statements.policy_of_session.run(conn, {"p_sid": session_id})
    return (rows[0][0], rows[0][1]) if rows else None


def list_rows(
    conn: Connection,
    t: ScopedModelRegistry,
    *,
    status: SessionStatus | None = None,
    include_control: bool = False,
    limit: int | None = None,
) -> list[SessionRow]:
    s = t.sessions
    stmt = select(s).order_by(s.c.created_at, s.c.id)
    if not include_control:
        stmt = stmt.where(s.c.kind == SESSION_KIND)
    if status is not None:
        stmt = stmt.where(s.c.status == status.value)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [row._mapping for row in conn.execute(stmt)]


def stream_ids(conn: Connection, t: ScopedModelRegistry) -> list[str]:
    s = t.sessions
    return [row[0] for row in conn.execute(select(s.c.id).order_by(s.c.created_at, s.c.id))]


def store_policy(conn: Connection, t: ScopedModelRegistry, digest: str, body: str, at: int) -> None:
    """Keep a policy snapshot by content hash (written once; later writes of the same policy are no-ops)."""
    p = t.policies
    if conn.execute(select(p.c.hash).where(p.c.hash == digest)).first() is None:
        conn.execute(p.insert().values(hash=digest, body=body, created_at=at))


def load_policy_body(conn: Connection, t: ScopedModelRegistry, digest: str) -> str | None:
    p = t.policies
    return conn.execute(select(p.c.body).where(p.c.hash == digest)).scalar_one_or_none()
