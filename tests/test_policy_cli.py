"""`acp policy validate | explain | schema` on real files."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from agent_control_plane.cli import app
from agent_control_plane.policy.lint import SCHEMA_PATH, policy_json_schema

runner = CliRunner()

GOOD = """\
default_tier: always_approve
actions:
  run_sql: unrestricted
rules:
  - name: no-drop-table
    when: {all: [{field: action, eq: run_sql}, {field: args.query, matches: "(?i)drop\\\\s+table"}]}
    tier: blocked
    reason: dropping tables is never allowed
  - name: staging-first
    when: {field: resource, glob: "prod/*"}
    tier: steer
    guidance: deploy to staging first
    alternatives: [deploy_staging]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_validate_accepts_a_good_policy(tmp_path: Path) -> None:
    result = runner.invoke(app, ["policy", "validate", str(_write(tmp_path, GOOD))])
    assert result.exit_code == 0, result.output
    assert "valid (2 rules, 1 action patterns, default tier always_approve)" in result.output


def test_validate_lists_schema_errors_with_lines(tmp_path: Path) -> None:
    bad = GOOD.replace("matches:", "matchez:").replace("tier: steer", "tier: sideways")
    result = runner.invoke(app, ["policy", "validate", str(_write(tmp_path, bad))])
    assert result.exit_code == 1
    assert "line 6: rules.0.when.all.1: unknown operator 'matchez'" in result.output
    assert "line 11: rules.1.tier: unknown tier 'sideways'" in result.output


def test_validate_flags_unreachable_rules_with_lines(tmp_path: Path) -> None:
    dead = GOOD + '  - name: copy\n    when: {field: resource, glob: "prod/*"}\n    tier: blocked\n'
    dead += '  - name: all\n    when: {field: action, glob: "*"}\n    tier: blocked\n'
    dead += "  - name: never\n    when: {field: cost, gt: 1}\n    tier: blocked\n"
    result = runner.invoke(app, ["policy", "validate", str(_write(tmp_path, dead))])
    assert result.exit_code == 1
    assert "line 14: rules.2: copy: unreachable: 'staging-first' has the same condition" in result.output
    assert "line 20: rules.4: never: unreachable: 'all' before it matches everything" in result.output
    assert "line 2: actions: unreachable" in result.output


def test_explain_prints_the_decision_and_its_trace(tmp_path: Path) -> None:
    path = str(_write(tmp_path, GOOD))
    result = runner.invoke(app, ["policy", "explain", path, "--action", "deploy", "--resource", "prod/web", "--json"])
    assert result.exit_code == 0, result.output
    decided = json.loads(result.stdout)
    assert decided["tier"] == "steer" and decided["rule"] == "staging-first"
    assert decided["steering"] == {"guidance": "deploy to staging first", "alternatives": ["deploy_staging"]}
    assert [(s["name"], s["matched"]) for s in decided["trace"]] == [("no-drop-table", False), ("staging-first", True)]
    table = runner.invoke(app, ["policy", "explain", path, "--action", "run_sql", "--args", '{"query": "select 1"}'])
    assert table.exit_code == 0
    assert "unrestricted: action 'run_sql' is unrestricted by policy entry 'run_sql'" in table.output
    bad = runner.invoke(app, ["policy", "explain", path, "--action", "x", "--args", "[1]"])
    assert bad.exit_code == 2 and "--args must be a JSON object" in bad.output


def test_published_schema_matches_the_model_and_accepts_the_example(tmp_path: Path) -> None:
    assert json.loads(SCHEMA_PATH.read_text()) == policy_json_schema()
    printed = runner.invoke(app, ["policy", "schema"])
    assert json.loads(printed.stdout) == policy_json_schema()
    properties = policy_json_schema()["properties"]
    assert {"default_tier", "actions", "rules"} <= set(properties)
    assert all(spec.get("description") for spec in properties.values())


def test_validate_reports_action_patterns_that_match_no_known_action(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + '  - name: cleanup\n    when: {field: action, glob: "purge_*"}\n    tier: blocked\n')
    known = tmp_path / "actions.txt"
    known.write_text("# what our agents do\nrun_sql\ndeploy\n")
    result = runner.invoke(app, ["policy", "validate", str(path), "--known-actions", f"@{known}"])
    assert result.exit_code == 1
    assert "line 15: rules.2.when: pattern 'purge_*' matches none of the 2 known actions" in result.output
    fine = runner.invoke(app, ["policy", "validate", str(_write(tmp_path, GOOD)), "--known-actions", "run_sql,deploy"])
    assert fine.exit_code == 0, fine.output


def test_explain_takes_the_time_mode_and_session_so_far(tmp_path: Path) -> None:
    policy = tmp_path / "timed.yaml"
    policy.write_text(
        "actions: {tidy: auto_approve}\n"
        "auto_approve: {live: false}\n"
        "rules:\n"
        "  - {name: night, when: {field: time.hour, gte: 22}, tier: blocked}\n"
        "  - {name: busy, when: {field: session.action_count, gte: 10}, tier: always_approve}\n"
    )
    base = ["policy", "explain", str(policy), "--action", "tidy", "--json"]

    def tier(*extra: str) -> str:
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 0, result.output
        return str(json.loads(result.stdout)["tier"])

    assert tier("--at", "2026-11-27T23:00:00Z") == "blocked"
    assert tier("--at", "2026-11-27T12:00:00Z", "--dry-run") == "auto_approve"
    assert tier("--at", "2026-11-27T12:00:00Z") == "always_approve"  # live, and only dry runs are auto-approved
    assert tier("--at", "2026-11-27T12:00:00Z", "--dry-run", "--session-actions", "10") == "always_approve"
    bad = runner.invoke(app, [*base, "--at", "2026-11-27T23:00:00"])
    assert bad.exit_code == 2 and "give the time zone" in bad.output
