"""Steering demo: a scripted agent is steered away from production, re-plans, and the log records why.

Run it from the repository root with `python examples/steering_demo.py`, or `cd examples && python
steering_demo.py`. No API key and no network: the "agent" is a small class with a fixed plan standing in for an
LLM. It starts from a fresh `steering_demo.db` next to this file each time (set ACP_DATABASE_URL to use another
database). The policy is `steering_policy.yaml`, beside this file.
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from agent_control_plane import ControlPlaneFacade, Decision, DecisionCode, SteeringContext

HERE = Path(__file__).resolve().parent
DATABASE = HERE / "steering_demo.db"
POLICY = HERE / "steering_policy.yaml"


@dataclass(frozen=True)
class Step:
    """One action the agent intends to take."""

    action: str
    resource: str
    args: dict[str, Any] = field(default_factory=dict)
    cost: Decimal = Decimal("0.10")


class ScriptedAgent:
    """Stands in for an LLM: a list of intended actions, and a re-plan step that reads the steering it gets."""

    def __init__(self, plan: list[Step], tools: set[str]) -> None:
        self.plan = deque(plan)
        self.tools = tools

    def next_step(self) -> Step | None:
        return self.plan.popleft() if self.plan else None

    def replan(self, step: Step, steering: SteeringContext) -> Step:
        """Take the first suggested alternative this agent has a tool for, and follow the guidance: staging."""
        usable = [name for name in steering.alternatives if name in self.tools]
        if not usable:
            raise RuntimeError(f"no usable alternative among {steering.alternatives}; giving up on {step.action}")
        new = replace(step, action=usable[0], resource=step.resource.replace("prod/", "staging/", 1))
        self.plan.appendleft(new)
        return new


def show_trace(trace: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['step']} {s['name']}: {'MATCH' if s['matched'] else 'no'}" for s in trace)


def summary(kind: str, payload: dict[str, Any]) -> str:
    """One line on what an event says (two for a decision: the trace of policy entries it consulted)."""
    if kind == "proposal.decided":
        head = f"{payload['action']} on {payload['resource']} -> {payload['tier']} ({payload['code']})"
        return f"{head}\n{'':28}trace: {show_trace(payload['trace'])}"
    if kind == "proposal.settled":
        return f"{payload['action']} {payload['outcome']}, cost {payload['actual_cost']}"
    if kind == "session.status_changed":
        return f"{payload['from']} -> {payload['to']} ({payload['reason']})"
    if kind == "session.opened":
        return f"{payload['name']!r} for {payload['agent_id']}, budget {payload['max_cost']}"
    return ""


def main() -> None:
    url = os.environ.get("ACP_DATABASE_URL")
    if url is None:
        for leftover in HERE.glob("steering_demo.db*"):
            leftover.unlink()
        url = f"sqlite:///{DATABASE}"

    agent = ScriptedAgent(
        plan=[
            Step("read_build_status", "ci/web", {"ref": "v1.4.2"}, Decimal("0.01")),
            Step("deploy", "prod/web", {"ref": "v1.4.2"}),
        ],
        tools={"read_build_status", "deploy", "deploy_staging"},
    )
    decisions: list[Decision] = []
    with ControlPlaneFacade.from_database_url(url, policy=POLICY) as cp:
        cp.setup()
        sid = cp.open_session("release v1.4.2", agent_id="release-bot", max_cost=Decimal("5"), max_action_count=10)
        print(f"policy  {POLICY.name}\nsession {sid}\n")

        while (step := agent.next_step()) is not None and len(decisions) < 10:  # a steer loop must end
            print(f"agent proposes  {step.action} on {step.resource}  args={json.dumps(step.args)}")
            d = cp.propose(sid, step.action, args=step.args, resource=step.resource, cost=step.cost)
            decisions.append(d)
            verdict = "ALLOW" if d.allowed else "STEER" if d.code is DecisionCode.STEERED else "DENY"
            print(f"  {verdict} [{d.tier.value}] decided by {d.rule!r}\n    reason:       {d.reason}")
            if d.steering is not None:
                print(f"    guidance:     {d.steering.guidance}")
                print(f"    alternatives: {', '.join(d.steering.alternatives)}")
                new = agent.replan(step, d.steering)
                print(f"agent re-plans  {step.action} on {step.resource}  ->  {new.action} on {new.resource}")
            elif d.allowed:
                # ...the host runs the tool here, then reports what it really cost.
                settled = cp.settle(d.proposal_id, actual_cost=step.cost, result={"ok": True})
                print(f"  settled: {settled.outcome.value}, cost {settled.actual_cost}")
            print()

        cp.close_session(sid, reason="release done")
        events = cp.replay(sid)
        print(f"event log of session {sid} ({len(events)} events)")
        for event in events:
            print(f"  {event.seq:>2} {event.kind:<22} {summary(event.kind, event.payload)}")
        report = cp.verify(sid)
        print(f"verify: ok={report.ok} ({report.events_checked} events checked)")

    assert [(d.rule, d.code) for d in decisions] == [
        ("read_*", DecisionCode.ALLOWED),
        ("staging-first", DecisionCode.STEERED),
        ("deploy_staging", DecisionCode.ALLOWED),
    ], decisions
    steered = next(e.payload for e in events if e.kind == "proposal.decided" and e.payload["code"] == "steered")
    assert steered["steering"]["alternatives"] == ["request_release_window", "deploy_staging"]
    assert steered["trace"] == [{"step": "rule", "name": "staging-first", "matched": True, "tier": "steer"}]
    assert [e.kind for e in events].count("proposal.settled") == 2
    assert report.ok


if __name__ == "__main__":
    main()
