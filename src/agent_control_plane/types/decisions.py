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


class RiskLevel(StrEnum):
    """How much harm a proposal could do, as the policy (or a `RiskClassifier`) judges it."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return ("low", "medium", "high").index(self.value)


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
    AGENT_NOT_REGISTERED = "agent_not_registered"
    OUTSIDE_CAPABILITIES = "outside_capabilities"
    APPROVAL_DENIED = "approval_denied"
    APPROVAL_EXPIRED = "approval_expired"
    ALREADY_CONSUMED = "already_consumed"
    """An approved ticket was already used by another execution; it authorizes one."""
    ALREADY_SETTLED = "already_settled"
    """A retried proposal (same idempotency key) whose allowed original has since been settled: it ran, failed or
    was interrupted, and does not run again."""
    CONCURRENCY_LIMIT = "concurrency_limit"
    MODEL_ACCESS_DENIED = "model_access_denied"
    TOKEN_BUDGET_EXCEEDED = "token_budget_exceeded"


SEVERITY: dict[ActionTier, int] = {
    ActionTier.BLOCKED: 4,
    ActionTier.STEER: 3,
    ActionTier.ALWAYS_APPROVE: 2,
    ActionTier.AUTO_APPROVE: 1,
    ActionTier.UNRESTRICTED: 0,
}
"""When several sources disagree, the most severe tier wins: deny beats steer beats approval beats allow."""


@dataclass(frozen=True, slots=True)
class SteeringContext:
    """What a steered agent should do instead: guidance to read, and actions it may propose in place of this one."""

    guidance: str
    alternatives: tuple[str, ...] = ()
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One policy entry consulted while deciding, and whether it applied."""

    step: str
    """registration, capability, assignment, rule, actions, default, evaluator or risk."""
    name: str
    matched: bool
    tier: ActionTier | None = None

    def as_dict(self) -> dict[str, object]:
        return {"step": self.step, "name": self.name, "matched": self.matched, "tier": self.tier}


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
    """True when an idempotency key matched an earlier proposal and this is that proposal's decision: the original
    one, except that an allowed proposal already settled comes back refused (`DecisionCode.ALREADY_SETTLED`)."""
    steering: SteeringContext | None = None
    """For a steered proposal: the guidance and alternatives the agent should re-plan with."""
    trace: tuple[TraceStep, ...] = ()
    """The policy entries consulted, in order, ending with the one that chose the tier."""
    risk: RiskLevel | None = None
    """The proposal's risk level, when the policy judges risk (risk rules, a classifier, or auto_approve limits)."""

    @classmethod
    def allow(
        cls,
        tier: ActionTier,
        reason: str,
        *,
        proposal_id: str,
        session_id: str,
        rule: str | None,
        trace: tuple[TraceStep, ...] = (),
        risk: RiskLevel | None = None,
    ) -> Decision:
        return cls(tier, True, reason, DecisionCode.ALLOWED, proposal_id, session_id, rule, trace=trace, risk=risk)

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
        steering: SteeringContext | None = None,
        trace: tuple[TraceStep, ...] = (),
        risk: RiskLevel | None = None,
        ticket_id: str | None = None,
    ) -> Decision:
        return cls(
            tier,
            False,
            reason,
            code,
            proposal_id,
            session_id,
            rule,
            ticket_id,
            steering=steering,
            trace=trace,
            risk=risk,
        )
