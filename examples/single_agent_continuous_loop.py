"""One agent in a continuous loop: every action is proposed, decided, executed (or not) and settled.

Run it from the repository root with `python examples/single_agent_continuous_loop.py` (40 iterations;
`--iterations N` for another number, `--quick` for a short run, `--budget X` for another session budget), or from
`examples/`. No API key and no network: the "agent" is a small class with a routine standing in for an LLM, and a
`ManualClock` moves five minutes per iteration, so a shift of work runs in a second or two. It starts from a fresh
`single_agent_continuous_loop.db` next to this file each time (set ACP_DATABASE_URL to use another database). The
policy is `single_agent_policy.yaml`, beside this file.

Each iteration the agent proposes its next task and the policy decides: allowed actions run (simulated) and are
settled with what they really cost; a steered deploy is re-planned with the steering's alternatives; a scale-up
gets a ticket, which a scripted on-call engineer approves or denies (`cp.approve` / `cp.deny`) and the agent picks
up with `cp.resume` (asking again for a call the engineer denied gets the denial back, not a new ticket); a blocked
action never runs. At the end: decisions per tier and code, spend against the
session budget, tickets, and `cp.verify` of the session's hash-chained log.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from agent_control_plane import (
    ControlPlaneFacade,
    Decision,
    DecisionCode,
    ManualClock,
    Outcome,
    SteeringContext,
    Ticket,
    TicketStatus,
)

HERE = Path(__file__).resolve().parent
DATABASE = HERE / "single_agent_continuous_loop.db"
POLICY = HERE / "single_agent_policy.yaml"
AGENT = "ops-bot"
APPROVER = "alice"
REPLICA_LIMIT = 6
OUT_OF_BUDGET = {DecisionCode.COST_BUDGET_EXCEEDED, DecisionCode.ACTION_COUNT_EXCEEDED}


@dataclass(frozen=True)
class Step:
    """One action the agent intends to take, with what it expects the action to cost."""

    action: str
    resource: str
    args: dict[str, Any] = field(default_factory=dict)
    cost: Decimal = Decimal("0.01")


class OpsAgent:
    """Stands in for an LLM: a routine of eight tasks, a little different each round, and a re-plan step."""

    tools = frozenset({"read_metrics", "read_logs", "restart_service", "deploy", "deploy_canary", "scale_service"})

    def next_step(self, iteration: int) -> Step:
        round_, slot = divmod(iteration, 8)
        worker_replicas = 4 if round_ % 2 else 8  # the batch queue is long every other round
        routine = [
            Step("read_metrics", "prod/web", {"window": "5m"}),
            Step("restart_service", "staging/web", {"reason": "memory creep"}, Decimal("0.10")),
            Step("deploy", "prod/web", {"ref": f"v2.{round_}.0"}, Decimal("0.20")),
            Step("scale_service", "prod/web", {"replicas": 3 + round_}, Decimal("0.30")),
            Step("read_logs", "prod/web", {"level": "error"}),
            Step("delete_volume", "prod/tmp-cache", {"volume": f"cache-{round_}"}, Decimal("0.05")),
            Step("rotate_logs", "prod/web", {}, Decimal("0.05")),
            Step("scale_service", "prod/worker", {"replicas": worker_replicas}, Decimal("0.30")),
        ]
        return routine[slot]

    def replan(self, step: Step, steering: SteeringContext) -> Step | None:
        """Take the first suggested alternative this agent has a tool for (None: give the task up)."""
        usable = [name for name in steering.alternatives if name in self.tools]
        return replace(step, action=usable[0]) if usable else None


def run_tool(step: Step, iteration: int) -> tuple[Outcome, Decimal, dict[str, Any]]:
    """The simulated side effect: how it ended, what it really cost, and what it returned."""
    actual = (step.cost * Decimal(85 + (iteration * 7) % 25) / 100).quantize(Decimal("0.0001"))
    if step.action == "restart_service" and iteration % 24 == 9:  # now and then a restart fails half-way
        return Outcome.FAILED, actual / 2, {"error": "health check timed out"}
    results: dict[str, dict[str, Any]] = {
        "read_metrics": {"p95_ms": 140 + (iteration * 37) % 90},
        "read_logs": {"errors": iteration % 4},
        "scale_service": {"replicas": step.args.get("replicas")},
        "deploy_canary": {"ref": step.args.get("ref"), "share": "5%"},
    }
    return Outcome.SUCCEEDED, actual, results.get(step.action, {"ok": True})


def on_call_decides(ticket: Ticket) -> tuple[bool, str]:
    """The scripted on-call engineer: scale-ups within the replica limit are fine, bigger ones need a review."""
    replicas = int(ticket.args.get("replicas", 0))
    if replicas <= REPLICA_LIMIT:
        return True, f"{replicas} replicas is within the {REPLICA_LIMIT}-replica limit"
    return False, f"{replicas} replicas is over the {REPLICA_LIMIT}-replica limit; needs a capacity review"


class Loop:
    """The host: proposes the agent's steps, runs what is allowed, and keeps the tallies for the summary."""

    def __init__(self, cp: ControlPlaneFacade, clock: ManualClock, session_id: str) -> None:
        self.cp, self.clock, self.sid = cp, clock, session_id
        self.agent = OpsAgent()
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.out_of_budget = False

    def show(self, mark: str, step: Step, d: Decision, text: str) -> None:
        when = f"{self.clock.now():%H:%M}"
        tier, code = d.tier.value, d.code.value
        print(f"{when}  {mark:>3}  {AGENT}  {step.action:<15} {step.resource:<15} {tier:<15} {code:<20} {text}")

    def propose(self, step: Step) -> Decision:
        return self.cp.propose(self.sid, step.action, args=step.args, resource=step.resource, cost=step.cost)

    def iterate(self, iteration: int) -> None:
        step = self.agent.next_step(iteration)
        self.handle(f"{iteration + 1}", iteration, step, self.propose(step))

    def handle(self, mark: str, iteration: int, step: Step, d: Decision) -> None:
        self.decisions[d.tier.value, d.code.value] += 1
        if d.allowed:
            outcome, actual, result = run_tool(step, iteration)
            self.cp.settle(d.proposal_id, actual_cost=actual, outcome=outcome, result=result)
            self.outcomes[outcome.value] += 1
            shown = ", ".join(f"{key}={value}" for key, value in result.items())
            self.show(mark, step, d, f"{outcome.value}, cost {actual}: {shown}")
        elif d.steering is not None:
            new = self.agent.replan(step, d.steering)
            self.show(mark, step, d, f"{d.steering.guidance} -> re-plans: {new.action if new else 'gives up'}")
            if new is not None:
                self.handle("↳", iteration, new, self.propose(new))
        elif d.code is DecisionCode.APPROVAL_REQUIRED and d.ticket_id is not None:
            self.show(mark, step, d, f"ticket {d.ticket_id[:8]} waits for the on-call engineer")
            self.clock.advance(timedelta(minutes=2))  # the human takes a moment
            ticket = self.cp.get_ticket(d.ticket_id)
            approve, why = on_call_decides(ticket)
            if approve:
                self.cp.approve(ticket.ticket_id, approver=APPROVER, comment=why)
            else:
                self.cp.deny(ticket.ticket_id, approver=APPROVER, reason=why)
            verdict = "approves" if approve else "denies"
            print(f"{self.clock.now():%H:%M}    ↳  {APPROVER} {verdict} ticket {ticket.ticket_id[:8]}: {why}")
            self.handle("↳", iteration, step, self.cp.resume(ticket.ticket_id))  # the agent picks the answer up
        else:
            self.out_of_budget = self.out_of_budget or d.code in OUT_OF_BUDGET
            self.show(mark, step, d, d.reason)  # nothing runs; the reason says why


