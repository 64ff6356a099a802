"""Agents and routing, delegation, risk levels and auto-approve limits."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from agent_control_plane import (
    ActionTier,
    ControlPlaneFacade,
    DecisionCode,
    Facts,
    PolicyEngine,
    RiskLevel,
)
from conftest import Backend

ROUTED = {
    "default_tier": "always_approve",
    "actions": {"read_*": "unrestricted", "deploy": "auto_approve", "delegate": "auto_approve"},
    "agents": {
        "require_registration": True,
        "registry": {
            "reader": {"capabilities": ["read_*"], "scopes": ["docs/*"]},
            "deployer": {"capabilities": ["deploy", "read_*"], "actions": {"deploy": "unrestricted"}},
            "lead": {"capabilities": ["delegate", "read_*"]},
        },
    },
}

RISKY = {
    "default_tier": "always_approve",
    "actions": {"refund": "auto_approve", "tidy": "auto_approve"},
    "risk": {
        "default": "low",
        "rules": [
            {"when": {"field": "args.amount", "gt": 1000}, "level": "high"},
            {"when": {"field": "args.amount", "gt": 100}, "level": "medium"},
        ],
    },
    "rules": [
        {
            "name": "high-risk-refunds-blocked-at-night",
            "tier": "blocked",
            "when": {"all": [{"field": "risk", "eq": "high"}, {"field": "time.hour", "lt": 6}]},
        }
    ],
    "auto_approve": {"max_risk": "medium", "live": True},
}


def test_unregistered_agents_are_denied_when_registration_is_required(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("routed", policy=ROUTED)
    stranger = cp.propose(sid, action="read_doc", resource="docs/a", agent_id="stranger")
    assert stranger.code is DecisionCode.AGENT_NOT_REGISTERED and "not registered" in stranger.reason
    assert cp.propose(sid, action="read_doc").code is DecisionCode.AGENT_NOT_REGISTERED  # no agent at all
    assert cp.propose(sid, action="read_doc", resource="docs/a", agent_id="reader").allowed
    assert [step.step for step in stranger.trace] == ["registration"]


def test_actions_and_resources_outside_an_agents_capabilities_are_denied(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("caps", policy=ROUTED)
    outside = cp.propose(sid, action="deploy", agent_id="reader")
    assert outside.code is DecisionCode.OUTSIDE_CAPABILITIES and "may not propose 'deploy'" in outside.reason
    scoped = cp.propose(sid, action="read_doc", resource="secrets/x", agent_id="reader")
    assert scoped.code is DecisionCode.OUTSIDE_CAPABILITIES and "outside agent 'reader'" in scoped.reason


def test_explicit_assignment_is_decided_before_rules_and_recorded(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("assigned", policy=ROUTED)
    d = cp.propose(sid, action="deploy", agent_id="deployer")
    assert d.allowed and d.tier is ActionTier.UNRESTRICTED  # the actions map alone says auto_approve
    assert [(s.step, s.name) for s in d.trace] == [("assignment", "deploy")]
    assert cp.replay(sid)[-1].payload["trace"][0]["step"] == "assignment"


def test_delegation_is_a_governed_proposal(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("delegation", policy=ROUTED)
    ok = cp.delegate(sid, "deploy", to_agent="deployer", agent_id="lead", args={"ref": "main"})
    assert ok.allowed and ok.tier is ActionTier.AUTO_APPROVE
    incapable = cp.delegate(sid, "deploy", to_agent="reader", agent_id="lead")
    assert incapable.code is DecisionCode.OUTSIDE_CAPABILITIES and "may not perform 'deploy'" in incapable.reason
    unknown = cp.delegate(sid, "read_doc", to_agent="ghost", agent_id="lead")
    assert unknown.code is DecisionCode.AGENT_NOT_REGISTERED
    not_allowed = cp.delegate(sid, "read_doc", to_agent="reader", agent_id="reader")
    assert not_allowed.code is DecisionCode.OUTSIDE_CAPABILITIES  # the reader may not delegate at all
    recorded = [e.payload for e in cp.replay(sid) if e.kind == "proposal.decided"]
    assert recorded[0]["action"] == "delegate"
    assert recorded[0]["args"] == {"to": "deployer", "task": "deploy", "args": {"ref": "main"}}


def test_risk_levels_limit_auto_approve_and_feed_conditions(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("refunds", policy=RISKY)
    small = cp.propose(sid, action="refund", args={"amount": 50})
    assert small.allowed and small.risk is RiskLevel.LOW
    medium = cp.propose(sid, action="refund", args={"amount": 500})
    assert medium.allowed and medium.risk is RiskLevel.MEDIUM
    large = cp.propose(sid, action="refund", args={"amount": 5000})  # the manual clock starts at midnight
    assert large.code is DecisionCode.POLICY_BLOCKED and large.rule == "high-risk-refunds-blocked-at-night"
    engine = PolicyEngine(RISKY)
    noon = engine.decide(Facts("refund", {"amount": 5000}, now=datetime(2026, 1, 1, 12, tzinfo=UTC)))
    assert noon.tier is ActionTier.ALWAYS_APPROVE and noon.step == "risk"
    assert "risk high is above auto_approve.max_risk medium" in noon.describe("refund")
    assert [s.step for s in noon.trace][-1] == "risk"


def test_auto_approve_limited_to_dry_runs(backend: Backend, table_prefix: str) -> None:
    policy = {"actions": {"tidy": "auto_approve"}, "auto_approve": {"live": False}}
    with ControlPlaneFacade.from_database_url(backend.url, policy=policy, table_prefix=table_prefix) as cp:
        cp.setup()
        sid = cp.open_session("rehearsal")
        assert cp.propose(sid, action="tidy", dry_run=True).allowed
        live = cp.propose(sid, action="tidy")
        assert live.code is DecisionCode.APPROVAL_REQUIRED and "limited to dry runs" in live.reason
        assert cp.replay(sid)[-2].payload["mode"] == "dry_run"


class _Cautious:
    def classify(self, facts: Facts) -> RiskLevel | None:
        return RiskLevel.HIGH if facts.resource and facts.resource.startswith("prod/") else None


def test_a_risk_classifier_can_raise_the_level(backend: Backend, table_prefix: str) -> None:
    policy = {"actions": {"deploy": "auto_approve"}, "auto_approve": {"max_risk": "medium"}}
    with ControlPlaneFacade.from_database_url(
        backend.url, policy=policy, table_prefix=table_prefix, risk_classifier=_Cautious()
    ) as cp:
        cp.setup()
        sid = cp.open_session("classified")
        assert cp.propose(sid, action="deploy", resource="staging/web").allowed
        prod = cp.propose(sid, action="deploy", resource="prod/web")
        assert prod.risk is RiskLevel.HIGH and prod.code is DecisionCode.APPROVAL_REQUIRED
        assert cp.get_remaining_budget(sid)["spent_cost"] == Decimal(0)


def test_a_proposal_without_agent_id_is_routed_as_the_sessions_agent(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("owned", agent_id="reader", policy=ROUTED)
    assert cp.propose(sid, action="read_doc", resource="docs/a").allowed
    assert cp.propose(sid, action="deploy").code is DecisionCode.OUTSIDE_CAPABILITIES


def test_agent_assignments_pick_the_most_specific_pattern_like_actions() -> None:
    policy = {
        "actions": {"deploy_web": "blocked"},
        "agents": {"registry": {"bot": {"actions": {"deploy_*": "always_approve", "deploy_web": "unrestricted"}}}},
    }
    engine = PolicyEngine(policy)
    assert engine.decide(Facts("deploy_web", agent="bot")).tier is ActionTier.UNRESTRICTED
    assert engine.decide(Facts("deploy_api", agent="bot")).tier is ActionTier.ALWAYS_APPROVE
