"""What `propose` returns: the tier the policy chose, whether the action may run, and why."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ActionTier(StrEnum):
    """How the policy treats an action, from most to least restricted."""

    BLOCKED = "blocked"
    """Never runs."""
    ALWAYS_APPROVE = "always_approve"
    """Runs only after a human approves it (the fail-closed default for unknown actions)."""
    STEER = "steer"
    """Does not run; the agent gets guidance and re-plans."""
    AUTO_APPROVE = "auto_approve"
    """Runs without a human, within budgets and limits, and is recorded as auto-approved."""
    UNRESTRICTED = "unrestricted"
    """Runs within budgets and limits."""

    @property
    def executes(self) -> bool:
        """Whether a proposal at this tier may run without anybody else's say (budgets permitting)."""
        return self in (ActionTier.AUTO_APPROVE, ActionTier.UNRESTRICTED)


class DecisionCode(StrEnum):
    """The single cause of a decision, for programs; `Decision.reason` says the same for people."""

    ALLOWED = "allowed"
    POLICY_BLOCKED = "policy_blocked"
    APPROVAL_REQUIRED = "approval_required"
    STEERED = "steered"
    KILLED = "killed"
    SESSION_NOT_ACTIVE = "session_not_active"
    COST_BUDGET_EXCEEDED = "cost_budget_exceeded"
    ACTION_COUNT_EXCEEDED = "action_count_exceeded"


@dataclass(frozen=True, slots=True)
class Decision:
    """The control plane's answer to one proposal.

    `allowed` is the only thing a host must check before executing. When it is True, `proposal_id` carries a
    reservation that `settle` must close. `rule` names the policy entry that chose the tier.
    """

    tier: ActionTier
    allowed: bool
    reason: str
    code: DecisionCode
    proposal_id: str
    session_id: str
    rule: str | None = None
    ticket_id: str | None = None
    replayed: bool = False
    """True when an idempotency key matched an earlier proposal and this is that proposal's original decision."""

    @classmethod
    def allow(cls, tier: ActionTier, reason: str, *, proposal_id: str, session_id: str, rule: str | None) -> Decision:
        return cls(tier, True, reason, DecisionCode.ALLOWED, proposal_id, session_id, rule)

    @classmethod
    def deny(
        cls,
        tier: ActionTier,
        reason: str,
        code: DecisionCode,
        *,
        proposal_id: str,
        session_id: str,
        rule: str | None,
    ) -> Decision:
        return cls(tier, False, reason, code, proposal_id, session_id, rule)
