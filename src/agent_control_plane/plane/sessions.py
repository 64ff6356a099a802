"""Session lifecycle: open with a frozen policy snapshot and budgets, then status changes, each with its event."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from agent_control_plane.clock import from_micros
from agent_control_plane.errors import SessionNotFoundError, SessionStateError
from agent_control_plane.plane import approvals
from agent_control_plane.plane.context import PlaneContext
from agent_control_plane.policy.engine import PolicyEngine
from agent_control_plane.store import eventlog, sessions
from agent_control_plane.store.eventlog import Head
from agent_control_plane.store.statements import CONTROL_KIND
from agent_control_plane.types.events import EventKind
from agent_control_plane.types.sessions import ALLOWED_TRANSITIONS, BudgetSnapshot, SessionInfo, SessionStatus
from agent_control_plane.types.values import canonical_json


def open_session(
    conn: Connection,
    ctx: PlaneContext,
    *,
    name: str,
    agent_id: str | None,
    max_cost: Decimal | None,
    max_action_count: int | None,
    policy: PolicyEngine,
) -> str:
    t = ctx.tables
    at = ctx.now_micros()
    session_id = str(uuid.uuid4())
    digest = policy.policy.digest()
    sessions.store_policy(conn, t, digest, policy.policy.canonical(), at)
    head = sessions.insert(
        conn,
        t,
        session_id=session_id,
        name=name,
        agent_id=agent_id,
        policy_hash=digest,
        max_cost=max_cost,
        max_action_count=max_action_count,
        at=at,
        claimed_events=1,
    )
    payload = {
        "name": name,
        "agent_id": agent_id,
        "policy_hash": digest,
        "max_cost": None if max_cost is None else str(max_cost),
        "max_action_count": max_action_count,
        "status": SessionStatus.ACTIVE.value,
    }
    eventlog.append(conn, t, session_id, head, [(EventKind.SESSION_OPENED, canonical_json(payload), at)])
    ctx.remember_session_policy(session_id, digest, policy)
    return session_id


def change_status(
    conn: Connection, ctx: PlaneContext, session_id: str, target: SessionStatus, reason: str | None
) -> SessionInfo:
    t = ctx.tables
    at = ctx.now_micros()
    row = sessions.claim(conn, t, session_id, 1, at)
    if row is None or row["kind"] == CONTROL_KIND:
        raise SessionNotFoundError(f"unknown session id {session_id!r} (see `acp sessions list`)")
    current = SessionStatus(row["status"])
    if target not in ALLOWED_TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in ALLOWED_TRANSITIONS[current])) or "none"
        raise SessionStateError(
            f"session {session_id} is {current.value}; it cannot become {target.value} "
            f"(allowed from {current.value}: {allowed})"
        )
    sessions.set_status(conn, t, session_id, target)
    payload = {"from": current.value, "to": target.value, "reason": reason}
    eventlog.append(
        conn,
        t,
        session_id,
        Head(row["last_seq"], row["last_hash"]),
        [(EventKind.SESSION_STATUS_CHANGED, canonical_json(payload), at)],
    )
    if not ALLOWED_TRANSITIONS[target]:  # it ended: its waiting tickets can never be used
        approvals.withdraw_pending(conn, ctx, session_id, f"session {session_id} is {target.value}", at)
    return info_from_row({**row, "status": target.value, "updated_at": at})


def get_session(conn: Connection, ctx: PlaneContext, session_id: str) -> SessionInfo:
    row = sessions.get(conn, ctx.tables, session_id)
    if row is None or row["kind"] == CONTROL_KIND:
        raise SessionNotFoundError(f"unknown session id {session_id!r} (see `acp sessions list`)")
    return info_from_row(row)


def list_sessions(
    conn: Connection, ctx: PlaneContext, status: SessionStatus | None, limit: int | None
) -> list[SessionInfo]:
    return [info_from_row(row) for row in sessions.list_rows(conn, ctx.tables, status=status, limit=limit)]


def budget_from_row(row: Mapping[Any, Any]) -> BudgetSnapshot:
    max_cost, max_count = row["max_cost"], row["max_action_count"]
    spent, reserved, used = row["spent_cost"], row["reserved_cost"], int(row["action_count"])
    return BudgetSnapshot(
        max_cost=max_cost,
        spent_cost=spent,
        reserved_cost=reserved,
        remaining_cost=None if max_cost is None else max(max_cost - spent - reserved, Decimal(0)),
        max_action_count=None if max_count is None else int(max_count),
        action_count=used,
        remaining_count=None if max_count is None else max(int(max_count) - used, 0),
    )


def info_from_row(row: Mapping[Any, Any]) -> SessionInfo:
    return SessionInfo(
        session_id=row["id"],
        name=row["name"],
        agent_id=row["agent_id"],
        status=SessionStatus(row["status"]),
        policy_hash=row["policy_hash"],
        budget=budget_from_row(row),
        event_count=int(row["last_seq"]),
        created_at=from_micros(row["created_at"]),
        updated_at=from_micros(row["updated_at"]),
    )
