"""`CrashRecovery`: settle what dead workers left open, and apply approval time-outs, without running anything.

An action allowed but not settled, and not heard from (by a heartbeat, or else since it was decided), for longer
than its session policy's `recovery.interrupted_after_seconds` is settled as `interrupted` (its reservation
released, or charged when the policy says it may have run), its leases released, and that is logged in its session
like any settlement. Nothing is executed again: an interrupted proposal is
closed for good, and a late `settle` of it is refused. Overdue tickets are escalated or expired.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

from sqlalchemy import Connection

from agent_control_plane.plane import approvals, tokens
from agent_control_plane.plane.context import PlaneContext
from agent_control_plane.plane.proposals import Outcome, Settlement, settle
from agent_control_plane.store import proposals
from agent_control_plane.types.values import canonical_json


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What one recovery run did."""

    interrupted: list[Settlement] = field(default_factory=list)
    tickets: dict[str, str] = field(default_factory=dict)
    """Ticket id → escalated / expired."""
    token_reservations: int = 0
    """Token reservations nobody used or released in time, given back to their budgets."""

    def describe(self) -> str:
        released = sum((s.reserved_cost - s.actual_cost for s in self.interrupted), start=0)
        return (
            f"{len(self.interrupted)} interrupted action(s) settled ({released} released), "
            f"{sum(o == 'escalated' for o in self.tickets.values())} ticket(s) escalated, "
            f"{sum(o == 'expired' for o in self.tickets.values())} expired, "
            f"{self.token_reservations} token reservation(s) given back"
        )


def recover(conn: Connection, ctx: PlaneContext, older_than: timedelta | None) -> RecoveryReport:
    """One recovery pass. `older_than` overrides the policies' `interrupted_after_seconds` (e.g. 0 right after a
    restart of the only worker, when nothing can still be running). An action's age counts from its last heartbeat,
    or from its decision when it never beat."""
    at = ctx.now_micros()
    shortest = None if older_than is None else int(older_than / timedelta(microseconds=1))
    report = RecoveryReport()
    candidates = proposals.unsettled_before(conn, ctx.tables, at - (shortest or 0))
    result = {"interrupted": True, "by": "crash recovery"}
    for row in candidates:
        limit = shortest
        if limit is None:
            seconds = ctx.policy_for_session(conn, row["session_id"]).policy.recovery.interrupted_after_seconds
            limit = int(seconds * 1_000_000)
            if row["heard_at"] > at - limit:
                continue
        # Read again under the row lock, which also keeps its worker's settle out until this transaction ends: one
        # settled or heartbeating since the candidates were read is left alone.
        heard = proposals.last_heard(conn, ctx.tables, row["id"])
        if heard is None or heard > at - limit:
            continue
        report.interrupted.append(
            settle(conn, ctx, row["id"], Outcome.INTERRUPTED, None, result, canonical_json(result))
        )
    report.tickets.update(approvals.expire_overdue(conn, ctx))
    return replace(report, token_reservations=tokens.expire_reservations(conn, ctx))
