"""Events as replayed from the log, and the result of verifying a log's hash chain."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    """Events the control plane writes itself. Their names hold a dot; events a host emits must not."""

    SESSION_OPENED = "session.opened"
    SESSION_STATUS_CHANGED = "session.status_changed"
    PROPOSAL_DECIDED = "proposal.decided"
    PROPOSAL_SETTLED = "proposal.settled"
    KILL_ENGAGED = "kill.engaged"
    KILL_RELEASED = "kill.released"
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_GRANTED = "approval.granted"
    APPROVAL_DENIED = "approval.denied"
    APPROVAL_CONSUMED = "approval.consumed"
    APPROVAL_ESCALATED = "approval.escalated"
    APPROVAL_EXPIRED = "approval.expired"
    TOKEN_USAGE_RECORDED = "token_usage.recorded"
    MODEL_ACCESS_DENIED = "model_access.denied"
    TOKEN_BUDGET_CREATED = "token_budget.created"
    TOKEN_BUDGET_UPDATED = "token_budget.updated"
    TOKEN_BUDGET_DELETED = "token_budget.deleted"


@dataclass(frozen=True, slots=True)
class EventFrame:
    """One event of a session's log. `seq` runs 1, 2, 3 … with no gaps; `hash` chains it to `prev_hash`."""

    session_id: str
    seq: int
    kind: str
    payload: dict[str, Any]
    recorded_at: datetime
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Whether a session's log is intact. When not, `first_bad_seq` and `problem` say where and what."""

    session_id: str
    ok: bool
    events_checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
