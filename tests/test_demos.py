"""The offline demos in examples/ run to completion and print what a reader is meant to see."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_demo(script: Path, cwd: Path, database_url: str | None) -> str:
    env = {key: value for key, value in os.environ.items() if key != "ACP_DATABASE_URL"}
    if database_url is not None:
        env["ACP_DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_steering_demo_shows_the_steer_the_replan_and_an_intact_log(tmp_path: Path) -> None:
    out = run_demo(EXAMPLES / "steering_demo.py", tmp_path, f"sqlite:///{tmp_path / 'steer.db'}")
    assert "STEER [steer] decided by 'staging-first'" in out
    assert "guidance:     deploy to staging and run the smoke tests first" in out
    assert "alternatives: request_release_window, deploy_staging" in out
    assert "agent re-plans  deploy on prod/web  ->  deploy_staging on staging/web" in out
    assert "ALLOW [auto_approve] decided by 'deploy_staging'" in out
    assert "trace: rule staging-first: MATCH" in out
    assert "verify: ok=True" in out
    assert (tmp_path / "steer.db").exists()


def test_condition_tree_demo_names_the_rule_or_evaluator_behind_each_decision(tmp_path: Path) -> None:
    out = run_demo(EXAMPLES / "condition_tree_evaluator_demo.py", tmp_path, f"sqlite:///{tmp_path / 'tree.db'}")
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert [(row[1], row[4], row[5], row[6]) for row in rows] == [
        ("refund", "auto_approve", "yes", "refund"),
        ("refund", "always_approve", "no", "large-refund-check"),
        ("refund", "auto_approve", "yes", "refund"),
        ("refund", "always_approve", "no", "large-refund-check"),
        ("refund", "blocked", "no", "refund-cap"),
        ("send_email", "unrestricted", "yes", "send_email"),
        ("send_email", "blocked", "no", "no-secrets"),
    ]
    assert "refund of 2400 EUR is over the 2000 cap" in out
    assert "PolicyEngine.decide(refund 90 GBP): blocked, by evaluator 'refund-cap'" in out


def test_demos_keep_their_database_beside_the_script_and_start_fresh_each_run(tmp_path: Path) -> None:
    copy = tmp_path / "examples"
    copy.mkdir()
    for name in ("steering_demo.py", "steering_policy.yaml", "condition_tree_evaluator_demo.py"):
        shutil.copy(EXAMPLES / name, copy / name)
    for _ in range(2):  # the second run finds the first run's files and removes them first
        run_demo(copy / "steering_demo.py", tmp_path, None)
        run_demo(copy / "condition_tree_evaluator_demo.py", tmp_path, None)
    assert (copy / "steering_demo.db").exists()
    assert (copy / "condition_tree_evaluator_demo.db").exists()


CALL_ROW = re.compile(r"^  \d\d:\d\d  (?P<who>\S+) .* (?P<tokens>\d+|-) +(?P<cost>[\d.]+|-)  (?P<outcome>.+)$")
"""A row of the tenant demo's call table: time, who, task, model, tokens, cost, outcome."""


def _section(out: str, start: str, end: str) -> str:
    return out.split(start, 1)[1].split(end, 1)[0]


def test_tenant_budget_demo_ledger_keeps_the_over_budget_call_and_survives_a_restart_and_midnight(
    tmp_path: Path,
) -> None:
    out = run_demo(EXAMPLES / "tenant_budget_tracking.py", tmp_path, f"sqlite:///{tmp_path / 'tenants.db'}")
    evening = _section(out, "1. the evening's calls", "2. tenant-acme is over its budget")
    # The user budget inside tenant-acme refuses before the call, while the tenant budget still had room.
    assert "summarize ticket #4415     claude-haiku-4-5        -        -  REFUSED before the call" in evening
    assert "daily budget of org tenant-acme / user alice (8000 tokens): 1500 tokens requested, 500 of 8000 left" in out
    over = next(line for line in evening.splitlines() if "rewrite the release notes" in line)
    assert "4000   0.0240  recorded, then OVER BUDGET: daily budget of org tenant-acme (20000 tokens and $0.05)" in over
    # The ledger's total is the sum of every call the host printed for tenant-acme, the over-budget one included.
    calls = [CALL_ROW.match(line) for line in evening.splitlines()]
    billed = [m for m in calls if m is not None and m["who"].startswith("tenant-acme/") and m["tokens"] != "-"]
    assert len(billed) == 4
    assert sum(int(m["tokens"]) for m in billed) == 15200
    assert sum(Decimal(m["cost"]) for m in billed) == Decimal("0.0638")
    assert "org tenant-acme    2026-03-02  4 calls  15200 tokens $0.0638" in out
    assert "the host saw 4 calls billed, 15200 tokens $0.0638: same" in out
    assert "org tenant-globex  2026-03-02  3 calls   9500 tokens $0.0171" in out
    # ...and the next pre-call check is refused, before and after the restart.
    refused = "allowed=False: denied: token budget exceeded: daily budget of org tenant-acme (20000 tokens and $0.05)"
    assert refused in out
    assert "$0 of $0.05 left ($0.0638 used, $0 reserved; resets 2026-03-03 00:00 UTC)" in out
    before = _section(out, "budgets before the restart", "4. restart")
    after = _section(out, "budgets after the restart", "totals picked up")
    assert before.strip() == after.strip()
    assert re.search(r"daily org tenant-acme +2026-03-02 +15200 / 20000 +\$0\.0638 / \$0\.05  OVER", after)
    assert "totals picked up where they left off: True" in out
    assert "tenant-acme/bob is still refused: allowed=False" in out
    # Past midnight every daily window starts again from zero, and the refused caller may call.
    new_day = _section(out, "budgets in the new day", "usage from the ledger")
    rows = [line.split() for line in new_day.splitlines() if line.startswith("  daily ")]
    assert len(rows) == 3
    assert all("2026-03-03" in row and row[row.index("2026-03-03") + 1] == "0" for row in rows)
    assert "00:12  tenant-acme/bob            one more summary           claude-haiku-4-5      200   0.0004  ok" in out
    assert "org tenant-acme    all time    7 calls  23100 tokens $0.0969" in out
    assert "11 calls made in all; the ledger holds 11: True" in out
    assert (tmp_path / "tenants.db").exists()


