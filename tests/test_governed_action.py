"""propose → execute → settle, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text

from agent_control_plane import (
    ActionTier,
    AlreadySettledError,
    ControlPlaneFacade,
    DecisionCode,
    IdentityContext,
    InvalidInputError,
    OrgId,
    ProposalNotFoundError,
    SessionNotFoundError,
)
from conftest import Backend


def test_readme_flow_allows_reserves_settles_and_reports_budget(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("nightly-cleanup", agent_id="ops-bot", max_cost=Decimal("50"), max_action_count=100)
    d = cp.propose(
        sid,
        action="read_branch",
        args={"name": "tmp/x"},
        resource="repo/app",
        cost=Decimal("0.25"),
        agent_id="ops-bot",
    )
    assert d.allowed and d.tier is ActionTier.UNRESTRICTED and d.code is DecisionCode.ALLOWED
    assert d.rule == "read_*" and "read_*" in d.reason
    reserved = cp.get_remaining_budget(sid)
    assert reserved["reserved_cost"] == Decimal("0.25")
    assert reserved["remaining_cost"] == Decimal("49.75")
    assert reserved["action_count"] == 1 and reserved["remaining_count"] == 99

    settlement = cp.settle(d.proposal_id, actual_cost=Decimal("0.20"), outcome="succeeded", result={"deleted": True})
    assert settlement.actual_cost == Decimal("0.2") and settlement.overrun == 0
    budget = cp.get_remaining_budget(sid)
    assert budget == {
        "max_cost": Decimal("50"),
        "spent_cost": Decimal("0.2"),
        "reserved_cost": Decimal("0"),
        "remaining_cost": Decimal("49.8"),
        "max_action_count": 100,
        "action_count": 1,
        "remaining_count": 99,
    }


def test_each_tier_gives_the_documented_decision(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("tiers")
    results = {a: cp.propose(sid, action=a) for a in ("read_x", "tidy_x", "delete_x", "rewrite_x", "launch")}
    assert [results[a].allowed for a in results] == [True, True, False, False, False]
    assert results["tidy_x"].tier is ActionTier.AUTO_APPROVE
    assert results["delete_x"].code is DecisionCode.POLICY_BLOCKED
    assert results["rewrite_x"].code is DecisionCode.STEERED
    assert results["launch"].tier is ActionTier.ALWAYS_APPROVE
    assert results["launch"].code is DecisionCode.APPROVAL_REQUIRED
    assert "default tier" in results["launch"].reason
    # Refused proposals reserve nothing.
    assert cp.get_remaining_budget(sid)["action_count"] == 2


def test_fractions_of_a_cent_survive_the_round_trip_exactly(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("tiny", max_cost=Decimal("0.01"))
    for _ in range(2):
        d = cp.propose(sid, action="read_x", cost=Decimal("0.0042"))
        assert d.allowed
        cp.settle(d.proposal_id, actual_cost=Decimal("0.0042"))
    budget = cp.get_remaining_budget(sid)
    assert budget["spent_cost"] == Decimal("0.0084")
    assert budget["remaining_cost"] == Decimal("0.0016")
    assert not cp.propose(sid, action="read_x", cost=Decimal("0.0042")).allowed
    assert cp.propose(sid, action="read_x", cost=Decimal("0.0016")).allowed


def test_cost_budget_denial_names_the_limit_and_reserves_nothing(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("capped", max_cost=Decimal("1"))
    assert cp.propose(sid, action="read_x", cost=Decimal("0.6")).allowed
    d = cp.propose(sid, action="read_x", cost=Decimal("0.6"))
    assert not d.allowed and d.code is DecisionCode.COST_BUDGET_EXCEEDED
    assert "0.6 requested, 0.4 of 1 left" in d.reason
    assert cp.get_remaining_budget(sid)["reserved_cost"] == Decimal("0.6")


def test_action_count_budget_is_exact(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("counted", max_action_count=3)
    allowed = [cp.propose(sid, action="read_x").allowed for _ in range(5)]
    assert allowed == [True, True, True, False, False]
    d = cp.propose(sid, action="read_x")
    assert d.code is DecisionCode.ACTION_COUNT_EXCEEDED and "3 of 3" in d.reason


def test_failed_outcome_releases_the_reservation(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("fails", max_cost=Decimal("1"))
    d = cp.propose(sid, action="read_x", cost=Decimal("1"))
    settlement = cp.settle(d.proposal_id, outcome="failed", result={"error": "timeout"})
    assert settlement.actual_cost == 0
    budget = cp.get_remaining_budget(sid)
    assert budget["spent_cost"] == 0 and budget["reserved_cost"] == 0 and budget["remaining_cost"] == 1


def test_success_without_actual_cost_charges_the_reservation(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("default-charge")
    d = cp.propose(sid, action="read_x", cost=Decimal("0.3"))
    assert cp.settle(d.proposal_id).actual_cost == Decimal("0.3")
    assert cp.get_remaining_budget(sid)["spent_cost"] == Decimal("0.3")


def test_settling_twice_or_settling_a_denial_is_refused(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("once")
    d = cp.propose(sid, action="read_x", cost=Decimal("0.1"))
    cp.settle(d.proposal_id)
    with pytest.raises(AlreadySettledError, match="already settled"):
        cp.settle(d.proposal_id)
    denied = cp.propose(sid, action="delete_x")
    with pytest.raises(AlreadySettledError, match="was denied"):
        cp.settle(denied.proposal_id)
    with pytest.raises(ProposalNotFoundError):
        cp.settle("no-such-proposal")
    assert cp.get_remaining_budget(sid)["spent_cost"] == Decimal("0.1")


def test_overrun_is_recorded_truthfully(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("overrun", max_cost=Decimal("1"))
    d = cp.propose(sid, action="read_x", cost=Decimal("0.5"))
    assert cp.settle(d.proposal_id, actual_cost=Decimal("0.7")).overrun == Decimal("0.2")
    assert cp.get_remaining_budget(sid)["spent_cost"] == Decimal("0.7")


def test_idempotency_key_returns_the_original_decision_without_reserving_twice(
    cp: ControlPlaneFacade,
) -> None:
    sid = cp.open_session("retry", max_cost=Decimal("1"))
    first = cp.propose(sid, action="read_x", cost=Decimal("0.4"), idempotency_key="job-7")
    again = cp.propose(sid, action="read_x", cost=Decimal("0.4"), idempotency_key="job-7")
    assert again.proposal_id == first.proposal_id and again.allowed and again.replayed
    assert cp.get_remaining_budget(sid)["reserved_cost"] == Decimal("0.4")
    other = cp.propose(sid, action="read_x", cost=Decimal("0.4"), idempotency_key="job-8")
    assert other.proposal_id != first.proposal_id
    assert len([e for e in cp.replay(sid) if e.kind == "proposal.decided"]) == 2


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_a_retry_of_a_settled_proposal_is_refused_as_already_settled(cp: ControlPlaneFacade, outcome: str) -> None:
    sid = cp.open_session("retry after settle", max_cost=Decimal("1"))
    first = cp.propose(sid, action="read_x", cost=Decimal("0.4"), idempotency_key="job-7")
    cp.settle(first.proposal_id, outcome=outcome)
    again = cp.propose(sid, action="read_x", cost=Decimal("0.4"), idempotency_key="job-7")
    assert not again.allowed and again.replayed and again.code is DecisionCode.ALREADY_SETTLED
    assert again.proposal_id == first.proposal_id and again.tier is ActionTier.UNRESTRICTED
    assert f"settled as {outcome}" in again.reason and "does not run again" in again.reason
    assert again.trace == first.trace
    budget = cp.get_remaining_budget(sid)
    assert budget["action_count"] == 1 and budget["reserved_cost"] == 0
    with pytest.raises(AlreadySettledError):
        cp.settle(again.proposal_id)


def test_a_retry_before_settling_is_still_allowed_with_its_trace(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("lost response")
    first = cp.propose(sid, action="read_x", idempotency_key="job-1")
    again = cp.propose(sid, action="read_x", idempotency_key="job-1")
    assert again.allowed and again.replayed and again.code is DecisionCode.ALLOWED
    assert again.trace == first.trace and again.trace[-1].name == "read_*"
    assert (again.reason, again.rule, again.risk) == (first.reason, first.rule, first.risk)


def test_a_replayed_steered_decision_keeps_its_guidance(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("steered retry")
    first = cp.propose(sid, action="rewrite_history", idempotency_key="job-1")
    again = cp.propose(sid, action="rewrite_history", idempotency_key="job-1")
    assert first.steering is not None and again.code is DecisionCode.STEERED and again.replayed
    assert again.steering == first.steering and again.trace == first.trace


def test_reusing_an_idempotency_key_in_another_mode_or_for_another_identity_is_refused(
    cp: ControlPlaneFacade,
) -> None:
    sid = cp.open_session("keys and modes")
    cp.propose(sid, action="read_x", dry_run=True, idempotency_key="k")
    with pytest.raises(InvalidInputError, match=r"\(its mode differ\)"):
        cp.propose(sid, action="read_x", idempotency_key="k")
    cp.propose(sid, action="read_x", identity=IdentityContext(org_id=OrgId("acme")), idempotency_key="k2")
    with pytest.raises(InvalidInputError, match=r"\(its identity differ\)"):
        cp.propose(sid, action="read_x", identity=IdentityContext(org_id=OrgId("globex")), idempotency_key="k2")
    assert cp.get_remaining_budget(sid)["action_count"] == 2


def test_reusing_an_idempotency_key_for_another_call_is_refused(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("keys")
    cp.propose(sid, action="read_x", args={"n": 1}, cost=Decimal("0.1"), idempotency_key="k")
    with pytest.raises(InvalidInputError, match=r"'k' was already used .* \(its args, cost differ\)"):
        cp.propose(sid, action="read_x", args={"n": 2}, cost=Decimal("0.2"), idempotency_key="k")
    assert cp.get_remaining_budget(sid)["action_count"] == 1


def test_unknown_session_raises_and_writes_nothing(cp: ControlPlaneFacade) -> None:
    with pytest.raises(SessionNotFoundError, match="unknown session id 'nope'"):
        cp.propose("nope", action="read_x")
    with pytest.raises(SessionNotFoundError, match="control plane's own log"):
        cp.propose("control", action="read_x")


def test_decision_and_its_reservation_are_stored_together(
    cp: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = cp.open_session("rows")
    d = cp.propose(sid, action="read_x", args={"q": 1}, resource="db/users", cost=Decimal("0.5"), agent_id="a1")
    engine = create_engine(backend.url)
    with engine.connect() as conn:
        row = conn.execute(
            text(f"SELECT status, action, resource, agent_id, tier FROM {table_prefix}proposals WHERE id = :id"),
            {"id": d.proposal_id},
        ).one()
    engine.dispose()
    assert tuple(row) == ("reserved", "read_x", "db/users", "a1", "unrestricted")
    decided = [e for e in cp.replay(sid) if e.kind == "proposal.decided"][-1]
    assert decided.payload["proposal_id"] == d.proposal_id
    assert decided.payload["args"] == {"q": 1} and decided.payload["cost"] == "0.5"


def test_proposal_without_agent_is_attributed_to_the_sessions_agent(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("owned", agent_id="ops-bot")
    cp.propose(sid, action="read_x")
    assert cp.replay(sid)[-1].payload["agent_id"] == "ops-bot"
