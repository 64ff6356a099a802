"""Continuous loop governance: an agent loop that keeps running while an operator changes the rules under it.

Run it from the repository root with `python examples/continuous_loop_governance.py [--iterations N] [--quick]`,
or from `examples/`. No API key and no network: a scripted support agent (read a ticket, draft a reply, send it)
stands in for an LLM, and a `ManualClock` moves one minute per iteration, so the whole shift runs at once. It starts
from a fresh `continuous_loop_governance.db` next to this file each time (set ACP_DATABASE_URL to use another
database). The two policies are inline below: v2 is v1 plus one rule.

What it shows, one line per iteration (time, session, action, decision tier/code, budget left, reason):

1. a policy change mid-run: the operator calls `cp.set_policy(v2)`, which sends `send_reply` to a human. The
   session already running keeps its v1 snapshot (its replies still go out), while the session opened after the
   change is decided by v2; each session's policy hash is printed from `cp.get_session`;
2. a system kill switch: every proposal in every session is denied with the operator's reason and name, until
   `cp.release_kill("system", ...)`, and then the loop carries on where it stopped;
3. a session budget running out: the loop keeps proposing and `max_cost` denies each proposal with
   `cost_budget_exceeded`, while the other session goes on;
4. a summary of every session's decisions and spend, and `verify` of each session's log and of the control stream
   (where the kill switch changes are logged).
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from agent_control_plane import (
    ControlPlaneFacade,
    Decision,
    DecisionCode,
    KillScope,
    ManualClock,
    TicketStatus,
    load_policy,
)

HERE = Path(__file__).resolve().parent
DATABASE = HERE / "continuous_loop_governance.db"

POLICY_V1: dict[str, Any] = {
    "default_tier": "always_approve",
    "actions": {"read_ticket": "unrestricted", "draft_reply": "auto_approve", "send_reply": "auto_approve"},
}
POLICY_V2: dict[str, Any] = {
    **POLICY_V1,
    "rules": [
        {
            "name": "replies-need-review",
            "when": {"field": "action", "eq": "send_reply"},
            "tier": "always_approve",
            "reason": "a human reads every reply before it is sent",
        }
    ],
}
VERSIONS = {load_policy(POLICY_V1).digest(): "v1", load_policy(POLICY_V2).digest(): "v2"}

STEPS = [("read_ticket", Decimal("0.05")), ("draft_reply", Decimal("0.10")), ("send_reply", Decimal("0.15"))]
"""What the agent does for each ticket, and what each step costs (say, the LLM call behind it)."""

RETRY = {DecisionCode.KILLED, DecisionCode.COST_BUDGET_EXCEEDED, DecisionCode.ACTION_COUNT_EXCEEDED}
"""Denials the agent does not take as an answer about the step: it proposes the same step again next turn."""

POLICY_CHANGE, KILL, RELEASE = 2, 6, 8
"""The operator's timetable, in iterations; QUICK iterations are enough to show every change and the budget out."""
QUICK = 18


@dataclass
class ScriptedAgent:
    """Stands in for an LLM working through a queue of helpdesk tickets, one step per turn."""

    first_ticket: int
    step: int = 0

    def next_step(self) -> tuple[str, int, Decimal]:
        action, cost = STEPS[self.step % len(STEPS)]
        return action, self.first_ticket + self.step // len(STEPS), cost

    def hear(self, decision: Decision) -> None:
        """Move on, unless the denial was about the moment (a kill switch, a budget) rather than the step."""
        if decision.code not in RETRY:
            self.step += 1


@dataclass
class Run:
    """One governed session of the loop and what it was told."""

    name: str
    session_id: str
    agent: ScriptedAgent
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)
    sent: list[str] = field(default_factory=list)
    """The tier of each `send_reply` this session proposed."""


def verdict(d: Decision) -> str:
    if d.allowed:
        return "ALLOW"
    return "APPROVAL" if d.code is DecisionCode.APPROVAL_REQUIRED else "DENY"


def policy_of(cp: ControlPlaneFacade, session_id: str) -> str:
    digest = cp.get_session(session_id).policy_hash
    return f"{VERSIONS.get(digest, '?')} {digest[:16]}"


def money(amount: Decimal | None) -> str:
    return "no limit" if amount is None else f"${amount:.2f}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--iterations",
        type=int,
        default=30,
        help=f"turns of the loop, one proposal each (default 30, at least {QUICK})",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK} iterations: the shortest run showing every change"
    )
    args = parser.parse_args()
    if args.quick:
        args.iterations = QUICK
    if args.iterations < QUICK:
        parser.error(f"--iterations must be at least {QUICK} to reach every change of the operator's timetable")
    return args


