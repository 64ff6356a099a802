"""The adapters' shared gate: a governed tool call as allow, deny, steer or pending, with a readable message."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from decimal import Decimal
from typing import Any

import pytest

from agent_control_plane import AsyncControlPlaneFacade, ControlPlaneFacade, DecisionCode, ManualClock
from agent_control_plane.integrations._gate import RESULT_PREVIEW_CHARS, GateKind, ToolGate
from conftest import Backend

POLICY = {
    "default_tier": "always_approve",
    "actions": {"read_*": "unrestricted", "delete_*": "blocked"},
    "rules": [
        {
            "name": "staging-first",
            "when": {"field": "resource", "glob": "prod/*"},
            "tier": "steer",
            "guidance": "deploy to staging first",
            "alternatives": ["deploy_staging"],
        }
    ],
}


def _resource(tool: str, args: Any) -> str | None:
    return args.get("target")


def _settled(cp: ControlPlaneFacade, sid: str) -> list[dict[str, Any]]:
    return [frame.payload for frame in cp.replay(sid) if frame.kind == "proposal.settled"]


def test_each_decision_comes_back_as_what_the_adapter_must_do_with_a_message_the_model_can_read(
    cp: ControlPlaneFacade,
) -> None:
    cp.set_policy(POLICY)
    sid = cp.open_session("gated", agent_id="bot")
    gate = ToolGate(cp, sid, agent_id="bot", resource_of=_resource, cost_of=lambda tool, args: Decimal("0.5"))

    allowed = gate.check("read_file", {"path": "README.md"})
    assert allowed.allowed and allowed.message == ""
    gate.settle(allowed, output="x" * (RESULT_PREVIEW_CHARS + 50))

    denied = gate.check("delete_repo", {"name": "app"})
    assert denied.kind is GateKind.DENY and denied.decision.code is DecisionCode.POLICY_BLOCKED
    assert denied.message.startswith("The tool call 'delete_repo' was denied (policy_blocked): ")

    steered = gate.check("deploy", {"target": "prod/web"})
    assert steered.kind is GateKind.STEER
    assert "steer; deploy to staging first." in steered.message
    assert steered.message.endswith("Consider instead: deploy_staging.")

    pending = gate.check("launch", {})
    assert pending.kind is GateKind.PENDING and pending.ticket_id is not None
    assert f"(ticket {pending.ticket_id})" in pending.message

    [payload] = _settled(cp, sid)
    assert payload["outcome"] == "succeeded"
    assert len(payload["result"]["output"]) == RESULT_PREVIEW_CHARS + 1  # bounded, with an ellipsis
    assert cp.get_remaining_budget(sid)["spent_cost"] == Decimal("0.5")


def test_an_approved_ticket_resumes_once_and_a_failed_call_settles_as_failed(cp: ControlPlaneFacade) -> None:
    cp.set_policy(POLICY)
    sid = cp.open_session("approvals", agent_id="bot")
    gate = ToolGate(cp, sid, agent_id="bot")
    pending = gate.check("launch", {"rocket": 1})
    assert pending.ticket_id is not None
    cp.approve(pending.ticket_id, approver="alice")
    resumed = gate.resume(pending.ticket_id, "launch")
    assert resumed.allowed
    gate.settle(resumed, error=RuntimeError("engine did not start"))
    again = gate.resume(pending.ticket_id, "launch")
    assert again.kind is GateKind.DENY and again.decision.code is DecisionCode.ALREADY_CONSUMED
    [payload] = _settled(cp, sid)
    assert payload["outcome"] == "failed" and payload["result"] == {"error": "engine did not start"}


def _approve_first_pending(url: str, prefix: str, done: Any) -> None:
    with ControlPlaneFacade.from_database_url(url, table_prefix=prefix) as cp:
        for _ in range(600):
            tickets = cp.list_tickets(status="pending")
            if tickets:
                cp.approve(tickets[0].ticket_id, approver="alice")
                done.put(tickets[0].ticket_id)
                return
            time.sleep(0.05)


def test_a_gate_with_an_approval_timeout_waits_for_a_human_in_another_process(
    backend: Backend, table_prefix: str
) -> None:
    with ControlPlaneFacade.from_database_url(backend.url, policy=POLICY, table_prefix=table_prefix) as cp:
        cp.setup()
        sid = cp.open_session("waiting", agent_id="bot")
        ctx = multiprocessing.get_context("spawn")
        done = ctx.Queue()
        approver = ctx.Process(target=_approve_first_pending, args=(backend.url, table_prefix, done))
        approver.start()
        result = ToolGate(cp, sid, agent_id="bot", approval_timeout=60).check("launch", {})
        approver.join(30)
        assert result.allowed and result.decision.ticket_id == done.get(timeout=5)


def test_the_async_gate_runs_on_the_async_facade_and_on_a_sync_one(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    async def run() -> None:
        plane = AsyncControlPlaneFacade.from_database_url(
            backend.async_url, policy=POLICY, table_prefix=table_prefix, clock=clock
        )
        await plane.setup()
        sid = await plane.open_session("async", agent_id="bot")
        gate = ToolGate(plane, sid, agent_id="bot", resource_of=_resource)
        allowed = await gate.acheck("read_file", {"path": "a"})
        await gate.asettle(allowed, output={"lines": 3})
        assert (await gate.acheck("deploy", {"target": "prod/x"})).kind is GateKind.STEER
        pending = await gate.acheck("launch", {})
        assert pending.ticket_id is not None
        with pytest.raises(TypeError, match="use acheck"):
            gate.check("read_file", {})
        await plane.approve(pending.ticket_id, approver="alice")
        assert (await gate.aresume(pending.ticket_id, "launch")).allowed
        await plane.close()

        with ControlPlaneFacade.from_database_url(backend.url, table_prefix=table_prefix, clock=clock) as sync:
            sync_gate = ToolGate(sync, sid, agent_id="bot")
            assert (await sync_gate.acheck("read_file", {})).allowed
            [first, *_] = [f.payload for f in sync.replay(sid) if f.kind == "proposal.settled"]
            assert first["result"] == {"output": "{'lines': 3}"}

    asyncio.run(run())


def test_a_negative_approval_timeout_is_refused(cp: ControlPlaneFacade) -> None:
    with pytest.raises(ValueError, match="approval_timeout must be 0 or more seconds"):
        ToolGate(cp, "s", approval_timeout=-1)
