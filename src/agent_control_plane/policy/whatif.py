"""What-if: decide recorded proposals again under another policy and report every decision that would change.

Pure: it takes the proposals as they were recorded (with the session facts and the time they were decided at)
and a compiled policy, and returns the differences. Reading the proposals from the event log is the plane's job.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from agent_control_plane.policy.conditions import Facts
from agent_control_plane.policy.engine import PolicyEngine
from agent_control_plane.types.decisions import ActionTier


@dataclass(frozen=True, slots=True)
class RecordedProposal:
    """A proposal as the event log recorded it: where, when, on what facts, and the tier it got then."""

    session_id: str
    seq: int
    recorded_at: datetime
    facts: Facts
    tier: ActionTier
    rule: str | None


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """One recorded proposal whose tier (or deciding entry) would differ under the new policy."""

    proposal: RecordedProposal
    tier: ActionTier
    rule: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class WhatIfReport:
    """How many recorded proposals were decided again, and which would change."""

    evaluated: int
    changes: list[PolicyChange] = field(default_factory=list)

    @property
    def transitions(self) -> Counter[tuple[ActionTier, ActionTier]]:
        """(old tier, new tier) → count, for proposals whose tier changes."""
        return Counter((c.proposal.tier, c.tier) for c in self.changes if c.proposal.tier is not c.tier)


def what_if(engine: PolicyEngine, recorded: list[RecordedProposal]) -> WhatIfReport:
    """Decide every recorded proposal under `engine`; keep those whose tier or deciding entry changes."""
    changes = []
    for proposal in recorded:
        choice = engine.decide(proposal.facts)
        if choice.tier is not proposal.tier or choice.rule != proposal.rule:
            changes.append(PolicyChange(proposal, choice.tier, choice.rule, choice.describe(proposal.facts.action)))
    return WhatIfReport(len(recorded), changes)
