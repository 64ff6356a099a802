"""The governed action the benchmark measures: an allowed, unrestricted `propose` with a cost, then `settle`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from agent_control_plane.facade import ControlPlaneFacade

ACTION = "bench_action"
COST = Decimal("0.01")
POLICY: dict[str, Any] = {"default_tier": "always_approve", "actions": {ACTION: "unrestricted"}}
Backend = Literal["sqlite", "postgres"]


class BenchError(Exception):
    """The benchmark could not run a row (a worker failed, or the captured statements cannot be replayed)."""


def propose(cp: ControlPlaneFacade, session_id: str) -> str:
    """Propose the bench action in `session_id`; returns the id of the allowed proposal."""
    decision = cp.propose(session_id, ACTION, cost=COST)
    if not decision.allowed or decision.proposal_id is None:
        raise BenchError(f"the bench action was not allowed: {decision.reason}")
    return decision.proposal_id


def settle(cp: ControlPlaneFacade, proposal_id: str) -> None:
    # An explicit actual cost, as a host that knows its bill passes it.
    cp.settle(proposal_id, actual_cost=COST)


def governed_action(cp: ControlPlaneFacade, session_id: str) -> str:
    """One propose + settle; returns the proposal id."""
    proposal_id = propose(cp, session_id)
    settle(cp, proposal_id)
    return proposal_id
