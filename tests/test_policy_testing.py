"""`acp policy test`: test cases beside a policy, run like unit tests, on real files."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent_control_plane.cli import app
from agent_control_plane.errors import PolicyError
from agent_control_plane.policy.testing import parse_cases_text, run_cases

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

POLICY = """\
default_tier: always_approve
actions:
  run_sql: unrestricted
rules:
  - name: no-drop-table
    when: {all: [{field: action, eq: run_sql}, {field: args.query, matches: "(?i)drop\\\\s+table"}]}
    tier: blocked
    reason: dropping tables is never allowed
  - name: staging-first
    when:
      all:
        - {field: resource, glob: "prod/*"}
        - {field: agent, eq: ops-bot}
        - {field: session.spent_cost, gte: 1.25}
        - {field: session.action_count, gt: 2}
        - {field: time.hour, eq: 15}
        - {field: cost, lte: 0.1}
    tier: steer
    guidance: deploy to staging first
    alternatives: [deploy_staging]
"""

PASSING = """\
- name: dropping a table is blocked
  proposal: {action: run_sql, args: {query: "DROP TABLE users"}}
  expect: {tier: blocked, rule: no-drop-table, step: rule}
- name: prod deploys are steered to staging
  proposal: {action: deploy, resource: prod/web, agent: ops-bot, cost: 0.1,
             session: {action_count: 3, spent_cost: 1.25}, time: "2026-11-27T15:00:00Z"}
  expect: {tier: steer, rule: staging-first, alternatives: [deploy_staging]}
"""

FAILING = """\
- name: selects run freely
  proposal: {action: run_sql, args: {query: "select 1"}}
  expect: {tier: unrestricted, rule: run_sql}
- name: truncating is blocked
  proposal: {action: run_sql, args: {query: "TRUNCATE users"}}
  expect: {tier: blocked, rule: no-drop-table}
"""


def _suite(tmp_path: Path, cases: str, name: str = "policy.tests.yaml") -> Path:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    (tmp_path / name).write_text(cases)
    return policy


def test_passing_suite_beside_the_policy_exits_0(tmp_path: Path) -> None:
    result = runner.invoke(app, ["policy", "test", str(_suite(tmp_path, PASSING))])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines == [
        "PASS dropping a table is blocked",
        "PASS prod deploys are steered to staging",
        "2 passed, 0 failed",
    ]


def test_failing_case_exits_1_naming_expected_and_actual(tmp_path: Path) -> None:
    result = runner.invoke(app, ["policy", "test", str(_suite(tmp_path, FAILING))])
    assert result.exit_code == 1, result.output
    assert "PASS selects run freely" in result.output
    assert (
        "FAIL truncating is blocked: expected tier blocked, got unrestricted; "
        "expected rule 'no-drop-table', got 'run_sql' (decided by actions entry 'run_sql')"
    ) in result.output
    assert result.output.splitlines()[-1] == "1 passed, 1 failed"


def test_every_proposal_fact_reaches_the_policy(tmp_path: Path) -> None:
    # Each case changes one fact of the steered proposal, so a fact that is dropped on the way makes one case fail.
    steered = (
        "{action: deploy, resource: prod/web, agent: ops-bot, cost: 0.1, "
        'session: {action_count: 3, spent_cost: 1.25}, time: "2026-11-27T15:00:00Z"}'
    )
    variants = {
        "another resource": ("prod/web", "staging/web"),
        "another agent": ("ops-bot", "dev-bot"),
        "a thinner session": ("spent_cost: 1.25", "spent_cost: 1.24"),
        "a younger session": ("action_count: 3", "action_count: 2"),
        "another hour": ("T15:", "T16:"),
        "a dearer proposal": ("cost: 0.1,", "cost: 0.11,"),
    }
    cases = PASSING + "".join(
        f"- name: {name}\n  proposal: {steered.replace(old, new)}\n  expect: {{tier: always_approve, rule: null}}\n"
        for name, (old, new) in variants.items()
    )
    result = runner.invoke(app, ["policy", "test", str(_suite(tmp_path, cases))])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "8 passed, 0 failed"


def test_malformed_cases_are_refused_whole_with_line_numbers(tmp_path: Path) -> None:
    bad = """\
- name: one
  proposal: {action: run_sql, colour: red, cost: -1}
  expect: {tier: sideways}
