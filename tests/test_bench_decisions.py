"""The decision-latency bench: its generated policies, their Cedar translation, and its table."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_control_plane import bench
from agent_control_plane._bench.cedar import CedarReference, cedar_request, disagreements
from agent_control_plane._bench.decisions import (
    ACTIONS,
    FALL_THROUGH,
    FAMILIES,
    RULE_POSITIONS,
    UNKNOWN,
    generated_rule,
    workload,
)
from agent_control_plane.policy.conditions import Facts
from agent_control_plane.policy.engine import PolicyEngine

SMALL = workload(20)
ENGINE = PolicyEngine(SMALL.policy)
VOCABULARY = sorted({*(a for family in FAMILIES for a in family), *FALL_THROUGH, *UNKNOWN, "read_file"})
CEDAR = CedarReference.build(ENGINE, [Facts(action) for action in VOCABULARY])
# Every rule's own proposal, and the ones that fall through: proposals are drawn near these, where rules hold or
# just fail to, rather than uniformly where almost nothing matches.
RULE_PROPOSALS = tuple(generated_rule(k)[1] for k in range(20)) + SMALL.proposals[8:]
SERVICES = [f"svc{k:03d}" for k in range(20)] + ["none"]
TEAMS = [f"team{k:03d}{suffix}" for k in range(20) for suffix in ("", "-oncall")] + ["team-none"]


def _thresholds(node: Any, found: dict[str, set[Decimal]]) -> dict[str, set[Decimal]]:
    """Every numeric constant the policy compares a field with, by field."""
    if isinstance(node, list):
        for item in node:
            _thresholds(item, found)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("gt", "gte", "lt", "lte") and isinstance(value, int):
                found.setdefault(node["field"], set()).add(Decimal(value))
            _thresholds(value, found)
    return found


THRESHOLDS = _thresholds(SMALL.policy["rules"], {})


def _around(name: str, step: Decimal) -> st.SearchStrategy[Decimal]:
    """A value on, just under or just over one of the policy's thresholds for a field: where `lt` and `lte` part."""
    return st.sampled_from(sorted({c + d for c in THRESHOLDS[name] for d in (-step, Decimal(0), step)}))


ARG_VALUES: dict[str, st.SearchStrategy[Any]] = {
    # Each argument keeps the type the workload gives it: Cedar errors where ours is merely false on a mismatch.
    "team": st.sampled_from(TEAMS),
    "mode": st.sampled_from(("destructive", "append")),
    "rows": _around("args.rows", Decimal(1)).map(int) | st.integers(0, 20_000),
    "dry_run": st.booleans(),
    "ticket": st.just("T-2"),
    "limits": st.builds(
        lambda rows: {"max_rows": rows}, _around("args.limits.max_rows", Decimal(1)).map(int) | st.integers(0, 1_000)
    ),
}


@st.composite
def near_rules(draw: st.DrawFn) -> Facts:
    """A proposal of the workload's shape: one a rule was made for or that falls through, with up to two of its
    parts changed or removed, so most proposals sit where a rule just holds or just fails to."""
    base = draw(st.sampled_from(RULE_PROPOSALS))
    changes = draw(st.sets(st.sampled_from(("action", "resource", "cost", *ARG_VALUES)), max_size=2))
    action, resource, cost, args = base.action, base.resource, base.cost, dict(base.args)
    if "action" in changes:
        action = draw(st.sampled_from(VOCABULARY))
    if "resource" in changes:
        environment = st.sampled_from(("prod", "staging", "dev", "eu"))
        leaf = st.sampled_from(("db", "api", "x"))
        resource = draw(st.none() | st.builds("{}/{}/{}".format, environment, st.sampled_from(SERVICES), leaf))
    if "cost" in changes:
        cost = draw(_around("cost", Decimal("0.01")) | st.decimals(0, 700, places=2))
    for key, values in ARG_VALUES.items():
        if key in changes:
            if draw(st.booleans()):
                args[key] = draw(values)
            else:
                args.pop(key, None)
    return Facts(action, args, resource, cost=cost)


@settings(max_examples=300, deadline=None)
@given(near_rules())
def test_cedar_translation_allows_exactly_what_the_20_rule_policy_allows(facts: Facts) -> None:
    result = CEDAR.decide(cedar_request(facts))

    assert result.diagnostics.errors == []
    assert result.allowed == ENGINE.decide(facts).tier.executes


def _on_boundaries(facts: Facts) -> list[Facts]:
    """The proposal with each numeric field moved onto, just under and just over each threshold of the policy."""
    moved = []
    for cost in THRESHOLDS["cost"]:
        moved += [replace(facts, cost=cost + d) for d in (Decimal("-0.01"), Decimal(0), Decimal("0.01"))]
    for rows in THRESHOLDS["args.rows"]:
        moved += [replace(facts, args={**facts.args, "rows": int(rows) + d}) for d in (-1, 0, 1)]
    for rows in THRESHOLDS["args.limits.max_rows"]:
        moved += [replace(facts, args={**facts.args, "limits": {"max_rows": int(rows) + d}}) for d in (-1, 0, 1)]
    return moved


