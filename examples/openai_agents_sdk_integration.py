"""OpenAI Agents SDK integration: a support agent whose function tools are governed by the control plane.

Run it from the repository root with `.venv/bin/python examples/openai_agents_sdk_integration.py` (it needs
`pip install agent-control-plane[openai-agents]`). Without OPENAI_API_KEY it runs offline: a small scripted `Model`
stands in for the LLM and a real `Runner` drives it through the four outcomes of a governed call:

1. allowed: the tool runs and its result is settled in the log;
2. denied: the tool never runs, and the model reads the policy's reason as the tool result;
3. steered: the model reads the guidance and the alternatives, and re-plans with the suggested tool;
4. needs approval: the run pauses with an interruption; its `RunState` is saved to a file; a human approves the
   ticket in another process (`acp tickets approve`); a new process loads the state and resumes, and the refund
   runs exactly once.

With OPENAI_API_KEY set it also asks the SDK's default model one question that uses a governed tool. It starts from a
fresh `openai_agents_sdk_integration.db` next to this file each time (set ACP_DATABASE_URL to use another database).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents import Agent, FunctionTool, Model, ModelResponse, Runner, RunResult, RunState, Usage, set_tracing_disabled
from agents.testing import assistant_message, function_call

from agent_control_plane import ControlPlaneFacade
from agent_control_plane.integrations import ToolGate
from agent_control_plane.integrations.openai_agents import OpenAIAgentsGovernor

HERE = Path(__file__).resolve().parent
DATABASE = HERE / "openai_agents_sdk_integration.db"
AGENT_ID = "support-bot"
ACP = [sys.executable, "-c", "from agent_control_plane.cli import main; main()"]
"""The `acp` command, run by this interpreter (the same program as the console script)."""

POLICY: dict[str, Any] = {
    "default_tier": "always_approve",
    "actions": {
        "lookup_order": "unrestricted",
        "add_ticket_note": "unrestricted",
        "issue_refund": "auto_approve",
        "close_account": "blocked",
    },
    "rules": [
        {
            "name": "big-refunds-need-a-human",
            "when": {"all": [{"field": "action", "eq": "issue_refund"}, {"field": "args.amount", "gt": 100}]},
            "tier": "always_approve",
            "reason": "refunds over 100 need a human",
        },
        {
            "name": "no-mail-outside",
            "when": {
                "all": [
                    {"field": "action", "eq": "email_customer"},
                    {"not": {"field": "args.to", "glob": "*@example.com"}},
                ]
            },
            "tier": "steer",
            "guidance": "write to customers through their support ticket, so the team sees the conversation",
            "alternatives": ["add_ticket_note"],
        },
    ],
}

RAN: list[str] = []
"""The tools that really executed, in order (the host's side effects)."""


def support_tools(governor: OpenAIAgentsGovernor) -> list[FunctionTool]:
    """The agent's tools, each governed: plain functions under `governor.function_tool`."""

    @governor.function_tool
    def lookup_order(order_id: str) -> str:
        """Look up an order's status."""
        RAN.append("lookup_order")
        return f"order {order_id}: 2 items, shipped on 3 May"

    @governor.function_tool
    def close_account(customer_id: str) -> str:
        """Close a customer's account."""
        RAN.append("close_account")
        return f"account {customer_id} closed"

    @governor.function_tool
    def email_customer(to: str, body: str) -> str:
        """Send an email to a customer."""
        RAN.append("email_customer")
        return f"mail sent to {to}"

    @governor.function_tool
    def add_ticket_note(ticket: str, note: str) -> str:
        """Add a note to a support ticket (the customer sees it)."""
        RAN.append("add_ticket_note")
        return f"note added to ticket {ticket}"

    @governor.function_tool
    def issue_refund(order_id: str, amount: float) -> str:
        """Refund an order."""
        RAN.append("issue_refund")
        return f"refunded {amount:.2f} on order {order_id}"

    return [lookup_order, close_account, email_customer, add_ticket_note, issue_refund]


@dataclass(frozen=True)
class Step:
    """One tool call the scripted model intends to make."""

    tool: str
    args: dict[str, Any]
    if_suggested: bool = False
    """Make it only when the previous tool result suggested this tool instead (a steer): the model re-plans."""


class ScriptedModel(Model):
    """Stands in for an LLM, offline: one planned tool call per turn, then an answer quoting the last tool result.

    It reads its progress from the conversation it is given (how many tool results came back), so a fresh instance
    in another process carries on a resumed run where the first one stopped.
    """

    def __init__(self, *plan: Step) -> None:
        self.plan = plan

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
        results = [str(i["output"]) for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
        if len(results) < len(self.plan):
            step = self.plan[len(results)]
            if not step.if_suggested or (results and f"Consider instead: {step.tool}" in results[-1]):
                call = function_call(step.tool, step.args, call_id=f"call_{uuid.uuid4().hex[:12]}")
                return ModelResponse(output=[call], usage=Usage(), response_id=None)
        answer = f"Done. {results[-1]}" if results else "Nothing to do."
        return ModelResponse(output=[assistant_message(answer)], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the scripted model does not stream")


def agent_with(tools: list[FunctionTool], *plan: Step) -> Agent[Any]:
    return Agent(
        name="support", instructions="Help customers with their orders.", tools=tools, model=ScriptedModel(*plan)
    )


def show_calls(result: RunResult, ran_before: int, *, width: int = 14) -> None:
    """Each tool call of the run: whether it ran, and what the model read as its result."""
    executed = RAN[ran_before:]
    names = {item.raw_item.call_id: item.raw_item.name for item in result.new_items if item.type == "tool_call_item"}
    for item in result.new_items:
        if item.type == "tool_call_output_item":
            tool = names.get(item.raw_item["call_id"], "?")
            ran = tool in executed
            if ran:
                executed.remove(tool)
            print(f"{tool:<{width}} -> {'ran' if ran else 'not run'}: {item.output}")


async def allow_deny_steer(governor: OpenAIAgentsGovernor) -> None:
    print("== allowed, denied, steered (a real Runner, the scripted model) ==")
    tools = support_tools(governor)
    runs = [
        agent_with(tools, Step("lookup_order", {"order_id": "1001"})),
        agent_with(tools, Step("close_account", {"customer_id": "c-17"})),
        agent_with(
            tools,
            Step("email_customer", {"to": "sam@gmail.com", "body": "Your refund is on its way."}),
            Step("add_ticket_note", {"ticket": "T-1001", "note": "Your refund is on its way."}, if_suggested=True),
        ),
    ]
    for agent in runs:
        before = len(RAN)
        result = await Runner.run(agent, "Help the customer with order 1001.")
        show_calls(result, before)
    print()


async def pause_for_approval(governor: OpenAIAgentsGovernor, state_file: Path) -> str:
    """The first process: the refund needs a human, so the run pauses; its state goes to a file."""
    print("== needs approval: pause, approve in another process, resume in a new process ==")
    agent = agent_with(support_tools(governor), Step("issue_refund", {"order_id": "1001", "amount": 120.0}))
    result = await Runner.run(agent, "Refund order 1001: the parcel arrived broken.")
    [request] = await governor.pending_approvals(result.interruptions)
    assert request.ticket is not None, "the ticket is created when the call is first proposed"
    print(f"paused: {request.tool} needs approval (ticket {request.ticket.ticket_id}): {request.ticket.reason}")
    state_file.write_text(result.to_state().to_string())
    print(f"run state saved ({state_file.stat().st_size // 1024} KB); this process could exit now")
    return request.ticket.ticket_id


async def resume(url: str, session_id: str, state_file: Path) -> None:
    """A new process: load the saved run state, apply the control plane's decisions, and finish the run."""
    set_tracing_disabled(True)
    with ControlPlaneFacade.from_database_url(url) as cp:
        governor = OpenAIAgentsGovernor(ToolGate(cp, session_id, agent_id=AGENT_ID))
        agent = agent_with(support_tools(governor), Step("issue_refund", {"order_id": "1001", "amount": 120.0}))
        state = await RunState.from_string(agent, state_file.read_text())
        applied = await governor.resume_approvals(state)
        result = await Runner.run(agent, state)
        print("resumed in a new process: ", end="")
        show_calls(result, 0, width=0)
        print(f"model: {result.final_output}  ({len(applied.approved)} approved, {len(applied.waiting)} waiting)")


async def live(governor: OpenAIAgentsGovernor) -> None:
    """One question to the SDK's default model (needs OPENAI_API_KEY): it decides to call the governed tool."""
    print("== live: the SDK's default model ==")
    agent = Agent(name="support", instructions="Answer with the order tools.", tools=support_tools(governor)[:1])
    before = len(RAN)
    result = await Runner.run(agent, "What is the status of order 1001?")
    show_calls(result, before)
    print(f"model: {result.final_output}")


def fresh_database() -> str:
    url = os.environ.get("ACP_DATABASE_URL")
    if url is None:
        for leftover in HERE.glob("openai_agents_sdk_integration.db*"):
            leftover.unlink()
        url = f"sqlite:///{DATABASE}"
    return url


async def main() -> None:
    online = bool(os.environ.get("OPENAI_API_KEY"))
    if not online:
        set_tracing_disabled(True)  # nothing to send traces with, and no network offline
    url = fresh_database()
    with ControlPlaneFacade.from_database_url(url, policy=POLICY) as cp:
        cp.setup()
        session_id = cp.open_session("support-desk", agent_id=AGENT_ID)
        governor = OpenAIAgentsGovernor(ToolGate(cp, session_id, agent_id=AGENT_ID))
        await allow_deny_steer(governor)

        with tempfile.TemporaryDirectory() as scratch:
            state_file = Path(scratch) / "run_state.json"
            ticket_id = await pause_for_approval(governor, state_file)
            sys.stdout.flush()
            env = {**os.environ, "ACP_DATABASE_URL": url}
            subprocess.run(
                [*ACP, "tickets", "approve", ticket_id, "--by", "alice"], env=env, check=True, capture_output=True
            )
            print("approved by alice in another process (acp tickets approve)")
            sys.stdout.flush()
            subprocess.run(
                [sys.executable, __file__, "--resume", str(state_file), "--session", session_id, "--database-url", url],
                check=True,
            )

        settled = [frame.payload["action"] for frame in cp.replay(session_id) if frame.kind == "proposal.settled"]
        print(f"issue_refund ran {settled.count('issue_refund')} time(s); log verified: {cp.verify(session_id).ok}")
        print()
        if online:
            await live(governor)
        else:
            print("OPENAI_API_KEY is not set: skipped the run against the OpenAI API (set it to try the default model)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resume", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--session", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.resume is not None:
        asyncio.run(resume(options.database_url, options.session, options.resume))
    else:
        asyncio.run(main())
