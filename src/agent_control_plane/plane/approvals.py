"""`ApprovalGate`'s operations: tickets for calls that need a human, their decisions, grants, and time-outs.

A ticket is bound to the digest of the exact call (session, agent, action, canonical args, resource, cost, and
its mode, identity, model and token estimate), so approving it authorizes that call and no other. A session grant
from `approve_for_session` covers the ticket's action with any arguments, within its scope, for the identity of the
ticket's call, and, when that call was a dry run, for dry runs only. An approved ticket, or a grant, is consumed
inside the transaction that reserves the budget for the execution, by a conditional UPDATE on its status (or
remaining uses): one caller wins, every other sees it consumed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, RowMapping

from agent_control_plane.clock import from_micros, to_micros
from agent_control_plane.errors import InvalidInputError, NotFoundError, SessionStateError
from agent_control_plane.plane.context import PlaneContext
from agent_control_plane.plane.events import PendingEvent, append_to_stream
from agent_control_plane.store import approvals as rows
from agent_control_plane.store import kills, proposals, sessions
from agent_control_plane.store.notify import notify
from agent_control_plane.types.events import EventKind
from agent_control_plane.types.identity import ANYONE, IdentityContext, identity_of
from agent_control_plane.types.tickets import GrantScope, Ticket, TicketStatus
from agent_control_plane.types.values import canonical_json, tidy

if TYPE_CHECKING:
    from agent_control_plane.plane.proposals import ProposalRequest


class TicketNotFoundError(NotFoundError):
    """The ticket id is not known to this control plane."""


def call_digest(
    session_id: str,
    agent_id: str | None,
    action: str,
    args_text: str,
    resource: str | None,
    cost: Decimal,
    *,
    dry_run: bool = False,
    identity: IdentityContext = ANYONE,
    model_id: str | None = None,
    estimated_tokens: int | None = None,
) -> str:
    """sha256 of the canonical call: a proposal differing in one byte of its args, in its mode, its identity, its
    model or its token estimate has another digest.

    The mode, identity parts, model and estimate that are present (dry runs, identities, model calls) are one JSON
    object after the other fields; absent ones are left out, so a plain live call has the digest it always had.
    """
    parts: list[Any] = [session_id, agent_id, action, resource, str(tidy(cost))]
    bound = {
        name: value
        for name, value in (
            ("mode", "dry_run" if dry_run else None),
            ("org_id", identity.org_id),
            ("team_id", identity.team_id),
            ("user_id", identity.user_id),
            ("model_id", model_id),
            ("estimated_tokens", estimated_tokens),
        )
        if value is not None
    }
    if bound:
        parts.append(bound)
    return hashlib.sha256(f"{canonical_json(parts)}\n{args_text}".encode()).hexdigest()


def digest_of(req: ProposalRequest) -> str:
    return call_digest(
        req.session_id,
        req.agent_id,
        req.action,
        req.args_text,
        req.resource,
        req.cost,
        dry_run=req.dry_run,
        identity=req.identity,
        model_id=req.model_id,
        estimated_tokens=req.estimated_tokens,
    )


def digest_of_row(proposal: Mapping[Any, Any]) -> str:
    """The digest of the call a stored proposal made."""
    tokens = proposal["estimated_tokens"]
    return call_digest(
        proposal["session_id"],
        proposal["agent_id"],
        proposal["action"],
        proposal["args"],
        proposal["resource"],
        proposal["cost"],
        dry_run=bool(proposal["dry_run"]),
        identity=identity_of(proposal),
        model_id=proposal["model_id"],
        estimated_tokens=None if tokens is None else int(tokens),
    )


@dataclass(frozen=True, slots=True)
class Authority:
    """What lets a call that needs a human run: an approved ticket for it, or a session grant covering it."""

    kind: str
    """ticket or grant."""
    authority_id: str
    approver: str
    comment: str | None = None

    def describe(self) -> str:
        said = f": {self.comment}" if self.comment else ""
        if self.kind == "ticket":
            return f"approved by {self.approver} (ticket {self.authority_id}){said}"
        return f"approved for this session by {self.approver} (grant {self.authority_id})"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.authority_id, "approver": self.approver}


def find_authority(conn: Connection, ctx: PlaneContext, req: ProposalRequest, at: int) -> Authority | None:
    t = ctx.tables
    approved = rows.find_ticket(conn, t, req.session_id, digest_of(req), TicketStatus.APPROVED.value)
    if approved is not None:
        return Authority("ticket", approved["id"], approved["decided_by"], approved["comment"])
    for grant in rows.usable_grants(conn, t, req.session_id, req.action, at):
        if _grant_covers(grant, req):
            return Authority("grant", grant["id"], grant["granted_by"])
    return None


def _grant_covers(grant: Mapping[Any, Any], req: ProposalRequest) -> bool:
    """Whether a usable grant of the call's action covers it: a resource in the grant's scope, the identity of the
    call the grant was given on, and not a live call when that one was a dry run (approving a rehearsal is not
    approving the real thing; a live call's grant does cover its dry runs)."""
    if grant["resource"] is not None and not fnmatch.fnmatchcase(req.resource or "", grant["resource"]):
        return False
    if grant["dry_run"] and not req.dry_run:
        return False
    return identity_of(grant) == req.identity


def ticket_for_call(conn: Connection, ctx: PlaneContext, proposal: Mapping[Any, Any]) -> str | None:
    """The newest ticket for the exact call a stored proposal made (to give a replayed decision its ticket)."""
    found = rows.latest_ticket(conn, ctx.tables, proposal["session_id"], digest_of_row(proposal))
    return None if found is None else str(found["id"])


def consume(conn: Connection, ctx: PlaneContext, authority: Authority, proposal_id: str, at: int) -> bool:
    """Use the authority for `proposal_id`; False when a concurrent transaction used it up first."""
    if authority.kind == "grant":
        return rows.use_grant(conn, ctx.tables, authority.authority_id)
    values = {"status": TicketStatus.CONSUMED.value, "consumed_by": proposal_id}
    return rows.move_ticket(
        conn, ctx.tables, authority.authority_id, from_status=TicketStatus.APPROVED.value, values=values
    )


def refused_before(conn: Connection, ctx: PlaneContext, req: ProposalRequest) -> RowMapping | None:
    """The ticket in which a human denied this exact call in this session, if one did: a denial sticks, so the
    agent asking again gets the human's answer instead of a fresh ticket for the same question."""
    return rows.find_ticket(conn, ctx.tables, req.session_id, digest_of(req), TicketStatus.DENIED.value)


def request(conn: Connection, ctx: PlaneContext, req: ProposalRequest, reason: str, proposal_id: str, at: int) -> str:
    """The pending ticket for this exact call: the one already waiting, or a new one with the policy's deadline."""
    t = ctx.tables
    digest = digest_of(req)
    waiting = rows.find_ticket(conn, t, req.session_id, digest, TicketStatus.PENDING.value)
    if waiting is not None:
        return str(waiting["id"])
    settings = ctx.policy_for_session(conn, req.session_id).policy.approvals
    ticket_id = str(uuid.uuid4())
    rows.insert_ticket(
        conn,
        t,
        {
            "id": ticket_id,
            "session_id": req.session_id,
            "proposal_id": proposal_id,
            "digest": digest,
            "agent_id": req.agent_id,
            "action": req.action,
            "resource": req.resource,
            "args": req.args_text,
            "cost": req.cost,
            "reason": reason,
            "status": TicketStatus.PENDING.value,
            "deadline": at + int(settings.timeout_seconds * 1_000_000),
            "created_at": at,
        },
    )
    return ticket_id


def load(conn: Connection, ctx: PlaneContext, ticket_id: str) -> RowMapping:
    row = rows.get_ticket(conn, ctx.tables, ticket_id)
    if row is None:
        raise TicketNotFoundError(f"unknown ticket id {ticket_id!r} (see `acp tickets list`)")
    return row


def ticket_from_row(row: RowMapping) -> Ticket:
    def when(micros: int | None) -> Any:
        return None if micros is None else from_micros(micros)

    return Ticket(
        ticket_id=row["id"],
        session_id=row["session_id"],
        proposal_id=row["proposal_id"],
        digest=row["digest"],
        agent_id=row["agent_id"],
        action=row["action"],
        resource=row["resource"],
        args=json.loads(row["args"]),
        cost=row["cost"],
        reason=row["reason"],
        status=TicketStatus(row["status"]),
        approver_group=row["approver_group"],
        deadline=when(row["deadline"]),
        decided_by=row["decided_by"],
        decided_at=when(row["decided_at"]),
        comment=row["comment"],
        consumed_by=row["consumed_by"],
        created_at=from_micros(row["created_at"]),
    )


def _log(
    conn: Connection, ctx: PlaneContext, row: RowMapping, kind: EventKind, payload: dict[str, Any], at: int
) -> None:
    """Record a ticket's change in its session's log, and wake whoever waits on it (after commit)."""
    event = PendingEvent(row["session_id"], kind, canonical_json({"ticket_id": row["id"], **payload}), at)
    append_to_stream(conn, ctx, row["session_id"], [event])
    notify(conn, ctx.tables, str(row["id"]))


def _pending(conn: Connection, ctx: PlaneContext, ticket_id: str, at: int) -> RowMapping:
    """The ticket, which must still wait for a decision (time-outs are applied first)."""
    expire_if_overdue(conn, ctx, load(conn, ctx, ticket_id), at)
    row = load(conn, ctx, ticket_id)
    if row["status"] != TicketStatus.PENDING.value:
        by = f" by {row['decided_by']}" if row["decided_by"] else ""
        raise SessionStateError(f"ticket {ticket_id} is already {row['status']}{by}; it cannot be decided again")
    return row


def _check_approver(row: RowMapping, approver: str) -> None:
    if row["agent_id"] is not None and approver == row["agent_id"]:
        raise InvalidInputError(f"{approver!r} requested this action; an agent cannot approve or deny its own call")


def approve(
    conn: Connection, ctx: PlaneContext, ticket_id: str, approver: str, comment: str | None, scope: GrantScope | None
) -> Ticket:
    """Approve the call once (or, with `scope`, also grant the same action for the rest of the session)."""
    at = ctx.now_micros()
    row = _pending(conn, ctx, ticket_id, at)
    _check_approver(row, approver)
    values = {"status": TicketStatus.APPROVED.value, "decided_by": approver, "decided_at": at, "comment": comment}
    if not rows.move_ticket(conn, ctx.tables, ticket_id, from_status=TicketStatus.PENDING.value, values=values):
        raise SessionStateError(f"ticket {ticket_id} was decided by someone else at the same moment")
    payload: dict[str, Any] = {"by": approver, "comment": comment}
    if scope is not None:
        grant_id = str(uuid.uuid4())
        expires = None if scope.expires_at is None else to_micros(scope.expires_at)
        # The grant is bound to the mode and identity of the call the ticket asks for (its proposal's row).
        asked = proposals.get(conn, ctx.tables, row["proposal_id"])
        dry_run = True if asked is None else bool(asked["dry_run"])  # unknown: the narrower grant
        identity = ANYONE if asked is None else identity_of(asked)
        rows.insert_grant(
            conn,
            ctx.tables,
            {
                "id": grant_id,
                "session_id": row["session_id"],
                "ticket_id": ticket_id,
                "action": row["action"],
                "resource": scope.resource,
                "max_uses": scope.max_uses,
                "uses": 0,
                "expires_at": expires,
                "granted_by": approver,
                "created_at": at,
                "dry_run": dry_run,
                **identity.as_dict(),
            },
        )
        payload["grant"] = {
            "id": grant_id,
            "action": row["action"],
            "resource": scope.resource,
            "max_uses": scope.max_uses,
            "expires_at": expires,
            "mode": "dry_run" if dry_run else "live",
        }
        if identity != ANYONE:
            payload["grant"]["identity"] = identity.as_dict()
    _log(conn, ctx, row, EventKind.APPROVAL_GRANTED, payload, at)
    return ticket_from_row(load(conn, ctx, ticket_id))


def deny(conn: Connection, ctx: PlaneContext, ticket_id: str, approver: str, reason: str) -> Ticket:
    at = ctx.now_micros()
    row = _pending(conn, ctx, ticket_id, at)
    _check_approver(row, approver)
    values = {"status": TicketStatus.DENIED.value, "decided_by": approver, "decided_at": at, "comment": reason}
    if not rows.move_ticket(conn, ctx.tables, ticket_id, from_status=TicketStatus.PENDING.value, values=values):
        raise SessionStateError(f"ticket {ticket_id} was decided by someone else at the same moment")
    _log(conn, ctx, row, EventKind.APPROVAL_DENIED, {"by": approver, "reason": reason}, at)
    return ticket_from_row(load(conn, ctx, ticket_id))


def expire_if_overdue(conn: Connection, ctx: PlaneContext, row: RowMapping, at: int) -> str | None:
    """`TimeoutEscalation` for one ticket: past its deadline, escalate it once (when the policy says so) or expire
    it. Returns what happened ("escalated", "expired") or None."""
    if row["status"] != TicketStatus.PENDING.value or row["deadline"] is None or row["deadline"] >= at:
        return None
    settings = ctx.policy_for_session(conn, row["session_id"]).policy.approvals
    pending = TicketStatus.PENDING.value
    if settings.on_timeout == "escalate" and row["approver_group"] is None and settings.escalate_to:
        deadline = at + int(settings.escalation_timeout_seconds * 1_000_000)
        values = {"approver_group": settings.escalate_to, "deadline": deadline}
        if rows.move_ticket(conn, ctx.tables, row["id"], from_status=pending, values=values):
            _log(conn, ctx, row, EventKind.APPROVAL_ESCALATED, {"to": settings.escalate_to, "deadline": deadline}, at)
            return "escalated"
        return None
    values = {"status": TicketStatus.EXPIRED.value, "decided_at": at}
    if rows.move_ticket(conn, ctx.tables, row["id"], from_status=pending, values=values):
        _log(conn, ctx, row, EventKind.APPROVAL_EXPIRED, {"deadline": row["deadline"]}, at)
        return "expired"
    return None


def withdraw_pending(conn: Connection, ctx: PlaneContext, session_id: str, why: str, at: int) -> list[str]:
    """Expire the session's pending tickets, because the session ended (`why`): nobody is asked to approve a call
    that could no longer run, and whoever waits on one wakes up. Returns their ids."""
    pending = TicketStatus.PENDING.value
    withdrawn = []
    for row in rows.list_tickets(conn, ctx.tables, status=pending, session_id=session_id, limit=None):
        values = {"status": TicketStatus.EXPIRED.value, "decided_at": at, "comment": why}
        if rows.move_ticket(conn, ctx.tables, row["id"], from_status=pending, values=values):
            _log(conn, ctx, row, EventKind.APPROVAL_EXPIRED, {"deadline": row["deadline"], "reason": why}, at)
            withdrawn.append(str(row["id"]))
    return withdrawn


def expire_overdue(conn: Connection, ctx: PlaneContext) -> dict[str, str]:
    """Apply time-outs to every overdue pending ticket: ticket id → escalated / expired."""
    at = ctx.now_micros()
    outcomes = {}
    for row in rows.overdue_tickets(conn, ctx.tables, at):
        outcome = expire_if_overdue(conn, ctx, row, at)
        if outcome is not None:
            outcomes[str(row["id"])] = outcome
    return outcomes


def killed_while_waiting(conn: Connection, ctx: PlaneContext, row: RowMapping) -> str | None:
    """The kill switch (described) that stops the ticket's call, if one is engaged: waiters wake up on it."""
    session = sessions.get(conn, ctx.tables, row["session_id"])
    agents = [row["agent_id"], None if session is None else session["agent_id"]]
    covering = kills.engaged_covering(conn, ctx.tables, row["session_id"], agents)
    return ctx.kill_info(covering[0]).describe() if covering else None


def get(conn: Connection, ctx: PlaneContext, ticket_id: str) -> Ticket:
    return ticket_from_row(load(conn, ctx, ticket_id))


def list_all(
    conn: Connection, ctx: PlaneContext, status: TicketStatus | None, session_id: str | None, limit: int | None
) -> list[Ticket]:
    found = rows.list_tickets(
        conn, ctx.tables, status=None if status is None else status.value, session_id=session_id, limit=limit
    )
    return [ticket_from_row(row) for row in found]