def test_cedar_agrees_on_every_threshold_boundary() -> None:
    proposals = [moved for facts in RULE_PROPOSALS for moved in _on_boundaries(facts)]
    results = CEDAR.decide_batch([cedar_request(facts) for facts in proposals])

    assert [r.diagnostics.errors for r in results if r.diagnostics.errors] == []
    ours = [ENGINE.decide(facts).tier.executes for facts in proposals]
    assert [r.allowed for r in results] == ours
    assert len(set(ours)) == 2


FIRST_MATCH = {
    "default_tier": "always_approve",
    "actions": {"deploy": "unrestricted"},
    "rules": [
        {
            "when": {"all": [{"field": "action", "eq": "deploy"}, {"field": "args.ticket", "exists": True}]},
            "tier": "auto_approve",
        },
        {"when": {"field": "cost", "gt": 10}, "tier": "blocked"},
        {"when": {"field": "resource", "glob": "prod/*"}, "tier": "unrestricted"},
        {"when": {"field": "args.rows", "gte": 100}, "tier": "always_approve"},
    ],
}


@pytest.mark.parametrize(
    ("facts", "allowed"),
    [
        (Facts("deploy", {"ticket": "T-1"}, cost=Decimal(20)), True),  # the permit comes first: the forbid yields
        (Facts("deploy", {}, cost=Decimal(20)), False),
        (Facts("deploy", {}, "prod/api", cost=Decimal(20)), False),  # the forbid comes first: it wins
        (Facts("rollback", {"rows": 500}, "prod/api"), True),
        (Facts("deploy", {"rows": 500}, "dev/api"), False),  # a rule overrules the actions entry
        (Facts("deploy", {"rows": 5}, "dev/api"), True),
        (Facts("deploy", {}, "dev/api", cost=Decimal(10)), True),  # gt is strict in both
    ],
)
def test_cedar_translation_keeps_first_match_wins(facts: Facts, allowed: bool) -> None:
    engine = PolicyEngine(FIRST_MATCH)
    cedar = CedarReference.build(engine, [facts])

    assert engine.decide(facts).tier.executes is allowed
    assert cedar.allowed() == [allowed]


@pytest.mark.parametrize("rules", [20, 200])
def test_cedar_agrees_on_every_proposal_of_the_measured_mix(rules: int) -> None:
    work = SMALL if rules == 20 else workload(rules)
    engine = PolicyEngine(work.policy)

    assert disagreements(engine, CedarReference.build(engine, work.proposals), work.proposals) == []
    allowed = {engine.decide(facts).tier.executes for facts in work.proposals}
    assert allowed == {True, False}


@pytest.mark.parametrize("rules", [20, 200])
def test_mix_is_decided_mostly_late_in_the_rule_list(rules: int) -> None:
    work = workload(rules)
    engine = PolicyEngine(work.policy)
    choices = [engine.decide(facts) for facts in work.proposals]

    assert len(work.policy["rules"]) == rules
    assert [c.step for c in choices] == ["rule"] * 8 + ["actions"] * 6 + ["default"] * 2
    assert [c.rule for c in choices[:8]] == [f"rule-{round(p * (rules - 1)):03d}" for p in RULE_POSITIONS]
    assert {c.rule for c in choices[8:14]} <= set(ACTIONS)
    assert sum(len(c.rules_tried) for c in choices) / len(choices) > 0.75 * rules


def test_quick_decisions_run_reports_20_rules_200_rules_and_cedar(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--quick", "--only", "decisions", "--json"]) == 0

    document = json.loads(capsys.readouterr().out)
    assert "rows" not in document  # no throughput rows were asked for
    rows = {row["name"]: row for row in document["decisions"]["rows"]}
    assert {"ours_20_rules", "ours_200_rules", "cedar_20_rules", "cedar_20_rules_batch"} <= set(rows)
    for row in rows.values():
        assert row["status"] == "ok", row
        assert 0 < row["p50_us"] <= row["p99_us"]
        assert row["decisions_per_s"] > 0
    assert rows["cedar_20_rules"]["ours_over_cedar"] > 0
    assert rows["ours_200_rules"]["mean_rules_tried"] > rows["ours_20_rules"]["mean_rules_tried"]
    assert document["decisions"]["targets"] == {"p50_us_20_rules": 20, "p50_us_200_rules": 60, "ours_over_cedar": 0.15}


def test_only_a_backend_leaves_out_the_decision_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "run_rows", lambda specs, **_: [])

    assert bench.main(["--quick", "--only", "sqlite", "--json"]) == 0

    document = json.loads(capsys.readouterr().out)
    assert "decisions" not in document
    assert document["rows"] == []
