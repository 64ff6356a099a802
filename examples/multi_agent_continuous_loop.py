"""Three agents in one continuous loop: registered capabilities, a governed hand-off, and a per-agent kill switch.

Run it from the repository root with `python examples/multi_agent_continuous_loop.py` (12 rounds; `--rounds N`
for another number, `--quick` for a short run), or from `examples/`. No API key and no network: each "agent" is a
small class with a routine standing in for an LLM, and a `ManualClock` moves a minute per turn. It starts from a
fresh `multi_agent_continuous_loop.db` next to this file each time (set ACP_DATABASE_URL to use another database).
The policy is `multi_agent_policy.yaml`, beside this file: its `agents:` section registers a researcher, a coder
and a deployer, each with the actions (capabilities) and resources (scopes) it may touch.

The agents take turns, one proposal each per turn, each in a session of its own. What it shows:
- an agent proposing outside its capabilities is denied with the reason, and re-plans by handing the task to an
  agent that may do it with `cp.delegate(...)` — itself a governed proposal, which routing refuses when the
  target cannot do the task either;
- the coder finishes delegated work and hands the deploy on to the deployer;
- a third of the way in an operator engages `cp.kill_agent("coder", ...)`: the coder's proposals are denied with
  the kill's reason while the researcher and the deployer carry on (work handed to the coder waits), until the
  operator releases the switch and the coder catches up;
- at the end a table per agent, and `cp.verify` of every session's hash-chained log.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from agent_control_plane import ControlPlaneFacade, Decision, DecisionCode, KillScope, ManualClock

HERE = Path(__file__).resolve().parent
DATABASE = HERE / "multi_agent_continuous_loop.db"
POLICY = HERE / "multi_agent_policy.yaml"
DIRECTORY = {"write_code": "coder", "run_tests": "coder", "deploy": "deployer"}
"""Who does what, as the agents' prompts tell them; the policy's registry is what actually decides."""
KILL_REASON = "pushed an unreviewed change to main; under review"


@dataclass(frozen=True)
class Step:
    """One action an agent intends to take; with `to`, a task it hands to that agent instead."""

    action: str
    resource: str
    args: dict[str, Any] = field(default_factory=dict)
    cost: Decimal = Decimal("0.01")
    to: str | None = None
    then: Step | None = None
    """What the agent that does this step hands on next."""


def researcher(n: int) -> Step:
    cycle, slot = divmod(n, 4)
    ship = Step("deploy", "staging/app", {"ref": f"app-{cycle + 1}"}, Decimal("0.20"), to="deployer")
    fix = Step("write_code", "repo/app", {"change": f"honour Retry-After ({cycle + 1})"}, Decimal("0.40"), then=ship)
    return [
        Step("search_docs", "docs/api", {"query": "rate limit headers"}),
        Step("read_issue", "repo/app", {"issue": 40 + cycle}),
        fix,  # not the researcher's job: the policy says so, and it hands the fix on
        Step("deploy", "staging/docs", {"ref": f"docs-{cycle + 1}"}, Decimal("0.10"), to="coder"),  # a wrong guess
    ][slot]


def coder(n: int) -> Step:
    routine = (Step("read_file", "repo/app", {"path": "client.py"}), Step("run_tests", "repo/app", {"suite": "unit"}))
    return routine[n % 2]


def deployer(n: int) -> Step:
    return Step("read_status", "staging/app", {"probe": n})


class ScriptedAgent:
    """Stands in for an LLM: work handed to it comes first, then its own routine; it remembers who may do what."""

    def __init__(self, name: str, routine: Callable[[int], Step]) -> None:
        self.name, self.routine = name, routine
        self.inbox: deque[Step] = deque()
        self.turns = 0
        self.learned: dict[str, str] = {}  # action -> the agent to hand it to, learned from a denial

    def next_step(self) -> Step:
        if self.inbox:
            step = self.inbox.popleft()
        else:
            step, self.turns = self.routine(self.turns), self.turns + 1
        target = self.learned.get(step.action, step.to)
        return step if target in (None, self.name) else replace(step, to=target)

    def replan(self, step: Step) -> Step | None:
        """After "you may not": hand the task to the agent the directory names (None: nobody else to ask)."""
        target = DIRECTORY.get(step.action)
        if target is None or target in (self.name, step.to):
            return None
        self.learned[step.action] = target
        return replace(step, to=target)


@dataclass
class Tally:
    """One agent's session and what happened in it, for the summary."""

    session_id: str
    codes: Counter[str] = field(default_factory=Counter)
    handed_on: int = 0
    taken_over: int = 0


