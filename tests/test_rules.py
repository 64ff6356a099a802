"""Policy rules: first match wins, steering with guidance, traces, and the decision recorded in the log."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_control_plane import (
    ActionTier,
    ConditionEvaluator,
    ControlPlaneFacade,
    DecisionCode,
    PolicyEngine,
    PolicyError,
    load_policy,
)
from agent_control_plane.policy.conditions import Facts
from conftest import Backend

RULES = {
    "default_tier": "always_approve",
    "actions": {"run_sql": "unrestricted", "deploy": "auto_approve", "read_*": "unrestricted"},
    "rules": [
        {
            "name": "no-drop-table",
            "when": {
                "all": [{"field": "action", "eq": "run_sql"}, {"field": "args.query", "matches": r"(?i)drop\s+table"}]
            },
            "tier": "blocked",
            "reason": "dropping tables is never allowed",
        },
        {
            "name": "staging-first",
            "when": {"all": [{"field": "action", "eq": "deploy"}, {"field": "resource", "glob": "prod/*"}]},
            "tier": "steer",
            "guidance": "deploy to staging and run the smoke tests first",
            "alternatives": ["deploy_staging"],
        },
        {"name": "busy-session", "when": {"field": "session.action_count", "gte": 3}, "tier": "always_approve"},
    ],
}


def test_first_matching_rule_decides_and_the_trace_lists_what_was_tried() -> None:
    engine = PolicyEngine(RULES)
    blocked = engine.decide(Facts("run_sql", {"query": "DROP TABLE users"}))
    assert (blocked.tier, blocked.rule, blocked.step) == (ActionTier.BLOCKED, "no-drop-table", "rule")
    assert [(s.name, s.matched) for s in blocked.trace] == [("no-drop-table", True)]
    fine = engine.decide(Facts("run_sql", {"query": "select 1"}))
    assert (fine.tier, fine.step, fine.rule) == (ActionTier.UNRESTRICTED, "actions", "run_sql")
    assert [(s.step, s.name, s.matched) for s in fine.trace] == [
        ("rule", "no-drop-table", False),
        ("rule", "staging-first", False),
        ("rule", "busy-session", False),
        ("actions", "run_sql", True),
    ]
    assert engine.decide(Facts("launch")).trace[-1].name == "default_tier"
    assert engine.needs_session_facts


def test_steer_rule_returns_guidance_and_alternatives_through_propose(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("deploys", policy=RULES)
    d = cp.propose(sid, action="deploy", resource="prod/web")
    assert not d.allowed and d.code is DecisionCode.STEERED and d.tier is ActionTier.STEER
    assert d.steering is not None
    assert d.steering.guidance == "deploy to staging and run the smoke tests first"
    assert d.steering.alternatives == ("deploy_staging",)
    assert "smoke tests" in d.reason
    # The agent re-plans with the suggested alternative... which this policy sends to a human.
    assert cp.propose(sid, action=d.steering.alternatives[0]).code is DecisionCode.APPROVAL_REQUIRED
    assert cp.propose(sid, action="deploy", resource="staging/web").allowed
    event = next(e for e in cp.replay(sid) if e.kind == "proposal.decided")
    assert event.payload["steering"]["alternatives"] == ["deploy_staging"]
    assert [step["name"] for step in event.payload["trace"]] == ["no-drop-table", "staging-first"]


def test_rules_on_session_facts_see_the_session_so_far(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("busy", policy=RULES)
    decisions = [cp.propose(sid, action="read_x", cost=Decimal("0.1")) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].rule == "busy-session" and decisions[-1].code is DecisionCode.APPROVAL_REQUIRED


def test_steer_rule_without_guidance_and_guidance_on_other_tiers_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "rules:\n"
        "  - when: {field: action, eq: x}\n"
        "    tier: steer\n"
        "  - when: {field: action, greater_ish: 1}\n"
        "    tier: blocked\n"
        "  - when: {field: action, eq: y}\n"
        "    tier: blocked\n"
        "    guidance: nope\n"
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    problems = caught.value.errors
    assert any(p.startswith("line 2: rules.0: a steer rule needs guidance") for p in problems)
    assert any(p.startswith("line 4: rules.1.when: unknown operator 'greater_ish'") for p in problems)
    assert any(p.startswith("line 6: rules.2: guidance and alternatives belong to steer rules") for p in problems)


def test_policy_with_rules_survives_the_snapshot_round_trip(backend: Backend, table_prefix: str) -> None:
    with ControlPlaneFacade.from_database_url(backend.url, policy=RULES, table_prefix=table_prefix) as first:
        first.setup()
        sid = first.open_session("snap")
    # A fresh control plane (no cached engine) rebuilds the rules from the stored snapshot.
    with ControlPlaneFacade.from_database_url(backend.url, table_prefix=table_prefix) as second:
        d = second.propose(sid, action="run_sql", args={"query": "drop table t"})
        assert d.rule == "no-drop-table" and d.code is DecisionCode.POLICY_BLOCKED


_actions = st.sampled_from(["deploy", "read", "write", "delete"])
_rule_conditions = st.one_of(
    st.builds(lambda a: {"field": "action", "eq": a}, _actions),
    st.builds(lambda xs: {"field": "action", "in": xs}, st.lists(_actions, min_size=1, max_size=2)),
    st.builds(
        lambda a, n: {"all": [{"field": "action", "eq": a}, {"field": "cost", "gt": n}]}, _actions, st.integers(0, 3)
    ),
    st.builds(lambda a, b: {"any": [{"field": "action", "eq": a}, {"field": "action", "eq": b}]}, _actions, _actions),
    st.builds(lambda a: {"not": {"field": "action", "eq": a}}, _actions),
    st.builds(lambda n: {"field": "cost", "lte": n}, st.integers(0, 3)),
)


@given(
    conditions=st.lists(st.tuples(_rule_conditions, st.sampled_from(list(ActionTier))), max_size=8),
    action=_actions,
    cost=st.integers(0, 4),
)
def test_rules_indexed_by_action_decide_like_a_plain_first_match_scan(
    conditions: list[tuple[dict[str, object], ActionTier]], action: str, cost: int
) -> None:
    rules = [
        {"name": f"r{n}", "when": when, "tier": tier.value, **({"guidance": "g"} if tier is ActionTier.STEER else {})}
        for n, (when, tier) in enumerate(conditions)
    ]
    engine = PolicyEngine({"default_tier": "blocked", "rules": rules})
    facts = Facts(action, cost=Decimal(cost))
    expected = next(
        ((rule["name"], rule["tier"]) for rule in rules if ConditionEvaluator(rule["when"]).holds(facts)),  # type: ignore[arg-type]
        (None, "blocked"),
    )
    choice = engine.decide(facts)
    assert (choice.rule if choice.step == "rule" else None, choice.tier.value) == expected
