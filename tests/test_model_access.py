"""Model access: model tiers, grants by identity, budgets' allowed models, and denials in the log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_control_plane import (
    BudgetPeriod,
    ControlPlaneSetup,
    IdentityContext,
    ManualClock,
    ModelGovernor,
    ModelTier,
    OrgId,
    PolicyError,
    TeamId,
    TokenBudgetConfig,
    UserId,
)
from agent_control_plane.policy.windows import window
from conftest import Backend

MODEL_POLICY = {
    "models": {"claude-haiku-*": "standard", "claude-sonnet-*": "premium", "claude-opus-*": "restricted"},
    "grants": [
        {"org": "tenant-acme", "tiers": ["premium"]},
        {"org": "tenant-acme", "user": "alice", "tiers": ["restricted"]},
    ],
}
ALICE = IdentityContext(org_id=OrgId("tenant-acme"), team_id=TeamId("research"), user_id=UserId("alice"))
BOB = IdentityContext(org_id=OrgId("tenant-acme"), user_id=UserId("bob"))
GLOBEX = IdentityContext(org_id=OrgId("globex"))


def test_tiers_and_grants_decide_who_may_use_which_model() -> None:
    governor = ModelGovernor(MODEL_POLICY)
    assert governor.tier_of("claude-sonnet-4-5") is ModelTier.PREMIUM
    assert governor.check_access(GLOBEX, "claude-haiku-4-5").allowed
    denied = governor.check_access(GLOBEX, "claude-sonnet-4-5")
    assert not denied.allowed and denied.tier is ModelTier.PREMIUM
    assert denied.reason == (
        "model 'claude-sonnet-4-5' is premium; org globex may use standard models "
        "(a grant of premium in the model policy would allow it)"
    )
    assert governor.check_access(BOB, "claude-sonnet-4-5").allowed  # the org's grant covers its users
    assert not governor.check_access(BOB, "claude-opus-4").allowed
    assert governor.check_access(ALICE, "claude-opus-4").allowed  # alice's own grant


def test_unknown_models_are_refused_unless_the_policy_gives_them_a_tier() -> None:
    strict = ModelGovernor(MODEL_POLICY).check_access(ALICE, "gpt-9")
    assert not strict.allowed and "not in the model policy" in strict.reason
    lenient = ModelGovernor({**MODEL_POLICY, "unknown_models": "standard"})
    assert lenient.check_access(GLOBEX, "gpt-9").allowed
    assert ModelGovernor().check_access(GLOBEX, "anything").allowed  # no model policy: tiers are not governed


def test_every_covering_budget_with_allowed_models_must_list_the_model() -> None:
    governor = ModelGovernor(MODEL_POLICY)
    org = TokenBudgetConfig(IdentityContext(org_id=OrgId("tenant-acme")), "daily", allowed_models=["claude-*"])
    team = TokenBudgetConfig(
        IdentityContext(org_id=OrgId("tenant-acme"), team_id=TeamId("research")),
        "monthly",
        allowed_models=["claude-haiku-*"],
    )
    assert governor.check_access(ALICE, "claude-haiku-4-5", [org, team]).allowed
    refused = governor.check_access(ALICE, "claude-opus-4", [org, team])
    assert not refused.allowed
    assert refused.reason == (
        "model 'claude-opus-4' is not among the models the monthly budget of org tenant-acme / team research "
        "(no cap) allows (claude-haiku-*)"
    )


def test_an_invalid_model_policy_is_refused_with_every_problem(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="2 problem") as raised:
        ModelGovernor({"models": {"m": "gold"}, "grants": [{"org": "x"}]})
    assert any("models.m" in problem for problem in raised.value.errors)
    with pytest.raises(PolicyError, match="cannot read model policy file"):
        ModelGovernor(tmp_path / "missing.yaml")
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  claude-haiku-*: standard\ndefault_tiers: [standard]\n")
    assert ModelGovernor(path).tier_of("claude-haiku-4-5") is ModelTier.STANDARD


def test_a_grant_with_an_invalid_id_is_a_policy_error_naming_the_grant(tmp_path: Path) -> None:
    grants = [{"org": "tenant-acme", "tiers": ["premium"]}, {"org": "", "tiers": ["premium"]}, {"user": " bob"}]
    with pytest.raises(PolicyError, match="invalid model policy") as raised:
        ModelGovernor({**MODEL_POLICY, "grants": grants})
    assert raised.value.errors == [
        "grants.1.org: Value error, org must be non-empty without leading or trailing spaces, got ''",
        "grants.2.user: Value error, user must be non-empty without leading or trailing spaces, got ' bob'",
        "grants.2.tiers: Field required",
    ]
    path = tmp_path / "models.yaml"
    path.write_text("models: {claude-haiku-*: standard}\ngrants:\n  - {org: acme, team: '', tiers: [premium]}\n")
    with pytest.raises(PolicyError, match="grants.0.team: Value error, team must be non-empty"):
        ControlPlaneSetup(f"sqlite:///{tmp_path / 'acp.db'}", model_policy=path).build()


def test_a_denied_model_is_logged_in_the_session_or_on_the_control_stream(backend: Backend, table_prefix: str) -> None:
    cp = ControlPlaneSetup(backend.url, model_policy=MODEL_POLICY, table_prefix=table_prefix).build()
    sid = cp.open_session("chat")
    with cp.token_budget_tracker() as t:
        assert t.check_model_access(BOB, "claude-sonnet-4-5", session_id=sid).allowed
        assert not t.check_model_access(GLOBEX, "claude-sonnet-4-5", session_id=sid).allowed
        checked = t.check_budget(GLOBEX, estimated_tokens=10, model_id="claude-opus-4")
        assert not checked.allowed and checked.model_access is not None and not checked.model_access.allowed
    denied = [e for e in cp.replay(sid) if e.kind == "model_access.denied"]
    assert [e.payload["model_id"] for e in denied] == ["claude-sonnet-4-5"]
    assert denied[0].payload["identity"] == {"org_id": "globex", "team_id": None, "user_id": None}
    on_control = [e.payload["model_id"] for e in cp.replay("control") if e.kind == "model_access.denied"]
    assert on_control == ["claude-opus-4"]
    assert cp.verify(sid).ok and cp.verify("control").ok
    cp.close()


# windows, as pure functions ---------------------------------------------------------------------------------
instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
zones = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"])
periods = st.sampled_from([BudgetPeriod.DAILY, BudgetPeriod.WEEKLY, BudgetPeriod.MONTHLY])


@given(now=instants, zone=zones, period=periods)
def test_a_window_holds_its_instant_and_the_next_one_starts_where_it_ends(
    now: datetime, zone: str, period: BudgetPeriod
) -> None:
    start, end = window(period, zone, now)
    assert end is not None and start <= now < end
    following, _ = window(period, zone, end)
    assert following == end
    # A window is one local day, week or month long (23 to 25 hours a day across daylight saving changes).
    days = {BudgetPeriod.DAILY: (0.9, 1.1), BudgetPeriod.WEEKLY: (6.9, 7.1), BudgetPeriod.MONTHLY: (27.9, 31.1)}
    low, high = days[period]
    assert timedelta(days=low) <= end - start <= timedelta(days=high)


def test_setup_with_a_manual_clock_rolls_a_weekly_window_on_monday(backend: Backend, table_prefix: str) -> None:
    clock = ManualClock(datetime(2026, 6, 7, 23, 59, tzinfo=UTC))  # a Sunday
    config = TokenBudgetConfig(IdentityContext(org_id=OrgId("tenant-acme")), "weekly", max_tokens=10)
    cp = ControlPlaneSetup(backend.url, token_budget_configs=[config], clock=clock, table_prefix=table_prefix).build()
    (state,) = cp.list_token_budgets()
    assert state.window_start == datetime(2026, 6, 1, tzinfo=UTC)
    clock.advance(timedelta(minutes=1))
    (state,) = cp.list_token_budgets()
    assert state.window_start == datetime(2026, 6, 8, tzinfo=UTC)
    cp.close()
