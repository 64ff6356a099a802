"""examples/long_running_autonomous_agent.py: over a simulated day, and a week, it shows what a reader should see."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from agent_control_plane import ControlPlaneFacade

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPT = EXAMPLES / "long_running_autonomous_agent.py"
RICH_SETTINGS = ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES")
"""Environment variables that would change how Rich draws; the example must not depend on the caller's."""


def run_example(*args: str, cwd: Path, database_url: str | None, script: Path = SCRIPT) -> str:
    env = {key: value for key, value in os.environ.items() if key not in ("ACP_DATABASE_URL", *RICH_SETTINGS)}
    if database_url is not None:
        env["ACP_DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{script.name} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    assert done.stderr == "", done.stderr  # no progress bar, no warnings: stdout is not a terminal
    return done.stdout


def rows(out: str, title: str) -> list[list[str]]:
    """The body rows of the summary table called `title`, as lists of cell texts."""
    found = []
    for line in out.split(f"\n{title}", 1)[1].splitlines()[1:]:
        if line.startswith("└"):
            break
        if line.startswith("│"):
            found.append([cell.strip() for cell in line.strip("│").split("│")])
    return found


def timeline(out: str) -> list[tuple[str, str]]:
    """(when, what) for each line of the timeline."""
    lines = out.split("\ntimeline", 1)[1].split("\nactions by tier", 1)[0].splitlines()
    return [(line[2:17], line[19:]) for line in lines if re.match(r"  \w{3} \d\d-\d\d \d\d:\d\d  ", line)]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """One `--quick` run (a day in 30-minute steps) on a database of its own: (its output, the database url)."""
    where = tmp_path_factory.mktemp("long_horizon")
    url = f"sqlite:///{where / 'quick.db'}"
    return run_example("--quick", cwd=where, database_url=url), url


def test_daily_token_window_is_exhausted_in_the_afternoon_and_allowed_again_after_midnight(
    quick: tuple[str, str],
) -> None:
    out, _ = quick
    daily = {row[1]: row for row in rows(out, "spend per token window") if row[0].startswith("daily ")}
    assert list(daily) == ["Mon 03-02", "Tue 03-03"]
    monday, tuesday = daily["Mon 03-02"], daily["Tue 03-03"]
    assert int(monday[5]) > 0 and re.fullmatch(r"1[2-9]:\d\d", monday[6])  # refused, first in the afternoon
    assert int(monday[2].split(" / ")[0]) > 55_000  # the day's budget was spent before the refusals began
    assert tuesday[5] == "0" and tuesday[6] == "-"
    assert int(tuesday[2].split(" / ")[0]) > 0  # a new window, from zero, and model calls use it again
    events = timeline(out)
    exhausted = [when for when, what in events if what.startswith("token budget exceeded: daily budget of org acme")]
    again = [when for when, what in events if what.startswith("a new daily window: model calls are allowed again")]
    assert exhausted == [f"Mon 03-02 {monday[6]}"]
    assert len(again) == 1 and again[0].startswith("Tue 03-03 00:")
    tiers = {row[0]: row for row in rows(out, "actions by tier")}
    assert f"token_budget_exceeded x {monday[5]}" in tiers["unrestricted"][3]
    assert "resets 2026-03-03 00:00 UTC" in out


def test_unanswered_tickets_escalate_after_an_hour_and_expire_two_hours_later(quick: tuple[str, str]) -> None:
    out, _ = quick
    tickets = {row[0]: (int(row[1]), int(row[2])) for row in rows(out, "tickets by outcome")}
    assert tickets["expired"][0] >= 1
    assert tickets["expired"][1] == tickets["expired"][0]  # every expired ticket had been escalated first
    assert tickets["approved"][0] >= 1 and tickets["approved"][1] >= 1  # some approved by a lead after escalation
    assert tickets["denied"][0] >= 1
    total = sum(count for outcome, (count, _) in tickets.items() if outcome != "all")
    assert tickets["all"][0] == total
    events = timeline(out)
    escalated = {what.split()[1]: when for when, what in events if "escalated after an hour unanswered" in what}
    expired = {what.split()[1]: when for when, what in events if "expired after two more hours unanswered" in what}
    assert escalated and expired
    for number, when in expired.items():
        if number in escalated:  # two hours from escalation to expiry, give or take a step
            gap = datetime.strptime(when, "%a %m-%d %H:%M") - datetime.strptime(escalated[number], "%a %m-%d %H:%M")
            assert 2 * 3600 <= gap.total_seconds() <= 2 * 3600 + 1800
    assert any(re.search(r"ticket #\d+ \(\w+\) approved by lee", what) for _, what in events)
    tiers = {row[0]: row for row in rows(out, "actions by tier")}
    assert int(tiers["always_approve"][2]) == tickets["approved"][0]  # each approval ran its call exactly once


def test_a_hung_worker_holds_its_lease_until_lease_seconds_then_the_retry_runs(quick: tuple[str, str]) -> None:
    out, _ = quick
    events = timeline(out)
    hung = [
        when for when, what in events if what.startswith("run_migration on db/orders allowed, and its worker hangs")
    ]
    refused = [when for when, what in events if "1 of 1 actions already in flight for resource 'db/orders'" in what]
    expired = "run_migration on db/orders allowed again: the hung worker's lease expired"
    again = [when for when, what in events if what == expired]
    assert hung == ["Mon 03-02 10:00"]
    assert refused == ["Mon 03-02 10:30"]
    assert again == ["Mon 03-02 11:00"]  # the lease (lease_seconds: 2400) expired at 10:40
    tiers = {row[0]: row for row in rows(out, "actions by tier")}
    assert tiers["auto_approve"][3] == "concurrency_limit x 1"


def test_crash_recovery_settles_open_actions_as_interrupted_and_nothing_runs_them_again(quick: tuple[str, str]) -> None:
    out, url = quick
    [recovery] = rows(out, "recoveries")
    assert recovery[:5] == ["Mon 03-02 14:20", "2", "1", "3", "1"]  # restart, open, hung, interrupted, late refused
    said = [what for when, what in timeline(out) if when == "Mon 03-02 14:20"]
    assert said[0].startswith("RESTART: a new control plane on the same database; CrashRecovery: 3 interrupted")
    assert said[1:4] == [
        "  settled interrupted: run_migration on db/orders (its worker hung), never run again",
        "  settled interrupted: llm_call (open at the crash), never run again",
        "  settled interrupted: run_tests on repo/api (open at the crash), never run again",
    ]
    assert "settle refused (the proposal is already settled (interrupted))" in said[4]
    assert re.fullmatch(r"  the agent resumes, and finds \d+ open ticket\(s\) in the database", said[5])
    assert any(when > "Mon 03-02 14:20" for when, _ in timeline(out))  # and the agent went on working
    with ControlPlaneFacade.from_database_url(url) as cp:
        [session] = cp.list_sessions()
        settled = [e.payload for e in cp.replay(session.session_id) if e.kind == "proposal.settled"]
    interrupted = {p["proposal_id"] for p in settled if p["outcome"] == "interrupted"}
    assert len(interrupted) == 3
    times_settled = Counter(p["proposal_id"] for p in settled)
    assert all(times_settled[proposal_id] == 1 for proposal_id in interrupted)  # never settled (run) again


def test_summary_counts_every_tier_and_the_event_log_verifies(quick: tuple[str, str]) -> None:
    out, _ = quick
    tiers = {row[0]: row for row in rows(out, "actions by tier")}
    assert list(tiers) == ["unrestricted", "auto_approve", "always_approve", "steer", "blocked"]
    assert all(int(row[1]) > 0 for row in tiers.values())
    assert tiers["steer"][2] == "0" and tiers["steer"][3] == f"steered x {tiers['steer'][1]}"
    assert tiers["blocked"][2] == "0" and tiers["blocked"][3] == f"policy_blocked x {tiers['blocked'][1]}"
    assert tiers["always_approve"][3] == f"approval_required x {tiers['always_approve'][1]}"
    assert "re-planned: deploy_staging" in out
    assert re.search(r"\nevent log: 2 logs, \d+ events verified: ok\n", out)
    assert re.search(
        r"\nsimulated Mon 03-02 08:00 → Tue 03-03 08:00 UTC \(24 hours\) in \d+\.\d s of real time\n$", out
    )


def test_quick_run_starts_fresh_beside_the_script_and_prints_the_same_every_time(tmp_path: Path) -> None:
    copy = tmp_path / "examples"
    copy.mkdir()
    for name in ("long_running_autonomous_agent.py", "long_running_autonomous_agent.yaml"):
        shutil.copy(EXAMPLES / name, copy / name)
    runs = [run_example("--quick", cwd=tmp_path, database_url=None, script=copy / SCRIPT.name) for _ in range(2)]
    first, second = (out.rsplit(" in ", 1)[0] for out in runs)  # all but the real time taken
    assert first == second
    assert first.startswith("database  long_running_autonomous_agent.db (fresh)\n")
    assert "\x1b[" not in first  # plain text when stdout is not a terminal
    assert (copy / "long_running_autonomous_agent.db").exists()


def test_a_week_rolls_seven_daily_windows_over_and_counts_weekly_and_monthly_ones(tmp_path: Path) -> None:
    out = run_example("--horizon", "week", cwd=tmp_path, database_url=f"sqlite:///{tmp_path / 'week.db'}")
    windows = rows(out, "spend per token window")
    daily = [row for row in windows if row[0].startswith("daily ")]
    days = "Mon 03-02, Tue 03-03, Wed 03-04, Thu 03-05, Fri 03-06, Sat 03-07, Sun 03-08, Mon 03-09"
    assert [row[1] for row in daily] == days.split(", ")
    assert all(int(row[5]) > 0 for row in daily[:-1])  # every full day ran out of tokens...
    assert daily[-1][5] == "0"  # ...the last one, 8 hours long, did not
    assert [row[:2] for row in windows if not row[0].startswith("daily ")] == [
        ["weekly org acme / team platform", "Mon 03-02"],
        ["weekly org acme / team platform", "Mon 03-09"],
        ["monthly org acme", "Sun 03-01"],
    ]
    assert len(rows(out, "recoveries")) == 1
    assert "horizon   week: Mon 2026-03-02 08:00 → Mon 2026-03-09 08:00 UTC, a step every 20 minutes (504 steps)" in out
    assert re.search(r"\nevent log: 2 logs, \d+ events verified: ok\n", out)


def test_help_names_the_horizons_and_the_options(tmp_path: Path) -> None:
    out = run_example("--help", cwd=tmp_path, database_url=None)
    assert "--horizon {hour,day,week,month}" in out
    for words in ("--quick", "--no-progress", "ManualClock", "ACP_DATABASE_URL"):
        assert words in out
