"""The OpenAI Agents SDK adapter, driven by a real `Runner` with a scripted `Model`: no network, no API key."""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import os
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from agents import (
    Agent,
    Model,
    ModelResponse,
    RunConfig,
    Runner,
    RunResult,
    RunState,
    ToolExecutionConfig,
    ToolGuardrailFunctionOutput,
    Usage,
    function_tool,
    set_tracing_disabled,
    tool_input_guardrail,
)
from agents.testing import assistant_message, function_call

from agent_control_plane import AsyncControlPlaneFacade, ControlPlaneFacade, IdentityContext, OrgId, TicketStatus
from agent_control_plane.integrations import ToolGate
from agent_control_plane.integrations.openai_agents import GUARDRAIL_NAME, OpenAIAgentsGovernor
from conftest import Backend

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

POLICY = {
    "default_tier": "always_approve",
    "actions": {"read_order": "unrestricted", "deploy_staging": "unrestricted", "close_account": "blocked"},
    "rules": [
        {
            "name": "staging-first",
            "when": {"field": "args.environment", "eq": "production"},
            "tier": "steer",
            "guidance": "deploy to staging and run the smoke tests first",
            "alternatives": ["deploy_staging"],
        }
    ],
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing may reach OpenAI: a dummy key, and the SDK's own switch for its trace exporter."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    set_tracing_disabled(True)


class ScriptedModel(Model):
    """Stands in for an LLM: makes the planned tool calls one per turn, then answers with the last tool result.

    It reads its progress from the conversation (how many tool results came back), so a fresh instance in another
    process carries on a resumed run where the first one stopped.
    """

    def __init__(self, *plan: tuple[str, dict[str, Any]]) -> None:
        self.plan = list(plan)
        self.results: list[str] = []

    async def get_response(
        self,
        system_instructions: str | None,
        input: Any,
        model_settings: Any,
        tools: Any,
        output_schema: Any,
        handoffs: Any,
        tracing: Any,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: Any,
    ) -> ModelResponse:
        items = input if isinstance(input, list) else []
        self.results = [
            str(i["output"]) for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"
        ]
        if len(self.results) < len(self.plan):
            tool, args = self.plan[len(self.results)]
            call = function_call(tool, args, call_id=f"call_{uuid.uuid4().hex[:12]}")
            return ModelResponse(output=[call], usage=Usage(), response_id=None)
        return ModelResponse(output=[assistant_message(f"Done. {self.results[-1]}")], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the scripted model does not stream")


class Shop:
    """The host's tools, governed by one governor; `ran` records every call that really executed."""

    def __init__(self, governor: OpenAIAgentsGovernor) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []

        def read_order(order_id: str) -> str:
            """Look up an order."""
            self.ran.append(("read_order", {"order_id": order_id}))
            return f"order {order_id}: 2 items, shipped"

        def close_account(customer_id: str) -> str:
            """Close a customer's account."""
            self.ran.append(("close_account", {"customer_id": customer_id}))
            return "closed"

        def deploy(service: str, environment: str) -> str:
            """Deploy a service."""
            self.ran.append(("deploy", {"service": service, "environment": environment}))
            return f"{service} deployed to {environment}"

        def deploy_staging(service: str) -> str:
            """Deploy a service to staging."""
            self.ran.append(("deploy_staging", {"service": service}))
            return f"{service} deployed to staging"

        def issue_refund(order_id: str, amount: float) -> str:
            """Refund an order."""
            self.ran.append(("issue_refund", {"order_id": order_id, "amount": amount}))
            return f"refunded {amount} on order {order_id}"

        def charge_card(order_id: str) -> str:
            """Charge the card on file."""
            self.ran.append(("charge_card", {"order_id": order_id}))
            raise RuntimeError("card declined")

        functions = [read_order, close_account, deploy, deploy_staging, issue_refund, charge_card]
        self.tools = [governor.function_tool(f) for f in functions]

    def agent(self, *plan: tuple[str, dict[str, Any]]) -> Agent[Any]:
        return Agent(
            name="support", instructions="Help the customer.", tools=list(self.tools), model=ScriptedModel(*plan)
        )


def _governor(cp: ControlPlaneFacade | AsyncControlPlaneFacade, sid: str, **options: Any) -> OpenAIAgentsGovernor:
    return OpenAIAgentsGovernor(ToolGate(cp, sid, agent_id="support-bot", **options))


def _events(cp: ControlPlaneFacade, sid: str, kind: str) -> list[dict[str, Any]]:
    return [frame.payload for frame in cp.replay(sid) if frame.kind == kind]


def _tool_results(result: RunResult) -> list[str]:
    return [str(item.output) for item in result.new_items if item.type == "tool_call_output_item"]


@pytest.fixture
def shop_cp(cp: ControlPlaneFacade) -> ControlPlaneFacade:
    cp.set_policy(POLICY)
    return cp


def test_an_allowed_call_runs_once_and_is_settled_with_its_output(shop_cp: ControlPlaneFacade) -> None:
    sid = shop_cp.open_session("support", agent_id="support-bot", max_cost=Decimal("5"))
    governor = _governor(
        shop_cp,
        sid,
        identity=IdentityContext(org_id=OrgId("tenant-acme")),
        resource_of=lambda tool, args: f"orders/{args['order_id']}",
        cost_of=lambda tool, args: Decimal("0.25"),
    )
    shop = Shop(governor)

    result = asyncio.run(Runner.run(shop.agent(("read_order", {"order_id": "42"})), "Where is order 42?"))

    assert shop.ran == [("read_order", {"order_id": "42"})]
    assert result.final_output == "Done. order 42: 2 items, shipped"
    [decided] = _events(shop_cp, sid, "proposal.decided")
    assert (decided["action"], decided["resource"], decided["agent_id"]) == ("read_order", "orders/42", "support-bot")
    assert (decided["cost"], decided["identity"]["org_id"]) == ("0.25", "tenant-acme")
    [settled] = _events(shop_cp, sid, "proposal.settled")
    assert settled["outcome"] == "succeeded"
    assert settled["result"] == {"output": "order 42: 2 items, shipped"}
    assert shop_cp.get_remaining_budget(sid)["spent_cost"] == Decimal("0.25")
    [guarded] = result.tool_input_guardrail_results
    assert guarded.guardrail.get_name() == GUARDRAIL_NAME
    assert guarded.output.output_info["decision"] == "allow"
    assert shop_cp.verify(sid).ok


def test_a_denied_call_never_runs_and_the_model_reads_the_reason_as_the_tool_result(
    shop_cp: ControlPlaneFacade,
) -> None:
    sid = shop_cp.open_session("support", agent_id="support-bot")
    shop = Shop(_governor(shop_cp, sid))

    result = asyncio.run(Runner.run(shop.agent(("close_account", {"customer_id": "c-7"})), "Close my account"))

    assert shop.ran == []
    [told] = _tool_results(result)
    assert told.startswith("The tool call 'close_account' was denied (policy_blocked): ")
    assert "blocked" in told
    assert result.final_output == f"Done. {told}"
    assert _events(shop_cp, sid, "proposal.settled") == []


def test_a_steered_call_gives_the_model_the_guidance_and_alternatives_and_it_re_plans(
    shop_cp: ControlPlaneFacade,
) -> None:
    sid = shop_cp.open_session("support", agent_id="support-bot")
    shop = Shop(_governor(shop_cp, sid))
    agent = shop.agent(
        ("deploy", {"service": "web", "environment": "production"}),
        ("deploy_staging", {"service": "web"}),  # what the model does after reading the guidance
    )

    result = asyncio.run(Runner.run(agent, "Ship the web service"))

    steered, replanned = _tool_results(result)
    assert "steer; deploy to staging and run the smoke tests first." in steered
    assert steered.endswith("Consider instead: deploy_staging.")
    assert replanned == "web deployed to staging"
    assert shop.ran == [("deploy_staging", {"service": "web"})]


def test_a_failing_tool_is_settled_as_failed_and_the_model_reads_the_sdk_error_message(
    shop_cp: ControlPlaneFacade,
) -> None:
    shop_cp.set_policy({**POLICY, "actions": {**POLICY["actions"], "charge_card": "unrestricted"}})  # type: ignore[dict-item]
    sid = shop_cp.open_session("support", agent_id="support-bot")
    shop = Shop(_governor(shop_cp, sid))

    result = asyncio.run(Runner.run(shop.agent(("charge_card", {"order_id": "42"})), "Charge it"))

    assert shop.ran == [("charge_card", {"order_id": "42"})]
    assert _tool_results(result) == ["An error occurred while running the tool. Please try again."]
    [settled] = _events(shop_cp, sid, "proposal.settled")
    assert settled["outcome"] == "failed"
    assert settled["result"] == {"error": "card declined"}


def _approve_with_the_cli(backend: Backend, table_prefix: str, ticket_id: str) -> None:
    """A human, in another process: `acp tickets approve`."""
    where = ["--database-url", backend.url, "--table-prefix", table_prefix]
    done = subprocess.run(
        [str(Path(sys.executable).with_name("acp")), *where, "tickets", "approve", ticket_id, "--by", "alice"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _resume_in_a_new_process(url: str, table_prefix: str, sid: str, state_file: str, results: Any) -> None:
    """Another worker: a fresh control plane, governor and agent; the run state comes from the file."""
    os.environ.setdefault("OPENAI_API_KEY", "sk-test-not-a-real-key")
    set_tracing_disabled(True)

    async def resume() -> tuple[Any, ...]:
        with ControlPlaneFacade.from_database_url(url, table_prefix=table_prefix) as cp:
            governor = _governor(cp, sid)
            shop = Shop(governor)
            agent = shop.agent(("issue_refund", {"order_id": "42", "amount": 80.0}))
            state = await RunState.from_string(agent, Path(state_file).read_text())
            applied = await governor.resume_approvals(state)
            result = await Runner.run(agent, state)
            return len(applied.approved), shop.ran, result.final_output, len(result.interruptions)

    results.put(asyncio.run(resume()))


def test_a_paused_run_is_approved_and_resumed_in_other_processes_and_runs_exactly_once(
    backend: Backend, table_prefix: str, tmp_path: Path
) -> None:
    with ControlPlaneFacade.from_database_url(backend.url, policy=POLICY, table_prefix=table_prefix) as cp:
        cp.setup()
        sid = cp.open_session("support", agent_id="support-bot")
        governor = _governor(cp, sid)
        shop = Shop(governor)
        agent = shop.agent(("issue_refund", {"order_id": "42", "amount": 80.0}))

        paused = asyncio.run(Runner.run(agent, "Refund order 42"))

        [interruption] = paused.interruptions
        assert interruption.tool_name == "issue_refund" and shop.ran == []
        [request] = asyncio.run(governor.pending_approvals(paused.interruptions))
        assert request.ticket is not None and request.ticket.status is TicketStatus.PENDING
        assert request.arguments == {"order_id": "42", "amount": 80.0}
        state_file = tmp_path / "run.json"
        state_file.write_text(paused.to_state().to_string())  # the first process may exit here

        assert request.ticket_id is not None
        _approve_with_the_cli(backend, table_prefix, request.ticket_id)

        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        worker = ctx.Process(
            target=_resume_in_a_new_process, args=(backend.url, table_prefix, sid, str(state_file), results)
        )
        worker.start()
        approved, ran, final, still_paused = results.get(timeout=60)
        worker.join(30)

        assert (approved, still_paused) == (1, 0)
        assert ran == [("issue_refund", {"order_id": "42", "amount": 80.0})]
        assert final == "Done. refunded 80.0 on order 42"
        [settled] = _events(cp, sid, "proposal.settled")
        assert settled["outcome"] == "succeeded" and settled["result"] == {"output": "refunded 80.0 on order 42"}
        assert cp.get_ticket(request.ticket_id).status is TicketStatus.CONSUMED

        # The same saved state resumed once more (a retry, a second worker): the approval is spent, nothing runs.
        again = _governor(cp, sid)
        retry_shop = Shop(again)
        retry_agent = retry_shop.agent(("issue_refund", {"order_id": "42", "amount": 80.0}))
        state = asyncio.run(RunState.from_string(retry_agent, state_file.read_text()))
        applied = asyncio.run(again.resume_approvals(state))
        [(_, message)] = applied.rejected
        assert "(already_consumed)" in message
        retried = asyncio.run(Runner.run(retry_agent, state))
        assert retry_shop.ran == [] and _tool_results(retried) == [message]
        assert len(_events(cp, sid, "proposal.settled")) == 1
        assert cp.verify(sid).ok


def test_a_denied_ticket_reaches_the_model_as_the_humans_reason(backend: Backend, table_prefix: str) -> None:
    with ControlPlaneFacade.from_database_url(backend.url, policy=POLICY, table_prefix=table_prefix) as cp:
        cp.setup()
        sid = cp.open_session("support", agent_id="support-bot")
        shop = Shop(_governor(cp, sid))
        agent = shop.agent(("issue_refund", {"order_id": "42", "amount": 900.0}))
        saved = asyncio.run(Runner.run(agent, "Refund order 42")).to_state().to_string()

        with ControlPlaneFacade.from_database_url(backend.url, table_prefix=table_prefix) as human:
            [ticket] = human.list_tickets(status="pending", session_id=sid)
            human.deny(ticket.ticket_id, approver="alice", reason="over the refund limit; offer store credit")

        governor = _governor(cp, sid)
        resumed_shop = Shop(governor)
        resumed_agent = resumed_shop.agent(("issue_refund", {"order_id": "42", "amount": 900.0}))
        state = asyncio.run(RunState.from_string(resumed_agent, saved))
        applied = asyncio.run(governor.resume_approvals(state))
        result = asyncio.run(Runner.run(resumed_agent, state))

        [(request, message)] = applied.rejected
        assert request.ticket_id == ticket.ticket_id
        assert message == (
            "The tool call 'issue_refund' was denied (approval_denied): "
            "denied by alice: over the refund limit; offer store credit"
        )
        assert _tool_results(result) == [message]
        assert resumed_shop.ran == [] and shop.ran == []
        assert _events(cp, sid, "proposal.settled") == []


def test_an_undecided_ticket_keeps_the_run_paused_and_a_hand_approved_state_does_not_bypass_it(
    shop_cp: ControlPlaneFacade,
) -> None:
    sid = shop_cp.open_session("support", agent_id="support-bot")
    governor = _governor(shop_cp, sid)
    shop = Shop(governor)
    agent = shop.agent(("issue_refund", {"order_id": "42", "amount": 80.0}))
    paused = asyncio.run(Runner.run(agent, "Refund order 42"))
    state = paused.to_state()

    applied = asyncio.run(governor.resume_approvals(state))
    assert applied.approved == applied.rejected == () and len(applied.waiting) == 1
    still = asyncio.run(Runner.run(agent, state))
    assert [item.tool_name for item in still.interruptions] == ["issue_refund"]
    assert len(shop_cp.list_tickets(session_id=sid)) == 1  # asking again reuses the waiting ticket

    # The host approves in the SDK alone, in a new process: the control plane still says the ticket waits.
    fresh = _governor(shop_cp, sid)
    fresh_shop = Shop(fresh)
    fresh_agent = fresh_shop.agent(("issue_refund", {"order_id": "42", "amount": 80.0}))
    loaded = asyncio.run(RunState.from_string(fresh_agent, still.to_state().to_string()))
    for item in loaded.get_interruptions():
        loaded.approve(item)
    result = asyncio.run(Runner.run(fresh_agent, loaded))
    [told] = _tool_results(result)
    assert "needs a human's approval and has not run yet" in told
    assert fresh_shop.ran == shop.ran == []


def test_an_approved_ticket_runs_the_call_when_the_run_resumes_in_the_same_process_on_the_async_facade(
    backend: Backend, table_prefix: str
) -> None:
    async def run() -> None:
        plane = AsyncControlPlaneFacade.from_database_url(backend.async_url, policy=POLICY, table_prefix=table_prefix)
        await plane.setup()
        sid = await plane.open_session("support", agent_id="support-bot")
        governor = _governor(plane, sid)
        shop = Shop(governor)
        agent = shop.agent(("read_order", {"order_id": "7"}), ("issue_refund", {"order_id": "7", "amount": 5.0}))

        paused = await Runner.run(agent, "Refund order 7")
        [request] = await governor.pending_approvals(paused.interruptions)
        assert request.ticket_id is not None
        await plane.approve(request.ticket_id, approver="alice")
        state = paused.to_state()
        assert len((await governor.resume_approvals(state)).approved) == 1
        result = await Runner.run(agent, state)

        assert [tool for tool, _ in shop.ran] == ["read_order", "issue_refund"]
        assert result.final_output == "Done. refunded 5.0 on order 7"
        settled = [f.payload for f in await plane.replay(sid) if f.kind == "proposal.settled"]
        assert [payload["action"] for payload in settled] == ["read_order", "issue_refund"]
        await plane.close()

    asyncio.run(run())


def test_pre_approval_guardrails_still_let_the_run_pause_for_the_ticket(shop_cp: ControlPlaneFacade) -> None:
    sid = shop_cp.open_session("support", agent_id="support-bot")
    shop = Shop(_governor(shop_cp, sid))
    config = RunConfig(tool_execution=ToolExecutionConfig(pre_approval_tool_input_guardrails=True))

    paused = asyncio.run(
        Runner.run(shop.agent(("issue_refund", {"order_id": "1", "amount": 3.0})), "Refund", run_config=config)
    )

    assert [item.tool_name for item in paused.interruptions] == ["issue_refund"]
    assert shop.ran == []
    [ticket] = shop_cp.list_tickets(session_id=sid)
    assert ticket.status is TicketStatus.PENDING


def test_a_tools_own_guardrail_that_stops_an_allowed_call_gives_back_its_reservation(
    shop_cp: ControlPlaneFacade,
) -> None:
    sid = shop_cp.open_session("support", agent_id="support-bot", max_cost=Decimal("1"))
    governor = _governor(shop_cp, sid, cost_of=lambda tool, args: Decimal("1"))
    ran: list[str] = []

    @tool_input_guardrail
    def no_vip_orders(data: Any) -> ToolGuardrailFunctionOutput:
        return ToolGuardrailFunctionOutput.reject_content("VIP orders are handled by a person")

    @function_tool(tool_input_guardrails=[no_vip_orders])
    def read_order(order_id: str) -> str:
        """Look up an order."""
        ran.append(order_id)
        return "found"

    agent = Agent(
        name="support", tools=[governor.govern(read_order)], model=ScriptedModel(("read_order", {"order_id": "v1"}))
    )
    result = asyncio.run(Runner.run(agent, "Where is my VIP order?"))

    assert _tool_results(result) == ["VIP orders are handled by a person"] and ran == []
    [settled] = _events(shop_cp, sid, "proposal.settled")
    assert settled["outcome"] == "failed"
    assert "no_vip_orders" in settled["result"]["error"]
    assert shop_cp.get_remaining_budget(sid)["spent_cost"] == Decimal("0")


def test_a_tool_that_asks_for_approval_itself_or_is_not_a_function_tool_is_refused(cp: ControlPlaneFacade) -> None:
    governor = _governor(cp, "any-session")

    @function_tool(needs_approval=True)
    def launch(rocket: str) -> str:
        """Launch."""
        return rocket

    with pytest.raises(ValueError, match="already sets needs_approval"):
        governor.govern(launch)
    with pytest.raises(TypeError, match="takes a FunctionTool"):
        governor.govern(print)  # type: ignore[arg-type]


def test_importing_the_adapter_without_the_sdk_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "agents", None)
    monkeypatch.delitem(sys.modules, "agent_control_plane.integrations.openai_agents")
    with pytest.raises(ImportError, match=r"pip install 'agent-control-plane\[openai-agents\]'"):
        importlib.import_module("agent_control_plane.integrations.openai_agents")


def test_the_example_runs_offline_without_an_api_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ACP_DATABASE_URL")}
    env["ACP_DATABASE_URL"] = f"sqlite:///{tmp_path / 'example.db'}"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "openai_agents_sdk_integration.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "lookup_order   -> ran: order 1001: 2 items, shipped on 3 May" in out
    assert "close_account  -> not run: The tool call 'close_account' was denied (policy_blocked)" in out
    assert "Consider instead: add_ticket_note." in out
    assert "add_ticket_note -> ran: note added to ticket T-1001" in out
    assert "paused: issue_refund needs approval (ticket " in out
    assert "approved by alice in another process (acp tickets approve)" in out
    assert "resumed in a new process: issue_refund -> ran: refunded 120.00 on order 1001" in out
    assert "issue_refund ran 1 time(s); log verified: True" in out
    assert "OPENAI_API_KEY is not set" in out
