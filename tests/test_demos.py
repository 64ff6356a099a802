"""The offline demos in examples/ run to completion and print what a reader is meant to see."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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
