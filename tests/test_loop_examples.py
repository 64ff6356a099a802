"""The continuous-loop examples run to completion and show what a reader is meant to see, and their logs agree."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_control_plane import ControlPlaneFacade, TicketStatus

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SINGLE = "single_agent_continuous_loop.py"
MULTI = "multi_agent_continuous_loop.py"
KILL_REASON = "pushed an unreviewed change to main; under review"

SINGLE_ROW = re.compile(
    r"^\d\d:\d\d +(?P<mark>\d+|↳) +ops-bot +(?P<action>\S+) +(?P<resource>\S+)"
    r" +(?P<tier>\S+) +(?P<code>\S+) +(?P<text>.*)$"
)
MULTI_ROW = re.compile(
    r"^\d\d:\d\d +(?P<mark>\d+|↳) +(?P<agent>researcher|coder|deployer) +(?P<action>\S+) +(?P<target>\S+)"
    r" +(?P<tier>\S+) +(?P<code>\S+) +(?P<text>.*)$"
)


def run_example(script: Path, cwd: Path, database_url: str | None, *args: str) -> str:
    """`tests/test_demos.py`'s run_demo, with arguments (that module is not importable as `tests.test_demos`)."""
    env = {key: value for key, value in os.environ.items() if key != "ACP_DATABASE_URL"}
    if database_url is not None:
        env["ACP_DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@dataclass(frozen=True)
class Run:
    out: str
    url: str

    def rows(self, pattern: re.Pattern[str]) -> list[dict[str, str]]:
        return [m.groupdict() for line in self.out.splitlines() if (m := pattern.match(line))]

    def table(self) -> list[list[str]]:
        """The cells of the Rich summary table's body rows."""
        return [[cell.strip() for cell in line.split("│")[1:-1]] for line in self.out.splitlines() if "│" in line]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One default run of the single-agent loop (40 iterations), shared by the tests that read it."""
    where = tmp_path_factory.mktemp("single")
    url = f"sqlite:///{where / 'single.db'}"
    return Run(run_example(EXAMPLES / SINGLE, where, url), url)


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One default run of the multi-agent loop (12 rounds)."""
    where = tmp_path_factory.mktemp("multi")
    url = f"sqlite:///{where / 'multi.db'}"
    return Run(run_example(EXAMPLES / MULTI, where, url), url)


def test_single_agent_loop_decides_every_tier_and_the_approver_answers_each_ticket(single: Run) -> None:
    rows = single.rows(SINGLE_ROW)
    assert [row["mark"] for row in rows if row["mark"] != "↳"] == [str(n) for n in range(1, 41)]
    decided = Counter((row["tier"], row["code"]) for row in rows)
    assert decided == {
        ("unrestricted", "allowed"): 10,
        ("auto_approve", "allowed"): 15,  # restarts, log rotations, and the canaries the steering led to
        ("steer", "steered"): 5,
        ("blocked", "policy_blocked"): 5,
        ("always_approve", "approval_required"): 8,
        ("always_approve", "allowed"): 6,  # approved scale-ups, executed once each
        ("always_approve", "approval_denied"): 4,  # two by alice, and two asked again after her denial
    }
    table = {(row[0], row[1]): int(row[2]) for row in single.table() if row[0] != "all"}
    assert table == decided
    # Every steered deploy is re-planned at once into the alternative the steering offered, which then runs.
    for steered, after in itertools.pairwise(rows):
        if steered["code"] == "steered":
            assert "re-plans: deploy_canary" in steered["text"]
            assert (after["mark"], after["action"], after["code"]) == ("↳", "deploy_canary", "allowed")
    assert "alice denies ticket" in single.out
    assert "denied by alice: 8 replicas is over the 6-replica limit; needs a capacity review" in single.out
    # The same call asked again is refused with her answer, without a second ticket.
    assert single.out.count("denied: alice already denied this exact call (ticket ") == 2
    assert "rule 'volumes-are-kept' makes action 'delete_volume' blocked" in single.out
    assert "executed: 31 actions settled (29 succeeded, 2 failed)" in single.out
    assert "spend: 3.41 of the session budget 10 (34%), 0 still reserved" in single.out
    assert "tickets: 6 approved and executed, 2 denied (never executed), 0 pending" in single.out
    assert "verify: ok=True (92 events checked)" in single.out


def test_single_agent_loop_never_executes_a_denied_ticket(single: Run) -> None:
    with ControlPlaneFacade.from_database_url(single.url) as cp:
        (session,) = cp.list_sessions()
        events = cp.replay(session.session_id)
        tickets = cp.list_tickets(session_id=session.session_id)
        assert cp.verify(session.session_id).ok
    settled = {e.payload["proposal_id"] for e in events if e.kind == "proposal.settled"}
    authorized = Counter(
        e.payload["authorized_by"]["id"]
        for e in events
        if e.kind == "proposal.decided" and "authorized_by" in e.payload
    )
    denied = [t for t in tickets if t.status is TicketStatus.DENIED]
    consumed = [t for t in tickets if t.status is TicketStatus.CONSUMED]
    assert (len(denied), len(consumed), len(tickets)) == (2, 6, 8)
    for ticket in denied:
        assert ticket.decided_by == "alice"
        assert ticket.proposal_id not in settled
        assert authorized[ticket.ticket_id] == 0  # no execution was ever authorized by it
    for ticket in consumed:
        assert authorized[ticket.ticket_id] == 1  # approved calls ran exactly once...
        assert ticket.consumed_by in settled  # ...and were settled with what they cost


def test_single_agent_loop_stops_when_the_session_budget_is_spent(tmp_path: Path) -> None:
    out = run_example(EXAMPLES / SINGLE, tmp_path, f"sqlite:///{tmp_path / 'budget.db'}", "--budget", "1")
    rows = Run(out, "").rows(SINGLE_ROW)
    # The on-call engineer approved the 12th iteration's scale-up, but the budget still has the last word.
    assert [(row["action"], row["code"]) for row in rows[-2:]] == [
        ("scale_service", "approval_required"),
        ("scale_service", "cost_budget_exceeded"),
    ]
    assert "denied: cost budget exceeded: 0.3 requested, 0.0556 of 1 left (0.9444 spent, 0 reserved)" in out
    assert "the budget cannot cover the next action: ops-bot stops after 12 of 40 iterations" in out
    assert "spend: 0.9444 of the session budget 1 (94%), 0 still reserved" in out
    assert "tickets: 1 approved and executed, 1 approved but refused by the budget, 1 denied (never executed)" in out
    assert "verify: ok=True" in out


def test_single_agent_quick_run_starts_fresh_beside_the_script(tmp_path: Path) -> None:
    copy = tmp_path / "examples"
    copy.mkdir()
    for name in (SINGLE, "single_agent_policy.yaml"):
        shutil.copy(EXAMPLES / name, copy / name)
    for _ in range(2):  # the second run removes the first run's database before it starts
        out = run_example(copy / SINGLE, tmp_path, None, "--quick")
    rows = Run(out, "").rows(SINGLE_ROW)
    assert [row["mark"] for row in rows if row["mark"] != "↳"] == [str(n) for n in range(1, 9)]
    assert {row["tier"] for row in rows} == {"unrestricted", "auto_approve", "steer", "blocked", "always_approve"}
    assert "tickets: 1 approved and executed, 1 denied (never executed), 0 pending" in out
    assert "verify: ok=True" in out
    with ControlPlaneFacade.from_database_url(f"sqlite:///{copy / 'single_agent_continuous_loop.db'}") as cp:
        assert len(cp.list_sessions()) == 1


def test_multi_agent_loop_denies_work_outside_an_agents_capabilities_and_hands_it_on(multi: Run) -> None:
    rows = multi.rows(MULTI_ROW)
    first = next(i for i, row in enumerate(rows) if row["code"] == "outside_capabilities")
    refused, handed = rows[first], rows[first + 1]
    assert (refused["agent"], refused["action"], refused["tier"]) == ("researcher", "write_code", "blocked")
    assert "denied: agent 'researcher' may not propose 'write_code'" in refused["text"]
    assert (handed["mark"], handed["action"], handed["target"], handed["code"]) == (
        "↳",
        "delegate",
        "write_code->coder",
        "allowed",
    )
    # A hand-off is checked too: the coder may not deploy, so the researcher asks the deployer instead.
    wrong = next(row for row in rows if row["target"] == "deploy->coder")
    assert (wrong["tier"], wrong["code"]) == ("blocked", "outside_capabilities")
    assert "delegation target 'coder' may not perform 'deploy'" in wrong["text"]
    assert rows[rows.index(wrong) + 1]["target"] == "deploy->deployer"
    # Having been told once, the researcher hands such work on directly from then on.
    assert [row["target"] for row in rows if row["code"] == "outside_capabilities"] == ["repo/app", "deploy->coder"]


def test_multi_agent_delegation_is_a_governed_proposal_that_the_target_agent_then_makes(multi: Run) -> None:
    with ControlPlaneFacade.from_database_url(multi.url) as cp:
        sessions = {s.agent_id: s.session_id for s in cp.list_sessions()}
        logs = {agent: cp.replay(sid) for agent, sid in sessions.items()}
        assert all(cp.verify(sid).ok for sid in sessions.values())
    decided = {agent: [e.payload for e in log if e.kind == "proposal.decided"] for agent, log in logs.items()}
    handoffs = [p for p in decided["researcher"] if p["action"] == "delegate" and p["allowed"]]
    to_coder = [p["args"] for p in handoffs if p["args"]["to"] == "coder"]
    assert len(to_coder) == 3
    assert all(args["task"] == "write_code" and args["args"]["on"] == "repo/app" for args in to_coder)
    written = [p["args"]["change"] for p in decided["coder"] if p["action"] == "write_code" and p["allowed"]]
    assert written == [args["args"]["change"] for args in to_coder]  # each handed task was done, in order, once
    settled = [
        e.payload for e in logs["researcher"] if e.kind == "proposal.settled" and e.payload["action"] == "delegate"
    ]
    assert {s["result"]["queued_for"] for s in settled} == {"coder", "deployer"}
    deploys = [p["resource"] for p in decided["deployer"] if p["action"] == "deploy" and p["allowed"]]
    # Six deploys were handed to the deployer (three each from the coder and the researcher); the last one is still
    # in its queue when the loop ends, as the summary's "queued" column shows.
    assert sorted(deploys) == ["staging/app"] * 2 + ["staging/docs"] * 3


def test_multi_agent_kill_switch_stops_only_the_coder_until_it_is_released(multi: Run) -> None:
    lines = multi.out.splitlines()
    kill = next(i for i, line in enumerate(lines) if "operator   kill_agent coder" in line)
    release = next(i for i, line in enumerate(lines) if "operator   release_kill agent coder" in line)
    during = [m.groupdict() for line in lines[kill:release] if (m := MULTI_ROW.match(line))]
    after = [m.groupdict() for line in lines[release:] if (m := MULTI_ROW.match(line))]
    coder = [row for row in during if row["agent"] == "coder"]
    assert [row["code"] for row in coder] == ["killed"] * 3
    assert all(f"engaged by operator at 2026-03-02 14:12:00Z: {KILL_REASON}" in row["text"] for row in coder)
    others = [row for row in during if row["agent"] != "coder"]
    assert {row["agent"] for row in others} == {"researcher", "deployer"}
    assert {row["code"] for row in others} == {"allowed"}  # including a hand-off to the killed coder, which waits
    assert {row["code"] for row in after} == {"allowed"}
    assert ("coder", "write_code") in {(row["agent"], row["action"]) for row in after}  # it catches up


def test_multi_agent_summary_counts_each_agent_and_every_log_verifies(multi: Run) -> None:
    table = {row[0]: row[1:] for row in multi.table()}
    assert table == {
        "researcher": ["14", "12", "outside_capabilities 2", "6", "0", "0", "0.054", "ok, 28 events"],
        "coder": ["12", "9", "killed 3", "3", "3", "0", "1.107", "ok, 23 events"],
        "deployer": ["12", "12", "-", "0", "6", "1", "0.693", "ok, 26 events"],
    }
    assert "verify: 3 of 3 session logs ok" in multi.out


def test_multi_agent_quick_run_kills_and_releases_the_coder(tmp_path: Path) -> None:
    out = run_example(EXAMPLES / MULTI, tmp_path, f"sqlite:///{tmp_path / 'quick.db'}", "--quick")
    rows = Run(out, "").rows(MULTI_ROW)
    assert max(int(row["mark"]) for row in rows if row["mark"] != "↳") == 6
    assert [row["code"] for row in rows if row["agent"] == "coder"].count("killed") == 2
    assert "kill_agent coder" in out
    assert "release_kill agent coder" in out
    assert "verify: 3 of 3 session logs ok" in out
