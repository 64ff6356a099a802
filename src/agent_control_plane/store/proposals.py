"""Proposal rows: the record of every decision, and the reservation an allowed one holds until settled."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, RowMapping, select

from agent_control_plane.store.tables import ScopedModelRegistry

ProposalRow = RowMapping


def insert(conn: Connection, t: ScopedModelRegistry, row: dict[str, Any]) -> None:
    t.statements.insert_proposal.run(conn, row)


def find_by_key(conn: Connection, t: ScopedModelRegistry, session_id: str, key: str) -> dict[str, Any] | None:
    """The proposal a session already made under `key`; takes the session lock first (see `lock_session`)."""
    t.statements.lock_session.run(conn, {"p_sid": session_id})
    return t.statements.proposal_by_key.first(conn, {"p_sid": session_id, "p_key": key})


def get(conn: Connection, t: ScopedModelRegistry, proposal_id: str) -> ProposalRow | None:
    p = t.proposals
    row = conn.execute(select(p).where(p.c.id == proposal_id)).first()
    return None if row is None else row._mapping


def session_of(conn: Connection, t: ScopedModelRegistry, proposal_id: str) -> str | None:
    p = t.proposals
    return conn.execute(select(p.c.session_id).where(p.c.id == proposal_id)).scalar_one_or_none()


def unsettled_before(conn: Connection, t: ScopedModelRegistry, before: int) -> list[RowMapping]:
    """Allowed proposals still holding their reservation that were decided before `before` (µs)."""
    p = t.proposals
    stmt = select(p.c.id, p.c.session_id, p.c.created_at).where(p.c.status == "reserved", p.c.created_at < before)
    return [row._mapping for row in conn.execute(stmt.order_by(p.c.created_at, p.c.id))]


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
