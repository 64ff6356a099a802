"""Long-running autonomous agent: an hour, a day, a week or a month of governed work, simulated in seconds.

Run it from the repository root with `python examples/long_running_autonomous_agent.py --horizon week`, or `cd
examples && python long_running_autonomous_agent.py --quick` (a day in coarse steps, a few seconds). No API key and
no network: a seeded `ScriptedAgent` stands in for the LLM that plans and for the provider that bills, a
`ScriptedApprover` for the humans, and a `ManualClock` for time. It starts from a fresh
`long_running_autonomous_agent.db` next to this file each time (set ACP_DATABASE_URL to use another, empty,
database, e.g. PostgreSQL). The policy is `long_running_autonomous_agent.yaml`, beside this file.

What it shows over the horizon, as a timeline and then a summary (actions by tier, spend per token window, tickets
by outcome, recoveries, the event log verified):

1. every tier: reads and model calls run, tests and pull requests run on their own (auto_approve), merges and
   customer e-mails wait for a human, production deploys are steered to staging, deleting backups is blocked;
2. daily token windows: the agent's daily budget runs out in the afternoon (`token_budget_exceeded`) and its model
   calls are allowed again after midnight; weekly and monthly cost budgets count along;
3. approvals: the on-call engineer answers some tickets; `TimeoutEscalation`, run every step, escalates the others
   after an hour, and they expire two hours later unless a lead answers;
4. leases: a migration whose worker hangs is allowed but never settled; its lease (`per_resource: 1`) keeps the
   retries out until `lease_seconds` have passed;
5. a crash with actions open: a new process builds a new control plane on the same database, `CrashRecovery`
   settles them as interrupted (never run again: a late settle is refused), and the agent resumes.

A progress bar shows the simulated time on a terminal; `--no-progress` turns it off, and it is off when stdout is
not a terminal, so piped output stays clean.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agent_control_plane import (
    AlreadySettledError,
    ControlPlaneFacade,
    ControlPlaneSetup,
    CrashRecovery,
    Decision,
    DecisionCode,
    IdentityContext,
    ManualClock,
    ModelId,
    OrgId,
    RecoveryReport,
    TeamId,
    Ticket,
    TicketStatus,
    TimeoutEscalation,
    TokenBudgetConfig,
    TokenBudgetExhaustedError,
    TokenBudgetState,
    TokenUsage,
    UserId,
)

HERE = Path(__file__).resolve().parent
DATABASE = HERE / "long_running_autonomous_agent.db"
POLICY = HERE / "long_running_autonomous_agent.yaml"

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday morning
HORIZONS = {
    "hour": (timedelta(hours=1), timedelta(minutes=5)),
    "day": (timedelta(days=1), timedelta(minutes=10)),
    "week": (timedelta(days=7), timedelta(minutes=20)),
    "month": (timedelta(days=30), timedelta(minutes=30)),
}
"""Horizon → (length, simulated time between two steps of the agent)."""
QUICK_STEP = timedelta(minutes=30)
"""`--quick`: still shorter than the policy's approval time-out and lease, so every effect still shows."""
DOWNTIME = timedelta(minutes=20)
"""How long a crashed agent stays down: longer than the policy's `recovery.interrupted_after_seconds`."""

HAIKU, SONNET = ModelId("claude-haiku-4-5"), ModelId("claude-sonnet-4-5")
PRICES = {HAIKU: (Decimal(1), Decimal(5)), SONNET: (Decimal(3), Decimal(15))}
"""USD per million input and output tokens."""
MODEL_POLICY = {
    "models": {"claude-haiku-*": "standard", "claude-sonnet-*": "premium"},
    "grants": [{"org": "acme", "tiers": ["premium"]}],
}

AGENT = "autopilot"
WHO = IdentityContext(org_id=OrgId("acme"), team_id=TeamId("platform"), user_id=UserId(AGENT))
BUDGETS = [
    TokenBudgetConfig(IdentityContext(org_id=OrgId("acme"), user_id=UserId(AGENT)), "daily", max_tokens=60_000),
    TokenBudgetConfig(IdentityContext(org_id=OrgId("acme"), team_id=TeamId("platform")), "weekly", max_cost_usd=5),
    TokenBudgetConfig(IdentityContext(org_id=OrgId("acme")), "monthly", max_cost_usd=20),
]
TOOL_COST = Decimal("0.01")


