"""Heartbeats: a worker running a long allowed action says it still runs, so it keeps its claim.

Without them, an action that runs longer than its session policy's `concurrency.lease_seconds` loses its leases (a
second action may start on the same key), and one that runs longer than `recovery.interrupted_after_seconds` is
settled as `interrupted` by crash recovery while it still runs. A beat records its time on the proposal (recovery
measures an open action's age from its last beat) and pushes its live leases' expiry to now + `lease_seconds`.

A beat writes no event to the session's log. It changes no budget, authorization or outcome, which is what the log
records; one event per beat would grow the log with the running time of every action (a beat a minute is 1,440
events a day), and appending takes the session's stream lock, which every proposal of the session waits for.
The last beat stays on the proposal row, and the proposal's `proposal.settled` event still closes it in the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from agent_control_plane.clock import from_micros
from agent_control_plane.errors import AlreadySettledError, ControlPlaneError, ProposalNotFoundError
from agent_control_plane.plane import leases
from agent_control_plane.plane.context import PlaneContext
from agent_control_plane.store import proposals
from agent_control_plane.types.decisions import DecisionCode


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What one heartbeat of a running action renewed, and when the next one is due."""

    proposal_id: str
    session_id: str
    beat_at: datetime
    interrupted_after: datetime
    """When crash recovery may settle the action as interrupted unless it beats again (`beat_at` plus its session
    policy's `recovery.interrupted_after_seconds`)."""
    lease_expires_at: datetime | None
    """When its leases now expire; None when it holds none (its session's policy sets no concurrency limits, or
    every lease had lapsed: see `lapsed`)."""
    lapsed: tuple[str, ...] = ()
    """Leases that had already expired, as "resource 'db/main'": they are not renewed, because another action may
    hold that key by now, so this action no longer has it to itself (beat well within `lease_seconds`)."""

    @property
    def due_by(self) -> datetime:
        """The latest time for the next beat to keep both the leases and recovery at bay."""
        if self.lease_expires_at is None:
            return self.interrupted_after
        return min(self.interrupted_after, self.lease_expires_at)


def heartbeat(conn: Connection, ctx: PlaneContext, proposal_id: str) -> Heartbeat:
    """Record a heartbeat of an allowed, unsettled proposal and renew its live leases, in one transaction."""
    at = ctx.now_micros()
    session_id = proposals.mark_heartbeat(conn, ctx.tables, proposal_id, at)
    if session_id is None:
        raise _no_claim(conn, ctx, proposal_id)
    policy = ctx.policy_for_session(conn, session_id).policy
    expires: int | None = None
    lapsed: tuple[str, ...] = ()
    if policy.concurrency.limited:
        expires, lapsed = leases.renew(conn, ctx, proposal_id, policy.concurrency, at)
    return Heartbeat(
        proposal_id=proposal_id,
        session_id=session_id,
        beat_at=from_micros(at),
        interrupted_after=from_micros(at + int(policy.recovery.interrupted_after_seconds * 1_000_000)),
        lease_expires_at=None if expires is None else from_micros(expires),
        lapsed=lapsed,
    )


def _no_claim(conn: Connection, ctx: PlaneContext, proposal_id: str) -> ControlPlaneError:
    """Why a proposal has no claim to keep alive: unknown, never allowed, or already settled."""
    row = proposals.get(conn, ctx.tables, proposal_id)
    if row is None:
        return ProposalNotFoundError(
            f"unknown proposal id {proposal_id!r}: nothing to keep alive (heartbeat the proposal_id of an allowed "
            "Decision)"
        )
    status = row["status"]
    if status == "denied":
        hint = "nothing may run for it"
        if row["code"] == DecisionCode.APPROVAL_REQUIRED.value:
            hint = "once its ticket is approved, `resume` returns the proposal id to run and heartbeat"
        return AlreadySettledError(
            f"proposal {proposal_id} was not allowed ({row['reason']}); it holds no claim to keep alive: {hint}"
        )
    if status == "interrupted":
        return AlreadySettledError(
            f"proposal {proposal_id} is already settled (interrupted): its claim is lost, e.g. crash recovery heard "
            "nothing from it within recovery.interrupted_after_seconds. Stop the work (its settle will be refused), "
            "and propose again if it is still needed; beat more often than that limit"
        )
    return AlreadySettledError(f"proposal {proposal_id} is already settled ({status}): there is nothing to keep alive")