class Team:
    """The host: one session per agent, proposes each agent's step, runs what is allowed, routes hand-offs."""

    def __init__(self, cp: ControlPlaneFacade, clock: ManualClock, agents: list[ScriptedAgent]) -> None:
        self.cp, self.clock = cp, clock
        self.agents = {agent.name: agent for agent in agents}
        self.tally = {
            a.name: Tally(cp.open_session(f"{a.name}'s shift", agent_id=a.name, max_cost=Decimal("5"))) for a in agents
        }

    def line(self, mark: str, who: str, step: Step, d: Decision, text: str) -> None:
        action, target = ("delegate", f"{step.action}->{step.to}") if step.to else (step.action, step.resource)
        print(
            f"{self.clock.now():%H:%M}  {mark:>2}  {who:<10} {action:<12} {target:<20} "
            f"{d.tier.value:<14} {d.code.value:<20} {text}"
        )

    def propose(self, agent: ScriptedAgent, step: Step) -> Decision:
        sid = self.tally[agent.name].session_id
        if step.to is not None:  # handing work on is a proposal of its own, in the delegating agent's session
            args = {**step.args, "on": step.resource}
            return self.cp.delegate(sid, step.action, to_agent=step.to, agent_id=agent.name, args=args, cost=0)
        return self.cp.propose(
            sid, step.action, args=step.args, resource=step.resource, cost=step.cost, agent_id=agent.name
        )

    def turn(self, mark: str, agent: ScriptedAgent) -> None:
        step = agent.next_step()
        self.handle(mark, agent, step, self.propose(agent, step), may_replan=True)

    def handle(self, mark: str, agent: ScriptedAgent, step: Step, d: Decision, *, may_replan: bool) -> None:
        self.tally[agent.name].codes[d.code.value] += 1
        if d.allowed and step.to is not None:
            self.agents[step.to].inbox.append(replace(step, to=None))
            self.tally[agent.name].handed_on += 1
            self.tally[step.to].taken_over += 1
            self.cp.settle(d.proposal_id, actual_cost=0, result={"queued_for": step.to})
            self.line(mark, agent.name, step, d, f"handed to {step.to}, on {step.resource}")
        elif d.allowed:
            actual = (step.cost * Decimal("0.9")).quantize(Decimal("0.001"))  # the simulated tool did the work
            self.cp.settle(d.proposal_id, actual_cost=actual, result={"ok": True, **step.args})
            if step.then is not None:
                agent.inbox.append(step.then)
            self.line(mark, agent.name, step, d, f"succeeded, cost {actual}")
        elif d.code is DecisionCode.KILLED:
            agent.inbox.appendleft(step)  # keep the work for when the agent may act again
            self.line(mark, agent.name, step, d, d.reason)
        else:
            new = agent.replan(step) if may_replan and d.code is DecisionCode.OUTSIDE_CAPABILITIES else None
            self.line(mark, agent.name, step, d, d.reason)
            if new is not None:
                self.handle("↳", agent, new, self.propose(agent, new), may_replan=False)

    def operator(self, text: str) -> None:
        print(f"{self.clock.now():%H:%M}  ==  operator   {text}")


def summary(cp: ControlPlaneFacade, team: Team) -> None:
    table = Table(title="per agent")
    for column in ("agent", "proposals", "allowed", "denied", "handed on", "taken over", "queued", "spent", "log"):
        table.add_column(column, justify="left" if column in ("agent", "denied", "log") else "right")
    reports = {name: cp.verify(tally.session_id) for name, tally in team.tally.items()}
    for name, tally in team.tally.items():
        denied = ", ".join(f"{code} {count}" for code, count in sorted(tally.codes.items()) if code != "allowed")
        report = reports[name]
        table.add_row(
            name,
            str(tally.codes.total()),
            str(tally.codes["allowed"]),
            denied or "-",
            str(tally.handed_on),
            str(tally.taken_over),
            str(len(team.agents[name].inbox)),  # work still waiting when the shift ends
            str(cp.get_remaining_budget(tally.session_id)["spent_cost"]),
            f"ok, {report.events_checked} events" if report.ok else f"BROKEN at seq {report.first_bad_seq}",
        )
    Console(width=None if sys.stdout.isatty() else 120).print(table)  # not a terminal: no 80-column wrap
    print(f"verify: {sum(r.ok for r in reports.values())} of {len(reports)} session logs ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12, help="how many times each agent takes a turn (12)")
    parser.add_argument("--quick", action="store_true", help="a short run of 6 rounds (make check)")
    options = parser.parse_args()
    if options.rounds < 4:
        parser.error("--rounds must be at least 4: the kill switch and its release need a few rounds")
    rounds = 6 if options.quick else options.rounds
    kill_at = rounds // 3 + 1
    release_at = kill_at + max(2, rounds // 4)

    url = os.environ.get("ACP_DATABASE_URL")
    if url is None:
        for leftover in HERE.glob(f"{DATABASE.name}*"):  # the database and its -wal / -shm files
            leftover.unlink()
        url = f"sqlite:///{DATABASE}"

    clock = ManualClock(datetime(2026, 3, 2, 14, 0, tzinfo=UTC))
    with ControlPlaneFacade.from_database_url(url, policy=POLICY, clock=clock) as cp:
        cp.setup()
        agents = [
            ScriptedAgent("researcher", researcher),
            ScriptedAgent("coder", coder),
            ScriptedAgent("deployer", deployer),
        ]
        team = Team(cp, clock, agents)
        plan = f"the coder is killed in round {kill_at} and released in round {release_at}"
        print(f"policy {POLICY.name}, {rounds} rounds; {plan}\n")
        print(f"time    #  {'agent':<10} {'action':<12} {'resource':<20} {'tier':<14} {'code':<20} outcome or reason")
        for number in range(1, rounds + 1):
            if number == kill_at:
                kill = cp.kill_agent("coder", reason=KILL_REASON, by="operator")
                team.operator(f"kill_agent coder: {kill.reason}")
            if number == release_at:
                done = cp.release_kill(KillScope.AGENT, "coder", reason="change reviewed and reverted", by="operator")
                team.operator(f"release_kill agent coder: {done.release_reason}")
            for agent in agents:
                team.turn(str(number), agent)
                clock.advance(timedelta(minutes=1))
        for tally in team.tally.values():
            cp.close_session(tally.session_id, reason="shift over")
        print()
        summary(cp, team)


if __name__ == "__main__":
    main()
