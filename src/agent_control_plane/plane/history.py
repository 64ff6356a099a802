"""Reading recorded proposals back out of the event log, with the session facts they were decided on."""

from __future__ import annotations

import json
from decimal import Decimal

from sqlalchemy import Connection

from agent_control_plane.clock import from_micros
from agent_control_plane.errors import SessionNotFoundError
from agent_control_plane.plane.context import PlaneContext
from agent_control_plane.policy.conditions import Facts
from agent_control_plane.policy.whatif import RecordedProposal
from agent_control_plane.store import eventlog, sessions
from agent_control_plane.types.decisions import ActionTier
from agent_control_plane.types.events import EventKind


def recorded_proposals(
    conn: Connection, ctx: PlaneContext, session_id: str | None, since_micros: int | None
) -> list[RecordedProposal]:
    """Every `proposal.decided` event (of one session, or all; at or after `since`), oldest first per session.

    Session facts are rebuilt by replaying each log from its start: actions so far counts the allowed decisions
    before the proposal, cost so far sums the settlements before it.
    """
    if session_id is not None:
        if sessions.get(conn, ctx.tables, session_id) is None:
            raise SessionNotFoundError(f"unknown session id {session_id!r} (see `acp sessions list`)")
        streams = [session_id]
    else:
        streams = [row["id"] for row in sessions.list_rows(conn, ctx.tables)]
    found: list[RecordedProposal] = []
    for stream in streams:
        count, spent = 0, Decimal(0)
        for row in eventlog.iterate(conn, ctx.tables, stream):
            if row.kind == EventKind.PROPOSAL_SETTLED:
                spent += Decimal(json.loads(row.payload)["actual_cost"])
                continue
            if row.kind != EventKind.PROPOSAL_DECIDED:
                continue
            payload = json.loads(row.payload)
            if since_micros is None or row.recorded_at >= since_micros:
                when = from_micros(row.recorded_at)
                identity = payload.get("identity") or {}
                facts = Facts(
                    action=payload["action"],
                    args=payload["args"],
                    resource=payload["resource"],
                    agent=payload["agent_id"],
                    cost=Decimal(payload["cost"]),
                    mode=payload.get("mode", "live"),
                    org=identity.get("org_id"),
                    team=identity.get("team_id"),
                    user=identity.get("user_id"),
                    session_action_count=count,
                    session_spent_cost=spent,
                    now=when,
                )
                found.append(
                    RecordedProposal(stream, row.seq, when, facts, ActionTier(payload["tier"]), payload["rule"])
                )
            if payload["allowed"]:
                count += 1
    return found
