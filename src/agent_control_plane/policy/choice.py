"""`TierChoice`: what the policy decided for one proposal, which entry decided it, and the trace."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent_control_plane.types.decisions import ActionTier, RiskLevel, SteeringContext, TraceStep


@dataclass(frozen=True, slots=True)
class TierChoice:
    """The tier for one proposal, the policy entry that chose it (`None`: the default tier), and why."""

    tier: ActionTier
    rule: str | None
    step: str = "default"
    """Which part of the policy decided: registration, capability, assignment, rule, actions, default, evaluator
    or risk (an auto_approve sent to a human because of its risk or because it was live)."""
    reason: str | None = None
    steering: SteeringContext | None = None
    rules_tried: tuple[str, ...] = field(default=(), repr=False)
    evaluations: tuple[TraceStep, ...] = field(default=(), repr=False)
    overruled: TierChoice | None = field(default=None, repr=False)
    """For an evaluator's or the risk limit's decision: what had been chosen before it."""
    risk: RiskLevel | None = None

    def describe(self, action: str) -> str:
        if self.step in ("registration", "capability", "risk"):
            return f"{self.reason} (action {action!r} is {self.tier.value})"
        if self.step == "assignment":
            return f"action {action!r} is {self.tier.value} by {self.reason}"
        if self.step == "evaluator":
            because = f": {self.reason}" if self.reason else ""
            return f"evaluator {self.rule!r} makes action {action!r} {self.tier.value}{because}"
        if self.step == "rule":
            because = f": {self.reason}" if self.reason else ""
            return f"rule {self.rule!r} makes action {action!r} {self.tier.value}{because}"
        if self.rule is None:
            return f"action {action!r} matched no policy entry; default tier is {self.tier.value}"
        if self.rule == action:
            return f"action {action!r} is {self.tier.value} by policy entry {self.rule!r}"
        return f"action {action!r} is {self.tier.value} by policy pattern {self.rule!r}"

    @property
    def trace(self) -> tuple[TraceStep, ...]:
        if self.overruled is not None:
            return self.overruled.trace + self.evaluations
        if self.step in ("registration", "capability", "assignment"):
            return (TraceStep(self.step, self.rule or "", True, self.tier),)
        tried = [TraceStep("rule", name, False) for name in self.rules_tried]
        if self.step == "rule":
            tried[-1] = TraceStep("rule", tried[-1].name, True, self.tier)
            return (*tried, *self.evaluations)
        return (*tried, TraceStep(self.step, self.rule or "default_tier", True, self.tier), *self.evaluations)