- name: one
  proposal: {action: deploy, time: "2026-11-27T15:00:00"}
  expect: {tier: blocked, step: rules}
- name: two
  expect: {rule: x}
"""
    result = runner.invoke(app, ["policy", "test", str(_suite(tmp_path, bad))])
    assert result.exit_code == 2, result.output
    assert "error: " in result.output and "invalid test cases (8 problem(s))" in result.output
    for problem in (
        "line 2: 0.proposal.colour: unknown key (expected one of action, args,",
        "line 2: 0.proposal.cost: a cost is a finite number of at least 0, not -1",
        "line 3: 0.expect.tier: unknown tier 'sideways'",
        "line 4: 1.name: 'one' already names case 1",
        "line 5: 1.proposal.time: time 2026-11-27T15:00:00 needs a UTC offset",
        "line 6: 1.expect.step: Input should be 'rule', 'actions', 'default', 'evaluator',",
        "line 7: 2.proposal: Field required",
        "line 8: 2.expect.tier: Field required",
    ):
        assert problem in result.output
    assert "PASS" not in result.output and "passed" not in result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{name: x}", "test cases must be a list of cases"),
        ("[]", "no test cases"),
        ("- name: [\n", "not valid YAML at line 2"),
    ],
)
def test_cases_file_of_the_wrong_shape_is_refused(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_cases_text(text, origin="cases.yaml")


def test_cases_option_overrides_the_sibling_file(tmp_path: Path) -> None:
    policy = _suite(tmp_path, FAILING)
    elsewhere = tmp_path / "suites" / "deploys.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(PASSING)
    result = runner.invoke(app, ["policy", "test", str(policy), "--cases", str(elsewhere)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "2 passed, 0 failed"


def test_json_cases_file_is_found_beside_the_policy(tmp_path: Path) -> None:
    cases = [{"name": "selects run freely", "proposal": {"action": "run_sql"}, "expect": {"tier": "unrestricted"}}]
    policy = _suite(tmp_path, json.dumps(cases), name="policy.tests.json")
    result = runner.invoke(app, ["policy", "test", str(policy)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["PASS selects run freely", "1 passed, 0 failed"]


def test_missing_cases_file_is_a_clear_error(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    result = runner.invoke(app, ["policy", "test", str(policy)])
    assert result.exit_code == 2
    assert "error: no test cases for" in result.output
    assert "policy.tests.yaml" in result.output and "--cases" in result.output
    missing = runner.invoke(app, ["policy", "test", str(policy), "--cases", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "cannot read test cases" in missing.output


def test_json_output_holds_expected_actual_and_trace(tmp_path: Path) -> None:
    result = runner.invoke(app, ["policy", "test", str(_suite(tmp_path, FAILING)), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["passed"], report["failed"]) == (1, 1)
    failed = report["results"][1]
    assert failed["name"] == "truncating is blocked" and failed["passed"] is False
    assert failed["expected"] == {"tier": "blocked", "rule": "no-drop-table"}
    assert failed["actual"] == {"tier": "unrestricted", "rule": "run_sql", "step": "actions", "alternatives": []}
    assert [(step["name"], step["matched"]) for step in failed["trace"]] == [
        ("no-drop-table", False),
        ("staging-first", False),
        ("run_sql", True),
    ]


def test_costs_are_read_as_exact_decimals() -> None:
    cases = parse_cases_text(
        "- {name: a, proposal: {action: x, cost: 0.1, session: {spent_cost: '2.30'}}, expect: {tier: blocked}}"
    )
    assert cases[0].proposal.cost == Decimal("0.1")
    assert cases[0].proposal.facts().session_spent_cost == Decimal("2.30")


def test_rule_null_expects_the_default_tier() -> None:
    cases = parse_cases_text(
        "- {name: default, proposal: {action: x}, expect: {tier: always_approve, rule: null}}\n"
        "- {name: by pattern, proposal: {action: run_sql}, expect: {tier: unrestricted, rule: null}}\n"
    )
    first, second = run_cases({"actions": {"run_*": "unrestricted"}}, cases)
    assert first.passed
    assert not second.passed
    assert second.mismatches == ("expected rule null, got 'run_*'",)


def test_the_examples_policy_passes_its_tests() -> None:
    result = runner.invoke(app, ["policy", "test", str(EXAMPLES / "policy.yaml")])
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output
    assert result.output.splitlines()[-1].endswith(" passed, 0 failed")