def test_token_governance_demo_decides_model_access_and_token_budgets_and_logs_them(tmp_path: Path) -> None:
    out = run_demo(EXAMPLES / "token_governance_demo.py", tmp_path, f"sqlite:///{tmp_path / 'tokens.db'}")
    access = {
        tuple(line.split()[:2]): line.split()[3]
        for line in _section(out, "1. model access", "2. a pre-call check").splitlines()
        if line.startswith("  tenant-")
    }
    assert access == {
        ("tenant-acme/alice", "claude-sonnet-4-5"): "allowed",  # premium, by the grant to tenant-acme
        ("tenant-acme/alice", "claude-opus-4-1"): "DENIED",
        ("tenant-globex/bob", "claude-sonnet-4-5"): "DENIED",
        ("tenant-globex/bob", "claude-haiku-4-5"): "allowed",
        ("tenant-acme/support/carl", "claude-sonnet-4-5"): "DENIED",  # the team budget's allowed_models
        ("tenant-acme/support/carl", "gpt-4o"): "DENIED",
    }
    assert "model 'claude-opus-4-1' is restricted; org tenant-acme / user alice may use premium, standard models" in out
    assert "not among the models the daily budget of org tenant-acme / team support (5000 tokens) allows" in out
    assert "model 'gpt-4o' is not in the model policy, so nobody may use it" in out
    # The reservation holds the estimate, the recorded usage replaces it, and a released one gives it all back.
    reserving = _section(out, "2. a pre-call check", "3. governed proposals")
    assert "check_budget(3000 tokens, reserve=True): allowed: reserved within 2 token budget(s)" in reserving
    assert "org tenant-acme / team support used     0 of 5000  reserved  3000" in reserving
    assert "org tenant-acme / team support used  2800 of 5000  reserved     0" in reserving
    assert "org tenant-acme / team support used  2800 of 5000  reserved  1500" in reserving
    assert "release_reservation: True; released again: False" in reserving
    governed = _section(out, "3. governed proposals", "4. event log")
    codes = [line.split()[0] + " " + line.split()[-1] for line in governed.splitlines() if "code=" in line]
    assert codes == ["ALLOW code=allowed", "DENY code=model_access_denied", "DENY code=token_budget_exceeded"]
    assert "denied: model 'claude-sonnet-4-5' is premium; org tenant-globex / user bob may use standard models" in out
    assert "4000 tokens requested, 2200 of 5000 left (2800 used, 0 reserved" in out
    assert "settle(token_usage=4000 tokens, $0.0228): succeeded, reserved $0.03, charged $0.0228" in out
    assert "org tenant-acme                used  6800 of 30000 reserved     0   $0.0280 used" in governed
    assert "session budget: $0.0228 spent of $1.00, 1 action(s)" in out
    log = _section(out, "4. event log", "verify:")
    kinds = [line.split()[1] for line in log.splitlines()[1:] if line.strip()]
    assert kinds == [
        "session.opened",
        *["model_access.denied"] * 4,
        "token_usage.recorded",
        *["proposal.decided"] * 2,
        "model_access.denied",  # the proposal refused for its model is logged as a denial too
        "proposal.decided",
        "proposal.settled",
        "token_usage.recorded",
        "session.status_changed",
    ]
    assert "tenant-acme/support/carl may not use gpt-4o (not in the model policy)" in log
    assert "verify: ok=True (13 events checked)" in out


def test_token_demos_start_fresh_each_run_beside_the_script(tmp_path: Path) -> None:
    copy = tmp_path / "examples"
    copy.mkdir()
    for name in ("tenant_budget_tracking.py", "token_governance_demo.py", "model_policy.yaml"):
        shutil.copy(EXAMPLES / name, copy / name)
    runs: dict[str, list[str]] = {"tenant_budget_tracking": [], "token_governance_demo": []}
    for _ in range(2):  # the second run finds the first run's database and starts again without its ledger
        for name, outputs in runs.items():
            out = run_demo(copy / f"{name}.py", tmp_path, None)
            outputs.append(re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", out))
    for name, (first, second) in runs.items():
        assert f"database {'' if name.startswith('tenant') else '    '}{name}.db (fresh)" in first
        assert first == second, name
        assert (copy / f"{name}.db").exists()
