"""Picking up a ticket's outcome: `resume` (execute an approved call once) and the waiter's check."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection

from agent_control_plane.errors import InvalidInputError
from agent_control_plane.plane import approvals
from agent_control_plane.plane.context import PlaneContext
from agent_control_plane.plane.proposals import ProposalRequest, execute, replayed
from agent_control_plane.policy.choice import TierChoice
from agent_control_plane.store import proposals
from agent_control_plane.types.decisions import ActionTier, Decision, DecisionCode
from agent_control_plane.types.identity import identity_of
from agent_control_plane.types.tickets import TicketStatus


def resume(conn: Connection, ctx: PlaneContext, ticket_id: str, idempotency_key: str | None = None) -> Decision:
    """The outcome of a ticket: on approval, reserve and consume it now (`allowed=True` with a proposal to settle);
    otherwise why not (still pending, denied, expired, or already consumed by someone else).

    With an `idempotency_key` the proposal that consumes the ticket is made under that key, and a resume repeated
    with the same key gets that proposal's decision back instead of "already consumed": still allowed while it is
    not settled (the caller may not have learnt that it was), refused once it is.
    """
    at = ctx.now_micros()
    approvals.expire_if_overdue(conn, ctx, approvals.load(conn, ctx, ticket_id), at)
    row = approvals.load(conn, ctx, ticket_id)
    status = TicketStatus(row["status"])
    if status is not TicketStatus.APPROVED and idempotency_key is None:
        return ticket_outcome(row, status)
    req = _request(conn, ctx, row, idempotency_key)
    earlier = replayed(conn, ctx, req)
    if earlier is not None:
        if earlier.proposal_id == row["proposal_id"]:
            raise InvalidInputError(
                f"idempotency key {idempotency_key!r} names the proposal that asked for ticket {ticket_id}; the "
                "proposal that consumes the ticket needs a key of its own"
            )
        return earlier
    if status is TicketStatus.APPROVED:
        choice = TierChoice(ActionTier.ALWAYS_APPROVE, f"ticket {ticket_id}", "approval")
        authority = approvals.Authority("ticket", ticket_id, row["decided_by"], row["comment"])
        return execute(conn, ctx, req, choice, authority, at)
    return ticket_outcome(row, status)


def _request(
    conn: Connection, ctx: PlaneContext, row: Mapping[Any, Any], idempotency_key: str | None
) -> ProposalRequest:
    """The call a ticket covers, as the proposal that consumes it makes it."""
    req = ProposalRequest(
        session_id=row["session_id"],
        action=row["action"],
        args=json.loads(row["args"]),
        args_text=row["args"],
        resource=row["resource"],
        cost=row["cost"],
        agent_id=row["agent_id"],
        idempotency_key=idempotency_key,
    )
    asked = proposals.get(conn, ctx.tables, row["proposal_id"])
    if asked is None:
        return req
    return replace(  # the call's mode, identity and model estimate, as proposed
        req,
        dry_run=bool(asked["dry_run"]),
        identity=identity_of(asked),
        model_id=asked["model_id"],
        estimated_tokens=None if asked["estimated_tokens"] is None else int(asked["estimated_tokens"]),
    )


def check_ticket(conn: Connection, ctx: PlaneContext, ticket_id: str) -> Decision | None:
    """For a waiter: the ticket's outcome once it has one (consuming an approval), a kill switch that stops it, or
    None while it still waits for a human."""
    at = ctx.now_micros()
    approvals.expire_if_overdue(conn, ctx, approvals.load(conn, ctx, ticket_id), at)
    row = approvals.load(conn, ctx, ticket_id)
    if row["status"] != TicketStatus.PENDING.value:
        return resume(conn, ctx, ticket_id)
    kill = approvals.killed_while_waiting(conn, ctx, row)
    if kill is None:
        return None
    return replace(ticket_outcome(row, TicketStatus.PENDING), code=DecisionCode.KILLED, reason=f"denied: {kill}")


def ticket_outcome(row: Mapping[Any, Any], status: TicketStatus) -> Decision:
    """The (not executing) decision a ticket in `status` stands for."""
    by = row["decided_by"]
    code, reason = {
        TicketStatus.PENDING: (
            DecisionCode.APPROVAL_REQUIRED,
            f"waiting for approval (ticket {row['id']}"
            + (f", escalated to {row['approver_group']})" if row["approver_group"] else ")"),
        ),
        TicketStatus.DENIED: (DecisionCode.APPROVAL_DENIED, f"denied by {by}: {row['comment']}"),
        TicketStatus.EXPIRED: (
            DecisionCode.APPROVAL_EXPIRED,
            f"ticket {row['id']} expired before anyone decided" + (f" ({row['comment']})" if row["comment"] else ""),
        ),
        TicketStatus.CONSUMED: (
            DecisionCode.ALREADY_CONSUMED,
            f"ticket {row['id']} was already consumed (by proposal {row['consumed_by']}); it authorizes one execution",
        ),
    }[status]
    return Decision.deny(
        ActionTier.ALWAYS_APPROVE,
        reason,
        code,
        proposal_id=row["proposal_id"],
        session_id=row["session_id"],
        rule=None,
        ticket_id=row["id"],
    )