@dataclass(frozen=True)
class Task:
    """Work the agent can pick: a model call to plan it, then its tool calls (`actions`) on one resource."""

    name: str
    model: ModelId
    weight: int
    resource: str
    actions: str


TASKS = [
    Task("triage new issues", HAIKU, 5, "tracker/acme", "read_issues label_issue"),
    Task("fix a failing test", SONNET, 3, "repo/api", "read_code run_tests open_pull_request merge_pull_request"),
    Task("answer a customer", HAIKU, 2, "mail/support", "send_customer_email"),
    Task("ship the release", HAIKU, 1, "prod/web", "deploy"),
    Task("free disk space", HAIKU, 1, "storage/backups", "delete_backups"),
]


def price(model: ModelId, input_tokens: int, output_tokens: int) -> Decimal:
    per_in, per_out = PRICES[model]
    return (per_in * input_tokens + per_out * output_tokens) / 1_000_000


class ScriptedAgent:
    """Stands in for the LLM that plans and for the provider that bills it: seeded, so every run is the same."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)

    def pick_task(self) -> Task:
        return self.rng.choices(TASKS, [task.weight for task in TASKS])[0]

    def estimate(self, when: datetime, step: timedelta) -> int:
        """Tokens the next model call should need: more in working hours, in proportion to the step's length."""
        per_hour = 6_000 if 8 <= when.hour < 20 else 2_000
        return int(per_hour * (step / timedelta(hours=1)) * self.rng.uniform(0.7, 1.3))

    def complete(self, model: ModelId, estimate: int) -> TokenUsage:
        """The provider's bill for the call: within 20 % of the estimate, a quarter of it output."""
        total = int(estimate * self.rng.uniform(0.8, 1.2))
        out = total // 4
        return TokenUsage(model, total - out, out, estimated_cost_usd=price(model, total - out, out))


class ScriptedApprover:
    """Stands in for the humans. When the on-call engineer (or, once a ticket is escalated, a lead) first sees a
    ticket, they make up their mind, and act on it at their next review; some tickets they leave to time out."""

    ON_CALL, LEAD = "dana", "lee"
    MINDS: ClassVar = {ON_CALL: "approve " * 5 + "deny " * 2 + "ignore " * 3, LEAD: "approve " * 2 + "ignore " * 3}

    def __init__(self, seed: int = 5) -> None:
        self.rng = random.Random(seed)
        self.minds: dict[tuple[str, str], str] = {}

    def review(self, cp: ControlPlaneFacade, pending: list[Ticket]) -> list[tuple[Ticket, str]]:
        """Act on the pending tickets (oldest first) whose turn has come; returns each ticket answered, and how."""
        answered = []
        for ticket in pending:
            key = (ticket.ticket_id, self.LEAD if ticket.approver_group else self.ON_CALL)
            mind = self.minds.get(key)
            self.minds[key] = self.rng.choice(self.MINDS[key[1]].split()) if mind is None else "done"
            if mind == "approve":
                cp.approve(ticket.ticket_id, approver=key[1], comment="looks fine")
            elif mind == "deny":
                cp.deny(ticket.ticket_id, approver=key[1], reason="not now: the release freeze starts tomorrow")
            if mind in ("approve", "deny"):
                answered.append((ticket, f"{'approved' if mind == 'approve' else 'denied'} by {key[1]}"))
        return answered