def summary(cp: ControlPlaneFacade, loop: Loop, iterations_run: int) -> None:
    console = Console(width=None if sys.stdout.isatty() else 120)  # not a terminal: no 80-column wrap
    table = Table(title=f"{iterations_run} iterations: decisions by tier and code")
    for column in ("tier", "code", "decisions"):
        table.add_column(column, justify="right" if column == "decisions" else "left")
    for (tier, code), count in sorted(loop.decisions.items()):
        table.add_row(tier, code, str(count))
    table.add_section()
    table.add_row("all", "", str(loop.decisions.total()))
    console.print(table)

    budget = cp.get_remaining_budget(loop.sid)
    tickets = Counter(t.status for t in cp.list_tickets(session_id=loop.sid))
    settled = f"{loop.outcomes['succeeded']} succeeded, {loop.outcomes['failed']} failed"
    print(f"executed: {loop.outcomes.total()} actions settled ({settled})")
    spent, limit = budget["spent_cost"], budget["max_cost"]
    share = f" ({spent / limit:.0%})" if limit else ""
    print(f"spend: {spent} of the session budget {limit}{share}, {budget['reserved_cost']} still reserved")
    executed, unused = tickets[TicketStatus.CONSUMED], tickets[TicketStatus.APPROVED]  # approved, then out of budget
    denied, pending = tickets[TicketStatus.DENIED], tickets[TicketStatus.PENDING]
    unused_text = f", {unused} approved but refused by the budget" if unused else ""
    print(
        f"tickets: {executed} approved and executed{unused_text}, {denied} denied (never executed), {pending} pending"
    )
    report = cp.verify(loop.sid)
    print(f"verify: ok={report.ok} ({report.events_checked} events checked)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=40, help="how many times the agent goes round (40)")
    parser.add_argument("--quick", action="store_true", help="a short run of 8 iterations (make check)")
    parser.add_argument("--budget", type=Decimal, default=Decimal("10"), help="the session's cost budget (10)")
    options = parser.parse_args()
    if options.iterations < 1 or options.budget < 0:
        parser.error("--iterations must be at least 1 and --budget at least 0")
    iterations = 8 if options.quick else options.iterations

    url = os.environ.get("ACP_DATABASE_URL")
    if url is None:
        for leftover in HERE.glob(f"{DATABASE.name}*"):  # the database and its -wal / -shm files
            leftover.unlink()
        url = f"sqlite:///{DATABASE}"

    clock = ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    with ControlPlaneFacade.from_database_url(url, policy=POLICY, clock=clock) as cp:
        cp.setup()
        sid = cp.open_session("keep prod/web healthy", agent_id=AGENT, max_cost=options.budget)
        print(f"policy {POLICY.name}, session {sid}, budget {options.budget}, {iterations} iterations\n")
        print(f"time     #  agent    {'action':<15} {'resource':<15} {'tier':<15} {'code':<20} outcome or reason")
        loop = Loop(cp, clock, sid)
        done = 0
        while done < iterations and not loop.out_of_budget:
            loop.iterate(done)
            done += 1
            clock.advance(timedelta(minutes=5))
        if loop.out_of_budget:
            print(f"\nthe budget cannot cover the next action: {AGENT} stops after {done} of {iterations} iterations")
        cp.close_session(sid, reason="shift over")
        print()
        summary(cp, loop, done)


if __name__ == "__main__":
    main()
