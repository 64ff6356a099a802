"""Proposal rows: the record of every decision, and the reservation an allowed one holds until settled."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, RowMapping, func, select, update

from agent_control_plane.store.tables import ScopedModelRegistry

ProposalRow = RowMapping


def insert(conn: Connection, t: ScopedModelRegistry, row: dict[str, Any]) -> None:
    t.statements.insert_proposal.run(conn, row)


def find_by_key(conn: Connection, t: ScopedModelRegistry, session_id: str, key: str) -> dict[str, Any] | None:
    """The proposal a session already made under `key`; locks the session's row as it looks (see `lock_session`)."""
    row = t.statements.proposal_by_key.first(conn, {"p_sid": session_id, "p_key": key})
    return None if row is None or row["id"] is None else row


def get(conn: Connection, t: ScopedModelRegistry, proposal_id: str) -> ProposalRow | None:
    p = t.proposals
    row = conn.execute(select(p).where(p.c.id == proposal_id)).first()
    return None if row is None else row._mapping


def session_of(conn: Connection, t: ScopedModelRegistry, proposal_id: str) -> str | None:
    p = t.proposals
    return conn.execute(select(p.c.session_id).where(p.c.id == proposal_id)).scalar_one_or_none()


def unsettled_before(conn: Connection, t: ScopedModelRegistry, before: int) -> list[RowMapping]:
    """Allowed proposals still holding their reservation last heard of before `before` (µs): `heard_at` is their
    last heartbeat, or when they were decided if they never beat."""
    p = t.proposals
    heard = func.coalesce(p.c.heartbeat_at, p.c.created_at)
    stmt = select(p.c.id, p.c.session_id, heard.label("heard_at")).where(p.c.status == "reserved", heard < before)
    return [row._mapping for row in conn.execute(stmt.order_by(p.c.created_at, p.c.id))]


def last_heard(conn: Connection, t: ScopedModelRegistry, proposal_id: str) -> int | None:
    """When a proposal still `reserved` was last heard of (µs), read under its row lock; None once it is settled.

    The lock (FOR UPDATE; SQLite's BEGIN IMMEDIATE already serialises writers) makes crash recovery wait for a
    heartbeat of the proposal that is committing, and then read its new time, instead of interrupting an action
    that has just said it still runs.
    """
    p = t.proposals
    stmt = (
        select(func.coalesce(p.c.heartbeat_at, p.c.created_at))
        .where(p.c.id == proposal_id, p.c.status == "reserved")
        .with_for_update()
    )
    heard: int | None = conn.execute(stmt).scalar_one_or_none()
    return heard


def mark_heartbeat(conn: Connection, t: ScopedModelRegistry, proposal_id: str, at: int) -> str | None:
    """Record a heartbeat of a proposal still `reserved`; its session id, or None when no such proposal is open.

    The UPDATE locks the proposal row, so a settle (or a recovery) of the same proposal runs wholly before or
    wholly after the beat.
    """
    p = t.proposals
    stmt = (
        update(p)
        .where(p.c.id == proposal_id, p.c.status == "reserved")
        .values(heartbeat_at=at)
        .returning(p.c.session_id)
    )
    session_id: str | None = conn.execute(stmt).scalar_one_or_none()
    return session_id


def mark_settled(
    conn: Connection,
    t: ScopedModelRegistry,
    proposal_id: str,
    *,
    status: str,
    actual_cost: Decimal | None,
    charge_reserved: bool,
    result: str,
    at: int,
) -> dict[str, Any] | None:
    """Close a reservation once: only a proposal still `reserved` matches. Returns (session_id, cost, …) or None.

    With no `actual_cost`, the charge is the reserved cost when `charge_reserved`, else zero.
    """
    return t.statements.settle_proposal.first(
        conn,
        {
            "p_pid": proposal_id,
            "p_status": status,
            "p_actual": actual_cost,
            "p_charge": 1 if charge_reserved else 0,
            "p_result": result,
            "p_at": at,
        },
    )