class Simulation:
    """The host: runs the agent's loop against the control plane, plays the scheduler, restarts after a crash, and
    keeps the tallies the summary shows."""

    def __init__(self, url: str, clock: ManualClock, horizon: timedelta, out: Console, note_limit: int) -> None:
        self.url, self.clock, self.out, self.note_limit = url, clock, out, note_limit
        self.agent, self.approver = ScriptedAgent(), ScriptedApprover()
        self.setup, self.cp = self.build()
        if self.cp.list_sessions():
            self.setup.close()
            raise SystemExit("the database at ACP_DATABASE_URL already holds sessions; point it at an empty database")
        self.sid = self.cp.open_session("autonomous maintenance", agent_id=AGENT)
        # The scripted incidents: a migration every day, whose worker hangs once a week, and a crash once a week.
        self.migration_due = START + min(timedelta(hours=2), horizon / 6)
        self.hang_on = {(self.migration_due + timedelta(days=d)).date() for d in range(0, horizon.days + 1, 7)}
        first_crash = START + min(timedelta(hours=6), horizon / 2)
        self.crashes = [first_crash + timedelta(days=d) for d in range(0, max(horizon.days, 1), 7)]
        self.proposed: Counter[str] = Counter()
        self.allowed: Counter[str] = Counter()
        self.refused: dict[str, Counter[str]] = {}
        self.token_refusals: dict[date, list[datetime]] = {}  # day → when model calls were refused for tokens
        self.last_refused: date | None = None
        self.windows: dict[tuple[str, datetime], TokenBudgetState] = {}
        self.numbers: dict[str, int] = {}  # ticket id → a short number, in the order the tickets were opened
        self.waiting: set[str] = set()  # the tickets the agent waits on: its memory, lost in a crash
        self.journal: dict[str, str] = {}  # proposal id → what was allowed, as the host logs it
        self.hung: list[str] = []  # allowed proposals whose worker hung: never settled
        self.lease_blocked = False
        self.recoveries: list[tuple[datetime, RecoveryReport, int, int, int]] = []
        self.notes: Counter[str] = Counter()

    def build(self) -> tuple[ControlPlaneSetup, ControlPlaneFacade]:
        """What a (re)started process does: set the control plane up on the database, with its policy and budgets."""
        setup = ControlPlaneSetup(
            self.url, policy=POLICY, token_budget_configs=BUDGETS, model_policy=MODEL_POLICY, clock=self.clock
        )
        return setup, setup.build()

    def note(self, kind: str, text: str, *, always: bool = False) -> None:
        """A line of the timeline; past `note_limit` lines of one kind, only counted (the summary has the totals)."""
        self.notes[kind] += 1
        if always or self.notes[kind] <= self.note_limit:
            self.out.print(f"  {self.clock.now():%a %m-%d %H:%M}  {text}", markup=False, soft_wrap=True)

    # the governed calls ---------------------------------------------------------------------------------------
    def propose(self, action: str, resource: str | None, model: ModelId | None = None, tokens: int = 0) -> Decision:
        args = {"step": self.clock.now().isoformat()}  # every call differs, so each needs its own ticket
        cost = TOOL_COST if model is None else price(model, tokens * 3 // 4, tokens // 4)
        call: dict[str, Any] = {} if model is None else {"identity": WHO, "model_id": model, "estimated_tokens": tokens}
        d = self.cp.propose(self.sid, action, args=args, resource=resource, cost=cost, agent_id=AGENT, **call)
        self.proposed[d.tier] += 1
        if d.allowed:
            self.allowed[d.tier] += 1
            self.journal[d.proposal_id] = f"{action} on {resource}" if resource else action
        else:
            self.refused.setdefault(d.tier, Counter())[d.code] += 1
        if d.ticket_id is not None:
            self.numbers.setdefault(d.ticket_id, len(self.numbers) + 1)
        return d

    def model_call(self, task: Task, step: timedelta, *, settle: bool = True) -> Decision:
        now, tokens = self.clock.now(), self.agent.estimate(self.clock.now(), step)
        d = self.propose("llm_call", None, task.model, tokens)
        if d.code is DecisionCode.TOKEN_BUDGET_EXCEEDED:
            if now.date() not in self.token_refusals:
                self.note("exhausted", d.reason.removeprefix("denied: "))
            self.token_refusals.setdefault(now.date(), []).append(now)
            self.last_refused = now.date()
        elif d.allowed and self.last_refused is not None and now.date() > self.last_refused:
            self.last_refused = None
            self.note("rollover", f"a new daily window: model calls are allowed again ({task.name}, {tokens} tokens)")
        if d.allowed and settle:
            usage = self.agent.complete(task.model, tokens)
            with suppress(TokenBudgetExhaustedError):  # billed more than was left: recorded, the window is over
                self.cp.settle(d.proposal_id, actual_cost=usage.cost, token_usage=usage)
        return d

    def tool_call(self, action: str, resource: str) -> None:
        d = self.propose(action, resource)
        if d.allowed:
            self.cp.settle(d.proposal_id, outcome="succeeded", result={"ok": True})
        elif d.code is DecisionCode.APPROVAL_REQUIRED and d.ticket_id is not None:
            self.waiting.add(d.ticket_id)
        elif d.code is DecisionCode.STEERED and d.steering is not None:
            instead = d.steering.alternatives[0]
            self.note("steered", f"{action} on {resource} steered ({d.steering.guidance}); re-planned: {instead}")
            self.tool_call(instead, resource.replace("prod/", "staging/", 1))
        elif d.code is DecisionCode.POLICY_BLOCKED:
            self.note("blocked", f"{action} blocked ({d.reason.removeprefix('denied: ')}); the agent drops it")

    # one step of the agent's loop -----------------------------------------------------------------------------
    def step(self, step: timedelta) -> None:
        for ticket_id, outcome in sorted(TimeoutEscalation(self.cp).run().items(), key=lambda i: self.numbers[i[0]]):
            after = "after an hour unanswered" if outcome == "escalated" else "after two more hours unanswered"
            self.note(
                outcome, f"ticket #{self.numbers[ticket_id]} ({self.cp.get_ticket(ticket_id).action}) {outcome} {after}"
            )
        pending = self.cp.list_tickets(status=TicketStatus.PENDING, session_id=self.sid)
        for ticket, verdict in self.approver.review(self.cp, sorted(pending, key=lambda t: self.numbers[t.ticket_id])):
            self.note(verdict.split()[0], f"ticket #{self.numbers[ticket.ticket_id]} ({ticket.action}) {verdict}")
        for ticket_id in sorted(self.waiting, key=self.numbers.__getitem__):
            d = self.cp.resume(ticket_id)  # on approval: reserves and consumes the ticket, so the call runs once
            if d.allowed:
                self.allowed[d.tier] += 1
                self.cp.settle(d.proposal_id, outcome="succeeded", result={"ok": True})
            if d.code not in (DecisionCode.APPROVAL_REQUIRED, DecisionCode.CONCURRENCY_LIMIT):
                self.waiting.discard(ticket_id)
        if self.clock.now() >= self.migration_due:
            self.migrate()
        if self.crashes and self.clock.now() >= self.crashes[0]:
            self.crashes.pop(0)
            self.crash_and_restart(step)
            return
        task = self.agent.pick_task()
        if self.model_call(task, step).allowed:
            for action in task.actions.split():
                self.tool_call(action, task.resource)

    def migrate(self) -> None:
        """The daily migration. Its worker hangs once a week; the retries wait for the hung worker's lease to expire."""
        action, resource = "run_migration", "db/orders"
        d = self.propose(action, resource)
        if d.code is DecisionCode.CONCURRENCY_LIMIT:
            if not self.lease_blocked:
                self.note("lease", f"{action} retried: {d.reason.removeprefix('denied: ')}")
            self.lease_blocked = True
        elif d.allowed and self.migration_due.date() in self.hang_on:
            self.hang_on.discard(self.migration_due.date())
            self.hung.append(d.proposal_id)
            self.note("hung", f"{action} on {resource} allowed, and its worker hangs: never settled, its lease held")
        elif d.allowed:
            self.cp.settle(d.proposal_id, outcome="succeeded", result={"rows": 1200})
            if self.lease_blocked:
                why = "the hung worker's lease expired" if self.hung else "crash recovery released the hung one's lease"
                self.note("lease", f"{action} on {resource} allowed again: {why}")
            self.lease_blocked = False
            self.migration_due += timedelta(days=1)

    def crash_and_restart(self, step: timedelta) -> None:
        """Die half-way through a task; come back as a new process on the same database; recover; go on."""
        first = not self.recoveries  # the first restart is shown in full, later ones only in the summary

        def say(text: str) -> None:
            self.note("crash", text, always=first)

        task = TASKS[1]
        opened = [self.model_call(task, step, settle=False), self.propose("run_tests", task.resource)]
        left = [self.journal[d.proposal_id] for d in opened if d.allowed]
        say(f"CRASH during '{task.name}' with {len(left)} action(s) open: {', '.join(left)}")
        self.setup.close()
        self.waiting.clear()
        self.clock.advance(DOWNTIME)
        self.setup, self.cp = self.build()
        report = CrashRecovery(self.cp).run()
        assert isinstance(report, RecoveryReport)
        say(f"RESTART: a new control plane on the same database; CrashRecovery: {report.describe()}")
        order = list(self.journal)
        for s in sorted(report.interrupted, key=lambda s: order.index(s.proposal_id)):
            why = "its worker hung" if s.proposal_id in self.hung else "open at the crash"
            say(f"  settled {s.outcome.value}: {self.journal[s.proposal_id]} ({why}), never run again")
        late = 0
        for proposal_id in self.hung:
            try:
                self.cp.settle(proposal_id, outcome="succeeded", result={"rows": 1200})
            except AlreadySettledError as exc:
                late += 1
                refusal = str(exc).replace(f"proposal {proposal_id}", "the proposal")
                say(f"  the hung worker reports back late: settle refused ({refusal})")
        hung, self.hung = len(self.hung), []
        tickets = self.cp.list_tickets(session_id=self.sid)
        self.waiting = {t.ticket_id for t in tickets if t.status in (TicketStatus.PENDING, TicketStatus.APPROVED)}
        say(f"  the agent resumes, and finds {len(self.waiting)} open ticket(s) in the database")
        self.recoveries.append((self.clock.now(), report, len(left), hung, late))

    def snapshot_windows(self) -> None:
        with self.cp.token_budget_tracker() as tracker:
            for state in tracker.get_budget_states(WHO):
                self.windows[(state.budget_id, state.window_start)] = state


def table(title: str, *columns: str, caption: str | None = None) -> Table:
    """A summary table; every column after the first holds numbers or times, right-aligned."""
    t = Table(title=title, title_justify="left", title_style="bold", caption=caption, caption_justify="left")
    for i, name in enumerate(columns):
        t.add_column(name, justify="left" if i == 0 else "right")
    return t


def counted(counts: Counter[str]) -> str:
    return ", ".join(f"{name} x {n}" for name, n in sorted(counts.items())) or "-"


def summary(sim: Simulation, out: Console) -> None:
    resumed = "always_approve: allowed after approval (resume)"
    tiers = table("actions by tier", "tier", "proposed", "allowed", "not allowed: code x count", caption=resumed)
    for tier in ("unrestricted", "auto_approve", "always_approve", "steer", "blocked"):
        tiers.add_row(tier, str(sim.proposed[tier]), str(sim.allowed[tier]), counted(sim.refused.get(tier, Counter())))
    out.print(tiers)

    windows = table("spend per token window", "budget", "window", "tokens", "cost $", "left", "refused", "first at")
    order = {"daily": 0, "weekly": 1, "monthly": 2}
    for (_, start), s in sorted(sim.windows.items(), key=lambda kv: (order[kv[1].config.budget_period], kv[0][1])):
        c = s.config
        tokens = f"{s.tokens_used}" + ("" if c.max_tokens is None else f" / {c.max_tokens}")
        cost = f"{s.cost_used_usd:.4f}" + ("" if c.max_cost is None else f" / {c.max_cost:.2f}")
        left = f"{s.remaining_tokens}" if c.max_tokens is not None else f"${s.remaining_cost_usd:.4f}"
        refusals = sim.token_refusals.get(start.date(), []) if c.budget_period == "daily" else None
        row = [f"{c.budget_period.value} {c.identity.describe()}", f"{start:%a %m-%d}", tokens, cost]
        row += [f"{left} (over)" if s.over else left, "-" if refusals is None else str(len(refusals))]
        windows.add_row(*row, f"{refusals[0]:%H:%M}" if refusals else "-")
    out.print(windows)

    tickets = table("tickets by outcome", "outcome", "tickets", "escalated first")
    counts: Counter[str] = Counter()
    escalated: Counter[str] = Counter()
    for t in sim.cp.list_tickets(session_id=sim.sid):
        outcome = "approved" if t.status in (TicketStatus.APPROVED, TicketStatus.CONSUMED) else t.status.value
        counts[outcome] += 1
        escalated[outcome] += t.approver_group is not None
    for outcome in ("approved", "denied", "expired", "pending"):
        tickets.add_row(outcome, str(counts[outcome]), str(escalated[outcome]))
    tickets.add_row("all", str(counts.total()), str(escalated.total()), style="bold")
    out.print(tickets)

    columns = ("restart at", "open at crash", "hung workers", "interrupted", "late settles refused", "tickets")
    recoveries = table("recoveries", *columns)
    for at, report, left, hung, late in sim.recoveries:
        timed_out = counted(Counter(report.tickets.values()))
        recoveries.add_row(f"{at:%a %m-%d %H:%M}", *map(str, (left, hung, len(report.interrupted), late)), timed_out)
    out.print(recoveries)

    reports = sim.cp.verify_all()
    intact = all(r.ok for r in reports)
    events = sum(r.events_checked for r in reports)
    out.print(f"event log: {len(reports)} logs, {events} events verified: {'ok' if intact else 'BROKEN'}")
    assert intact, [r for r in reports if not r.ok]


def main() -> None:
    parser = argparse.ArgumentParser(
        description="A scripted autonomous agent works under the control plane for a simulated hour, day, week or "
        "month (a ManualClock drives it), then prints a summary: actions by tier, spend per token window, tickets "
        "by outcome, crash recoveries, and the verified event log.",
        epilog="Offline: no API key, no network. It uses a fresh long_running_autonomous_agent.db beside this script, "
        "or the empty database at ACP_DATABASE_URL (e.g. postgresql+psycopg://…).",
    )
    steps = ", ".join(f"{name} {step // timedelta(minutes=1)}" for name, (_, step) in HORIZONS.items())
    parser.add_argument(
        "--horizon",
        choices=HORIZONS,
        default="day",
        help=f"how much time to simulate (default: day); minutes a step: {steps}",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a step every 30 simulated minutes, whatever the horizon: --quick alone runs a day in a few seconds",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (none when stdout is not a tty)")
    args = parser.parse_args()
    horizon, step = HORIZONS[args.horizon]
    step = QUICK_STEP if args.quick else step
    steps = int(horizon / step)

    url = os.environ.get("ACP_DATABASE_URL")
    where = "the database at ACP_DATABASE_URL"
    if url is None:
        for leftover in HERE.glob("long_running_autonomous_agent.db*"):
            leftover.unlink()
        url, where = f"sqlite:///{DATABASE}", f"{DATABASE.name} (fresh)"
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = 120  # the same lines whatever terminal a pipe or a test runs in
    clock = ManualClock(START)
    began = time.perf_counter()
    sim = Simulation(url, clock, horizon, out, note_limit=3 if horizon <= timedelta(days=1) else 2)
    try:
        out.print(f"database  {where}\npolicy    {POLICY.name}")
        out.print("budgets   " + "\n          ".join(c.describe() for c in BUDGETS))
        span = f"{START:%a %Y-%m-%d %H:%M} → {START + horizon:%a %Y-%m-%d %H:%M} UTC"
        out.print(
            f"horizon   {args.horizon}: {span}, a step every {step // timedelta(minutes=1)} minutes ({steps} steps)"
        )
        out.print(f"\ntimeline (the first {sim.note_limit} of each kind; the summary counts them all)")
        bar = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*bar, console=out, transient=True, disable=args.no_progress or not out.is_terminal) as progress:
            job = progress.add_task("simulating", total=steps)
            for i in range(steps):
                clock.set(max(clock.now(), START + i * step))  # after a restart the clock is a little ahead
                sim.step(step)
                if i == steps - 1 or (START + (i + 1) * step).date() != clock.now().date():
                    sim.snapshot_windows()  # each window as it ends: they all roll over at midnight UTC
                progress.update(job, advance=1, description=f"simulated {clock.now():%a %m-%d %H:%M}")
        out.print()
        summary(sim, out)
    finally:
        sim.setup.close()
    end = max(clock.now(), START + horizon)
    hours = (end - START) / timedelta(hours=1)
    out.print(f"simulated {START:%a %m-%d %H:%M} → {end:%a %m-%d %H:%M} UTC ({hours:g} hour{'s' * (hours != 1)}) in "
              f"{time.perf_counter() - began:.1f} s of real time")  # fmt: skip


if __name__ == "__main__":
    main()
