"""One decision for a model call: tool policy, session budget, token budget and model access in one `propose`."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest

from agent_control_plane import (
    AlreadySettledError,
    ControlPlaneFacade,
    ControlPlaneSetup,
    DecisionCode,
    IdentityContext,
    ManualClock,
    ModelId,
    OrgId,
    TokenBudgetConfig,
    TokenBudgetExhaustedError,
    TokenUsage,
    UserId,
)
from conftest import Backend

POLICY = {
    "default_tier": "always_approve",
    "actions": {"llm_call": "unrestricted", "llm_review": "always_approve"},
    "rules": [{"name": "no-globex", "when": {"field": "org", "eq": "globex"}, "tier": "blocked"}],
}
MODELS = {"models": {"haiku": "standard", "opus": "restricted"}}
ACME = IdentityContext(org_id=OrgId("tenant-acme"))
ALICE = IdentityContext(org_id=OrgId("tenant-acme"), user_id=UserId("alice"))


def build(backend: Backend, table_prefix: str, clock: ManualClock, **budget: object) -> ControlPlaneFacade:
    config = TokenBudgetConfig(ACME, "daily", **budget)  # type: ignore[arg-type]
    return ControlPlaneSetup(
        backend.url,
        policy=POLICY,
        token_budget_configs=[config],
        model_policy=MODELS,
        clock=clock,
        table_prefix=table_prefix,
    ).build()


def reserved_tokens(cp: ControlPlaneFacade) -> tuple[int, int]:
    with cp.token_budget_tracker() as t:
        (state,) = t.get_budget_states(ACME)
    return state.tokens_used, state.tokens_reserved


def test_an_allowed_model_call_reserves_its_estimate_and_settle_records_the_bill(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    cp = build(backend, table_prefix, clock, max_tokens=10_000)
    sid = cp.open_session("chat", max_cost=Decimal("1"))
    d = cp.propose(sid, "llm_call", identity=ALICE, model_id="haiku", estimated_tokens=4000, cost=Decimal("0.02"))
    assert d.allowed, d.reason
    assert reserved_tokens(cp) == (0, 4000)
    usage = TokenUsage(model_id=ModelId("haiku"), input_tokens=2500, output_tokens=700, estimated_cost_usd="0.015")
    settled = cp.settle(d.proposal_id, actual_cost=Decimal("0.015"), token_usage=usage)
    assert settled.token_usage is not None and settled.token_usage.states[0].tokens_used == 3200
    assert reserved_tokens(cp) == (3200, 0)
    events = cp.replay(sid)
    decided = next(e for e in events if e.kind == "proposal.decided")
    assert decided.payload["identity"]["user_id"] == "alice" and decided.payload["estimated_tokens"] == 4000
    recorded = [e for e in events if e.kind == "token_usage.recorded"]
    assert len(recorded) == 1 and recorded[0].payload["proposal_id"] == d.proposal_id
    assert recorded[0].payload["reservation_released"] is True
    assert cp.verify(sid).ok
    cp.close()


def test_a_model_the_identity_may_not_use_is_denied_before_any_ticket_or_reservation(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    cp = build(backend, table_prefix, clock, max_tokens=10_000)
    sid = cp.open_session("chat")
    for action in ("llm_call", "llm_review"):
        d = cp.propose(sid, action, identity=ALICE, model_id="opus", estimated_tokens=10)
        assert (d.allowed, d.code, d.ticket_id) == (False, DecisionCode.MODEL_ACCESS_DENIED, None)
        assert "model 'opus' is restricted" in d.reason
    assert cp.list_tickets() == []
    assert reserved_tokens(cp) == (0, 0)
    denials = [e.payload["model_id"] for e in cp.replay(sid) if e.kind == "model_access.denied"]
    assert denials == ["opus", "opus"]
    assert cp.verify(sid).ok
    cp.close()


def test_a_call_over_the_token_budget_is_denied_and_reserves_nothing(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    cp = build(backend, table_prefix, clock, max_tokens=1000)
    sid = cp.open_session("chat", max_cost=Decimal("1"))
    d = cp.propose(sid, "llm_call", identity=ALICE, model_id="haiku", estimated_tokens=1500, cost=Decimal("0.01"))
    assert (d.allowed, d.code) == (False, DecisionCode.TOKEN_BUDGET_EXCEEDED)
    assert "1500 tokens requested, 1000 of 1000 left" in d.reason
    budget = cp.get_remaining_budget(sid)
    assert (budget["reserved_cost"], budget["action_count"]) == (0, 0)
    assert reserved_tokens(cp) == (0, 0)
    cp.close()


def test_when_the_session_refuses_the_token_reservation_is_given_back(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    cp = build(backend, table_prefix, clock, max_tokens=10_000)
    sid = cp.open_session("small", max_cost=Decimal("0.01"))
    d = cp.propose(sid, "llm_call", identity=ALICE, model_id="haiku", estimated_tokens=100, cost=Decimal("0.05"))
    assert d.code is DecisionCode.COST_BUDGET_EXCEEDED
    cp.kill_session(sid, reason="test", by="t")
    killed = cp.propose(sid, "llm_call", identity=ALICE, model_id="haiku", estimated_tokens=100)
    assert killed.code is DecisionCode.KILLED
    assert reserved_tokens(cp) == (0, 0)
    cp.close()


def test_a_failed_or_interrupted_call_gives_its_reservation_back(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    cp = build(backend, table_prefix, clock, max_tokens=10_000)
    sid = cp.open_session("chat")
    failed = cp.propose(sid, "llm_call", identity=ALICE, model_id="haiku", estimated_tokens=3000)
    lost = cp.propose(sid, "llm_call", identity=ALICE, model_id="haiku", estimated_tokens=2000)
    assert reserved_tokens(cp) == (0, 5000)
    cp.settle(failed.proposal_id, outcome="failed")
    assert reserved_tokens(cp) == (0, 2000)
    clock.advance(timedelta(hours=2))
    report = cp.recover(older_than=timedelta(0))
    assert [s.proposal_id for s in report.interrupted] == [lost.proposal_id]
    assert reserved_tokens(cp) == (0, 0)
    cp.close()


def test_settling_with_usage_past_the_cap_commits_then_raises(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    cp = build(backend, table_prefix, clock, max_tokens=1000)
    sid = cp.open_session("chat")
    d = cp.propose(sid, "llm_call", identity=ALICE, model_id="haiku", estimated_tokens=900)
    usage = TokenUsage(model_id=ModelId("haiku"), input_tokens=1000, output_tokens=400)
    with pytest.raises(TokenBudgetExhaustedError, match="1400 of 1000 tokens used"):
        cp.settle(d.proposal_id, token_usage=usage)
    with pytest.raises(AlreadySettledError):
        cp.settle(d.proposal_id)
    assert reserved_tokens(cp) == (1400, 0)
    cp.close()


def test_identity_feeds_the_policys_org_team_and_user_conditions(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    cp = build(backend, table_prefix, clock)
    sid = cp.open_session("chat")
    globex = IdentityContext(org_id=OrgId("globex"))
    d = cp.propose(sid, "llm_call", identity=globex)
    assert (d.code, d.rule) == (DecisionCode.POLICY_BLOCKED, "no-globex")
    assert cp.propose(sid, "llm_call", identity=ALICE).allowed
    cp.close()


def test_an_approved_model_call_keeps_its_identity_and_estimate(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    cp = build(backend, table_prefix, clock, max_tokens=1000)
    sid = cp.open_session("review")
    asked = cp.propose(sid, "llm_review", identity=ALICE, model_id="haiku", estimated_tokens=800)
    assert asked.code is DecisionCode.APPROVAL_REQUIRED and asked.ticket_id is not None
    cp.approve(asked.ticket_id, approver="carol")
    resumed = cp.resume(asked.ticket_id)
    assert resumed.allowed, resumed.reason
    assert reserved_tokens(cp) == (0, 800)
    cp.close()


def test_the_async_facade_governs_model_calls_the_same_way(backend: Backend, table_prefix: str) -> None:
    async def scenario() -> None:
        setup = ControlPlaneSetup(
            backend.async_url,
            policy=POLICY,
            token_budget_configs=[TokenBudgetConfig(ACME, "daily", max_tokens=1000)],
            model_policy=MODELS,
            table_prefix=table_prefix,
        )
        cp = setup.build_async()
        sid = await cp.open_session("async chat")
        ok = await cp.propose(sid, "llm_call", identity=ALICE, model_id="haiku", estimated_tokens=600)
        over = await cp.propose(sid, "llm_call", identity=ALICE, model_id="haiku", estimated_tokens=600)
        assert ok.allowed and over.code is DecisionCode.TOKEN_BUDGET_EXCEEDED
        usage = TokenUsage(model_id=ModelId("haiku"), input_tokens=300, output_tokens=100)
        settled = await cp.settle(ok.proposal_id, token_usage=usage)
        assert settled.token_usage is not None and settled.token_usage.states[0].tokens_used == 400
        await setup.aclose()

    asyncio.run(scenario())


def test_what_if_replays_recorded_model_calls_with_their_identity(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    cp = build(backend, table_prefix, clock)
    sid = cp.open_session("chat")
    assert cp.propose(sid, "llm_call", identity=ALICE).allowed
    no_acme = {"name": "no-acme", "when": {"field": "org", "eq": "tenant-acme"}, "tier": "blocked"}
    report = cp.what_if({**POLICY, "rules": [no_acme]}, session_id=sid)
    assert [(c.proposal.tier, c.tier, c.rule) for c in report.changes] == [("unrestricted", "blocked", "no-acme")]
    cp.close()
