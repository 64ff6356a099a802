"""Sessions, their budgets and kill switches as callers see them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TypedDict


class SessionStatus(StrEnum):
    """Lifecycle: created → active → paused ⇄ active → completed | aborted."""

    CREATED = "created"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    ABORTED = "aborted"


ALLOWED_TRANSITIONS: dict[SessionStatus, frozenset[SessionStatus]] = {
    SessionStatus.CREATED: frozenset({SessionStatus.ACTIVE, SessionStatus.ABORTED}),
    SessionStatus.ACTIVE: frozenset({SessionStatus.PAUSED, SessionStatus.COMPLETED, SessionStatus.ABORTED}),
    SessionStatus.PAUSED: frozenset({SessionStatus.ACTIVE, SessionStatus.COMPLETED, SessionStatus.ABORTED}),
    SessionStatus.COMPLETED: frozenset(),
    SessionStatus.ABORTED: frozenset(),
}


class KillScope(StrEnum):
    """What a kill switch stops: everything, one session, or every session's proposals from one agent."""

    SYSTEM = "system"
    SESSION = "session"
    AGENT = "agent"


class BudgetSnapshot(TypedDict):
    """A session's budget at one instant. `None` limits and remainders mean "no limit"."""

    max_cost: Decimal | None
    spent_cost: Decimal
    reserved_cost: Decimal
    remaining_cost: Decimal | None
    max_action_count: int | None
    action_count: int
    remaining_count: int | None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One session as stored."""

    session_id: str
    name: str
    agent_id: str | None
    status: SessionStatus
    policy_hash: str
    budget: BudgetSnapshot
    event_count: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class KillSwitchInfo:
    """One engaged (or released) kill switch."""

    kill_id: str
    scope: KillScope
    target: str | None
    reason: str
    engaged_by: str
    engaged_at: datetime
    released_at: datetime | None = None
    released_by: str | None = None
    release_reason: str | None = None

    def describe(self) -> str:
        what = "system" if self.scope is KillScope.SYSTEM else f"{self.scope.value} {self.target}"
        return (
            f"kill switch ({what}) engaged by {self.engaged_by} at {self.engaged_at:%Y-%m-%d %H:%M:%S}Z: {self.reason}"
        )