def main() -> None:
    iterations = parse_args().iterations
    url = os.environ.get("ACP_DATABASE_URL")
    acp = "acp"  # the CLI reads ACP_DATABASE_URL too
    if url is None:
        for leftover in HERE.glob(f"{DATABASE.name}*"):
            leftover.unlink()
        url = f"sqlite:///{DATABASE}"
        acp = f"acp --database-url {url}"

    clock = ManualClock(datetime(2026, 3, 2, 22, 0, tzinfo=UTC))
    console = Console(highlight=False)
    with ControlPlaneFacade.from_database_url(url, policy=POLICY_V1, clock=clock) as cp:
        cp.setup()
        night = cp.open_session("night-shift", agent_id="support-bot", max_cost=Decimal("0.70"))
        runs = [Run("night-shift", night, ScriptedAgent(first_ticket=4101))]
        print(f"{clock.now():%H:%M}  night-shift opened with policy {policy_of(cp, night)}, max_cost $0.70\n")

        for turn in range(iterations):
            now = clock.now().strftime("%H:%M")
            if turn == POLICY_CHANGE:
                new_hash = cp.set_policy(POLICY_V2)
                day = cp.open_session("day-shift", agent_id="support-bot", max_cost=Decimal("5.00"))
                runs.append(Run("day-shift", day, ScriptedAgent(first_ticket=4201)))
                print(f"{now}  operator: set_policy(v2) -> {new_hash[:16]}: send_reply now needs a human")
                print(f"{now}  night-shift keeps policy {policy_of(cp, night)}, the snapshot it was opened with")
                print(f"{now}  day-shift opened with policy {policy_of(cp, day)}, max_cost $5.00")
            elif turn == KILL:
                kill = cp.kill_system(reason="incident 7: replies quoting other customers", by="oncall-maria")
                print(f"{now}  operator: kill_system by {kill.engaged_by}: {kill.reason}")
            elif turn == RELEASE:
                cp.release_kill(KillScope.SYSTEM, None, reason="bad template removed", by="oncall-maria")
                print(f"{now}  operator: release_kill(system): bad template removed")

            run = runs[turn % len(runs)]
            action, ticket, cost = run.agent.next_step()
            d = cp.propose(run.session_id, action, args={"ticket": ticket}, resource=f"helpdesk/{ticket}", cost=cost)
            if d.allowed:  # ...the host runs the step here, then reports what it really cost
                cp.settle(d.proposal_id, actual_cost=cost, result={"ticket": ticket})
            run.agent.hear(d)
            run.decisions[(d.tier.value, d.code.value)] += 1
            if action == "send_reply":
                run.sent.append(d.tier.value)
            left = money(cp.get_remaining_budget(run.session_id)["remaining_cost"])
            print(
                f"{now}  {run.name:<11}  {action:<11} #{ticket}  {verdict(d):<8}  "
                f"{d.tier.value + '/' + d.code.value:<33}  left {left:<6}  {d.reason}"
            )
            clock.advance(60)

        # Closing a session expires the tickets still waiting in it: nobody is asked about a shift that is over.
        waiting = [t for run in runs for t in cp.list_tickets(status=TicketStatus.PENDING, session_id=run.session_id)]
        for run in runs:
            cp.close_session(run.session_id, reason="end of shift")
        reports = {run.name: cp.verify(run.session_id) for run in runs}
        known = {info.session_id for info in cp.list_sessions()}
        control = [report for report in cp.verify_all() if report.session_id not in known]
        budgets = {run.name: cp.get_remaining_budget(run.session_id) for run in runs}

        table = Table(title=f"after {iterations} iterations")
        table.add_column("decision (tier/code)")
        for run in runs:
            table.add_column(run.name, justify="right")
        for key in sorted({key for run in runs for key in run.decisions}):
            table.add_row("/".join(key), *(str(run.decisions[key]) for run in runs))
        table.add_row("proposals", *(str(run.decisions.total()) for run in runs), end_section=True)
        spend = [f"{money(budgets[r.name]['spent_cost'])} of {money(budgets[r.name]['max_cost'])}" for r in runs]
        table.add_row("spent", *spend)
        table.add_row("policy", *(policy_of(cp, run.session_id)[:11] for run in runs))
        table.add_row("log", *(f"ok={reports[r.name].ok} ({reports[r.name].events_checked})" for r in runs))
        print()
        console.print(table)
        for report in control:
            print(f"verify control stream: ok={report.ok} ({report.events_checked} events checked)")
        for name, report in reports.items():
            print(f"verify {name}: ok={report.ok} ({report.events_checked} events checked)")
        print(
            f"{len(waiting)} replies were waiting for a human at the end of the shift; closing the sessions expired "
            f"their tickets: {acp} tickets list --status expired"
        )

    night_run, day_run = runs
    assert set(night_run.sent) == {"auto_approve"}, night_run.sent  # the change never reached the running session
    assert set(day_run.sent) == {"always_approve"}, day_run.sent
    assert night_run.decisions[("auto_approve", "cost_budget_exceeded")] >= 1, night_run.decisions
    assert all(report.ok for report in [*reports.values(), *control])


if __name__ == "__main__":
    main()
