"""examples/continuous_loop_governance.py: a running loop under a policy change, a system kill and a spent budget."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "continuous_loop_governance.py"

ROW = re.compile(
    r"^(?P<time>\d\d:\d\d)  (?P<session>night-shift|day-shift) +(?P<action>\w+) +#(?P<ticket>\d+)  "
    r"(?P<verdict>ALLOW|APPROVAL|DENY) +(?P<tier>\w+)/(?P<code>\w+) +left (?P<left>\S+) +(?P<reason>.+)$"
)
"""One iteration of the loop: time, session, action, ticket, verdict, tier/code, budget left, reason."""


@dataclass(frozen=True)
class Row:
    time: str
    session: str
    action: str
    ticket: str
    verdict: str
    tier: str
    code: str
    left: str
    reason: str


def run_example(
    cwd: Path, database_url: str | None, *args: str, script: Path = SCRIPT
) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "ACP_DATABASE_URL"}
    if database_url is not None:
        env["ACP_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def rows(out: str) -> list[Row]:
    return [Row(**m.groupdict()) for line in out.splitlines() if (m := ROW.match(line))]


def line_index(out: str, text: str) -> int:
    """The position, among the iteration rows, of the first row printed after the line containing `text`."""
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if text in line)
    return sum(1 for line in lines[:at] if ROW.match(line))


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The default run (30 iterations), once for the whole module."""
    tmp = tmp_path_factory.mktemp("loop")
    done = run_example(tmp, f"sqlite:///{tmp / 'loop.db'}")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return done.stdout


def test_running_session_keeps_its_policy_while_a_session_opened_after_the_change_gets_the_new_one(out: str) -> None:
    opened = re.search(r"22:00  night-shift opened with policy v1 (\w{16})", out)
    changed = re.search(r"operator: set_policy\(v2\) -> (\w{16})", out)
    kept = re.search(r"night-shift keeps policy v1 (\w{16})", out)
    new = re.search(r"day-shift opened with policy v2 (\w{16})", out)
    assert opened and changed and kept and new, out
    assert kept[1] == opened[1] != changed[1] == new[1]

    after_change = rows(out)[line_index(out, "operator: set_policy(v2)") :]
    not_killed = [row for row in after_change if row.action == "send_reply" and row.code != "killed"]
    night = [(row.verdict, row.tier, row.code) for row in not_killed if row.session == "night-shift"]
    day = [row for row in not_killed if row.session == "day-shift"]
    assert night == [("ALLOW", "auto_approve", "allowed")] * 2  # one right after the change, one much later
    assert len(day) >= 2
    for row in day:
        assert (row.verdict, row.tier, row.code) == ("APPROVAL", "always_approve", "approval_required")
        assert "rule 'replies-need-review' makes action 'send_reply' always_approve" in row.reason
        assert "(ticket " in row.reason
    assert re.search(r"│ policy +│ +v1 \w{8} │ +v2 \w{8} │", out)
    assert f"v1 {opened[1][:8]}" in out
    assert f"v2 {new[1][:8]}" in out


def test_spent_session_budget_denies_every_later_proposal_with_the_budget_code(out: str) -> None:
    night = [row for row in rows(out) if row.session == "night-shift"]
    first = next(i for i, row in enumerate(night) if row.code == "cost_budget_exceeded")
    assert first > 0
    spent = night[first:]
    assert len(spent) >= 5  # the loop keeps proposing, and each proposal is denied
    for row in spent:
        assert (row.verdict, row.action, row.ticket, row.left) == ("DENY", "draft_reply", "4103", "$0.05")
        assert row.reason == "denied: cost budget exceeded: 0.1 requested, 0.05 of 0.7 left (0.65 spent, 0 reserved)"
    lefts = [Decimal(row.left.removeprefix("$")) for row in night]
    assert lefts[0] == Decimal("0.65")
    assert lefts == sorted(lefts, reverse=True)  # the remaining budget shown only goes down
    assert re.search(r"│ spent +│ \$0\.65 of \$0\.70 │", out)
    # The other session has its own budget and goes on being allowed.
    day_after = [row for row in rows(out) if row.session == "day-shift" and row.time > spent[0].time]
    assert any(row.verdict == "ALLOW" for row in day_after)


def test_system_kill_denies_every_session_with_its_reason_and_who_engaged_it_until_released(out: str) -> None:
    all_rows = rows(out)
    start, end = line_index(out, "operator: kill_system"), line_index(out, "operator: release_kill(system)")
    killed = all_rows[start:end]
    assert {row.session for row in killed} == {"night-shift", "day-shift"}
    for row in killed:
        assert (row.verdict, row.code) == ("DENY", "killed")
        assert row.reason == (
            "denied: kill switch (system) engaged by oncall-maria at 2026-03-02 22:06:00Z: "
            "incident 7: replies quoting other customers"
        )
    assert all(row.code != "killed" for row in all_rows[:start] + all_rows[end:])
    # After the release each session proposes the step the kill stopped, and the policy decides it again.
    for row in killed:
        retry = next(r for r in all_rows[end:] if r.session == row.session)
        assert (retry.action, retry.ticket) == (row.action, row.ticket)
    night_retry = next(r for r in all_rows[end:] if r.session == "night-shift")
    assert (night_retry.verdict, night_retry.code) == ("ALLOW", "allowed")


def test_every_session_log_and_the_control_stream_verify_ok(out: str) -> None:
    assert "verify control stream: ok=True (2 events checked)" in out  # kill.engaged, kill.released
    assert re.search(r"verify night-shift: ok=True \(\d+ events checked\)", out)
    assert re.search(r"verify day-shift: ok=True \(\d+ events checked\)", out)
    assert "ok=False" not in out


def test_summary_counts_every_decision_printed_per_session(out: str) -> None:
    assert "after 30 iterations" in out
    printed = Counter((row.session, f"{row.tier}/{row.code}") for row in rows(out))
    assert printed.total() == 30
    table = {}
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if len(cells) == 3 and re.fullmatch(r"\w+/\w+", cells[0]):
            table[("night-shift", cells[0])], table[("day-shift", cells[0])] = int(cells[1]), int(cells[2])
    assert {key: count for key, count in table.items() if count} == dict(printed)
    assert re.search(r"│ proposals +│ +16 │ +14 │", out)
    waiting = printed[("day-shift", "always_approve/approval_required")]
    assert f"{waiting} replies were waiting for a human at the end of the shift; closing the sessions expired" in out


def test_quick_run_shows_every_change_from_a_fresh_database_beside_the_script(tmp_path: Path) -> None:
    copy = tmp_path / "examples"
    copy.mkdir()
    script = Path(shutil.copy(SCRIPT, copy / SCRIPT.name))
    outputs = []
    for _ in range(2):  # the second run removes the first run's database and starts again from nothing
        done = run_example(tmp_path, None, "--quick", script=script)
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        outputs.append(re.sub(r"ticket [0-9a-f-]{36}", "ticket <id>", done.stdout))
    assert outputs[0] == outputs[1]
    out = outputs[0]
    assert len(rows(out)) == 18
    assert "after 18 iterations" in out
    assert {row.code for row in rows(out)} >= {"allowed", "approval_required", "killed", "cost_budget_exceeded"}
    assert (copy / "continuous_loop_governance.db").exists()


def test_too_few_iterations_to_reach_the_operator_timetable_is_refused(tmp_path: Path) -> None:
    done = run_example(tmp_path, f"sqlite:///{tmp_path / 'loop.db'}", "--iterations", "5")
    assert done.returncode == 2
    assert "--iterations must be at least 18" in done.stderr
    assert not (tmp_path / "loop.db").exists()
