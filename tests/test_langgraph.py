"""The LangGraph adapter on a real graph: a scripted model node, the governed tool node, and real checkpointers.

Every tool here appends a line to a ledger file when it runs, so "the side effect happened exactly once" is a count
of lines, readable from any process.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import InjectedState, ToolNode, tools_condition
from langgraph.types import Command, interrupt
from pydantic import ValidationError

from agent_control_plane import AsyncControlPlaneFacade, ControlPlaneFacade, TicketStatus
from agent_control_plane.integrations import ToolGate
from agent_control_plane.integrations.langgraph import GovernedToolNode, idempotency_key
from conftest import Backend
from test_demos import run_demo

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

POLICY = {
    "default_tier": "always_approve",
    "actions": {"read_*": "unrestricted", "delete_*": "blocked", "deploy": "unrestricted", "flaky": "unrestricted"},
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


def make_tools(ledger: Path) -> list[BaseTool]:
    """Tools whose side effect is a line in `ledger`."""

    def record(line: str) -> None:
        with ledger.open("a") as out:
            out.write(line + "\n")

    @tool
    def read_file(path: str) -> str:
        """Read a file."""
        record(f"read_file {path}")
        return f"contents of {path}"

    @tool
    def delete_repo(name: str) -> str:
        """Delete a repository."""
        record(f"delete_repo {name}")
        return "deleted"

    @tool
    def deploy(target: str) -> str:
        """Deploy."""
        record(f"deploy {target}")
        return f"deployed to {target}"

    @tool
    def send_email(to: str, body: str) -> str:
        """Send an email."""
        record(f"send_email {to}")
        return f"sent to {to}"

    @tool
    def flaky(x: int) -> str:
        """Fail."""
        record(f"flaky {x}")
        raise RuntimeError("disk full")

    return [read_file, delete_repo, deploy, send_email, flaky]


def ran(ledger: Path) -> list[str]:
    return ledger.read_text().splitlines() if ledger.exists() else []


def call(tool_name: str, call_id: str, /, **args: Any) -> dict[str, Any]:
    return {"name": tool_name, "args": args, "id": call_id, "type": "tool_call"}


def scripted_model(*turns: AIMessage) -> Callable[[MessagesState], dict[str, list[BaseMessage]]]:
    """Stands in for the LLM: the n-th time it is asked, it answers the n-th scripted message, then "done"."""

    def model(state: MessagesState) -> dict[str, list[BaseMessage]]:
        asked = sum(isinstance(message, AIMessage) for message in state["messages"])
        return {"messages": [turns[asked] if asked < len(turns) else AIMessage("done", id=f"ai-{asked}")]}

    return model


def build_graph(node: GovernedToolNode, checkpointer: BaseCheckpointSaver[Any] | None, *turns: AIMessage) -> Any:
    builder = StateGraph(MessagesState)
    builder.add_node("model", scripted_model(*turns))
    builder.add_node("tools", node)
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    graph: CompiledStateGraph[Any, Any, Any, Any] = builder.compile(checkpointer=checkpointer)
    return graph


def gate_for(plane: ControlPlaneFacade | AsyncControlPlaneFacade, sid: str) -> ToolGate:
    return ToolGate(plane, sid, agent_id="bot", resource_of=lambda tool, args: args.get("target"))


def tool_messages(result: dict[str, Any]) -> dict[str, ToolMessage]:
    return {m.tool_call_id: m for m in result["messages"] if isinstance(m, ToolMessage)}


def thread(name: str) -> Any:
    return {"configurable": {"thread_id": name}}


START_INPUT = {"messages": [HumanMessage("go", id="human-1")]}
TWO_CALLS = AIMessage(
    "",
    id="ai-0",
    tool_calls=[call("read_file", "c1", path="README.md"), call("send_email", "c2", to="ops@example.com", body="hi")],
)


@pytest.fixture
def plane(cp: ControlPlaneFacade) -> ControlPlaneFacade:
    cp.set_policy(POLICY)
    return cp


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.txt"


def test_allowed_calls_run_and_settle_and_denied_and_steered_ones_come_back_as_error_tool_messages(
    plane: ControlPlaneFacade, ledger: Path
) -> None:
    sid = plane.open_session("lg", agent_id="bot")
    node = GovernedToolNode(make_tools(ledger), gate_for(plane, sid))
    turn = AIMessage(
        "",
        id="ai-0",
        tool_calls=[
            call("read_file", "c1", path="README.md"),
            call("delete_repo", "c2", name="app"),
            call("deploy", "c3", target="prod/web"),
        ],
    )
    result = build_graph(node, InMemorySaver(), turn).invoke(START_INPUT, thread("t"))

    messages = tool_messages(result)
    assert messages["c1"].content == "contents of README.md" and messages["c1"].status == "success"
    assert messages["c2"].status == "error"
    assert messages["c2"].content.startswith("The tool call 'delete_repo' was denied (policy_blocked): ")
    assert messages["c2"].artifact["code"] == "policy_blocked"
    assert messages["c3"].status == "error"
    assert "steer; deploy to staging first." in messages["c3"].content
    assert messages["c3"].content.endswith("Consider instead: deploy_staging.")
    assert result["messages"][-1].content == "done"  # the model read the answers and finished
    assert ran(ledger) == ["read_file README.md"]
    [settled] = [f.payload for f in plane.replay(sid) if f.kind == "proposal.settled"]
    assert settled["outcome"] == "succeeded" and settled["result"] == {"output": "contents of README.md"}


def asking_tools(ledger: Path) -> list[BaseTool]:
    """Tools that pause the graph themselves (`interrupt()` inside the tool) to ask the person at the keyboard."""

    def record(line: str) -> None:
        with ledger.open("a") as out:
            out.write(line + "\n")

    @tool("deploy")
    def confirmed_deploy(target: str) -> str:
        """Deploy, once the user confirms."""
        record(f"asked deploy {target}")
        answer = interrupt(f"deploy to {target}?")
        record(f"deploy {target} {answer}")
        return f"deployed to {target} ({answer})"

    @tool("send_email")
    def confirmed_email(to: str, body: str) -> str:
        """Send an email, once the user confirms."""
        record(f"asked send_email {to}")
        answer = interrupt(f"send to {to}?")
        record(f"send_email {to} {answer}")
        return f"sent to {to} ({answer})"

    return [*make_tools(ledger)[:1], confirmed_deploy, confirmed_email]


ALONGSIDE = {"alone": [], "with another call": [call("read_file", "c0", path="README.md")]}


@pytest.mark.parametrize("others", ALONGSIDE.values(), ids=ALONGSIDE.keys())
def test_a_tool_that_pauses_the_graph_itself_runs_under_its_one_proposal_when_resumed(
    plane: ControlPlaneFacade, ledger: Path, others: list[dict[str, Any]]
) -> None:
    sid = plane.open_session("lg", agent_id="bot")
    turn = AIMessage("", id="ai-0", tool_calls=[*others, call("deploy", "c1", target="staging")])
    graph = build_graph(GovernedToolNode(asking_tools(ledger), gate_for(plane, sid)), InMemorySaver(), turn)

    paused = graph.invoke(START_INPUT, thread("t"))
    assert [i.value for i in paused["__interrupt__"]] == ["deploy to staging?"]
    result = graph.invoke(Command(resume="yes"), thread("t"))

    assert tool_messages(result)["c1"].content == "deployed to staging (yes)"
    reads = ["read_file README.md"] if others else []
    deploys = ["asked deploy staging", "asked deploy staging", "deploy staging yes"]
    assert [line for line in ran(ledger) if "deploy" in line] == deploys
    assert sorted(ran(ledger)) == sorted([*reads, *deploys])  # the calls' tasks run concurrently: in either order
    decided = [f.payload["action"] for f in plane.replay(sid) if f.kind == "proposal.decided"]
    assert sorted(decided) == ["deploy"] + ["read_file"] * len(others)  # the re-run proposed nothing again
    settled = [f.payload for f in plane.replay(sid) if f.kind == "proposal.settled"]
    assert [s["outcome"] for s in settled] == ["succeeded"] * (len(others) + 1)
    assert settled[-1]["result"] == {"output": "deployed to staging (yes)"}


@pytest.mark.parametrize("others", ALONGSIDE.values(), ids=ALONGSIDE.keys())
def test_an_approved_tool_that_then_asks_the_user_gets_the_users_answer_not_the_approval(
    plane: ControlPlaneFacade, ledger: Path, others: list[dict[str, Any]]
) -> None:
    sid = plane.open_session("lg", agent_id="bot")
    turn = AIMessage("", id="ai-0", tool_calls=[*others, call("send_email", "c1", to="ops@example.com", body="hi")])
    graph = build_graph(GovernedToolNode(asking_tools(ledger), gate_for(plane, sid)), InMemorySaver(), turn)

    paused = graph.invoke(START_INPUT, thread("t"))
    [approval] = [i.value for i in paused["__interrupt__"]]
    ticket = approval["ticket_id"]
    plane.approve(ticket, approver="alice")  # decided before the graph resumes: the first re-run must still pause
    asked = graph.invoke(Command(resume={"ticket_id": ticket}), thread("t"))  # at the same place, to read it
    assert [i.value for i in asked["__interrupt__"]] == ["send to ops@example.com?"]
    result = graph.invoke(Command(resume="yes"), thread("t"))

    assert tool_messages(result)["c1"].content == "sent to ops@example.com (yes)"
    reads = ["read_file README.md"] if others else []
    emails = ["asked send_email ops@example.com", "asked send_email ops@example.com", "send_email ops@example.com yes"]
    assert [line for line in ran(ledger) if "send_email" in line] == emails
    assert sorted(ran(ledger)) == sorted([*reads, *emails])
    assert plane.get_ticket(ticket).status is TicketStatus.CONSUMED
    settled = [f.payload for f in plane.replay(sid) if f.kind == "proposal.settled"]
    assert [s["outcome"] for s in settled] == ["succeeded"] * (len(others) + 1)


def test_a_failing_tool_settles_as_failed_and_the_model_reads_the_error(
    plane: ControlPlaneFacade, ledger: Path
) -> None:
    sid = plane.open_session("lg", agent_id="bot")
    node = GovernedToolNode(make_tools(ledger), gate_for(plane, sid))
    turn = AIMessage("", id="ai-0", tool_calls=[call("flaky", "c1", x=1), call("no_such_tool", "c2")])
    result = build_graph(node, InMemorySaver(), turn).invoke(START_INPUT, thread("t"))

    messages = tool_messages(result)
    assert messages["c1"].status == "error" and "disk full" in messages["c1"].content
    assert messages["c2"].status == "error" and "no_such_tool is not a valid tool" in messages["c2"].content
    [settled] = [f.payload for f in plane.replay(sid) if f.kind == "proposal.settled"]
    assert settled["outcome"] == "failed" and "disk full" in settled["result"]["error"]
    assert [f.payload["action"] for f in plane.replay(sid) if f.kind == "proposal.decided"] == ["flaky"]


def test_a_call_that_needs_approval_pauses_the_graph_with_its_ticket_and_runs_once_after_a_human_approves(
    backend: Backend, table_prefix: str, ledger: Path
) -> None:
    with ControlPlaneFacade.from_database_url(backend.url, policy=POLICY, table_prefix=table_prefix) as cp:
        cp.setup()
        sid = cp.open_session("lg", agent_id="bot")
        turn = AIMessage("", id="ai-0", tool_calls=[call("send_email", "c1", to="ops@example.com", body="hi")])
        graph = build_graph(GovernedToolNode(make_tools(ledger), gate_for(cp, sid)), InMemorySaver(), turn)

        paused = graph.invoke(START_INPUT, thread("t"))
        [pending] = paused["__interrupt__"]
        request = pending.value
        assert request["kind"] == "approval_required" and request["tool"] == "send_email"
        assert request["args"] == {"to": "ops@example.com", "body": "hi"} and request["tool_call_id"] == "c1"
        assert f"(ticket {request['ticket_id']})" in request["message"] and request["problem"] is None
        assert graph.get_state(thread("t")).next == ("tools",) and ran(ledger) == []

        cp.approve(request["ticket_id"], approver="alice")  # the human, through the control plane
        result = graph.invoke(Command(resume={"ticket_id": request["ticket_id"]}), thread("t"))

        assert tool_messages(result)["c1"].content == "sent to ops@example.com"
        assert ran(ledger) == ["send_email ops@example.com"]
        assert cp.get_ticket(request["ticket_id"]).status is TicketStatus.CONSUMED
        [settled] = [f.payload for f in cp.replay(sid) if f.kind == "proposal.settled"]
        assert settled["outcome"] == "succeeded"


def test_two_calls_in_one_node_the_first_allowed_the_second_approved_each_run_exactly_once(
    plane: ControlPlaneFacade, ledger: Path
) -> None:
    sid = plane.open_session("lg", agent_id="bot")
    graph = build_graph(GovernedToolNode(make_tools(ledger), gate_for(plane, sid)), InMemorySaver(), TWO_CALLS)

    paused = graph.invoke(START_INPUT, thread("t"))
    ticket = paused["__interrupt__"][0].value["ticket_id"]
    assert ran(ledger) == ["read_file README.md"]  # the allowed call did not wait for the human

    answer = {"ticket_id": ticket, "approved": True, "approver": "alice", "comment": "fine"}
    result = graph.invoke(Command(resume=answer), thread("t"))

    assert ran(ledger) == ["read_file README.md", "send_email ops@example.com"]
    assert [m.tool_call_id for m in result["messages"] if isinstance(m, ToolMessage)] == ["c1", "c2"]
    decided = [f.payload["action"] for f in plane.replay(sid) if f.kind == "proposal.decided"]
    # No re-proposal on the re-run, one execution; the two calls' tasks propose concurrently, in either order.
    assert sorted(decided) == ["read_file", "send_email", "send_email"]
    assert [t.ticket_id for t in plane.list_tickets(session_id=sid)] == [ticket]
    assert plane.get_ticket(ticket).decided_by == "alice"
    settled = [f.payload["outcome"] for f in plane.replay(sid) if f.kind == "proposal.settled"]
    assert settled == ["succeeded", "succeeded"]


def test_a_human_denial_comes_back_to_the_model_with_the_reason_and_the_tool_never_runs(
    plane: ControlPlaneFacade, ledger: Path
) -> None:
    sid = plane.open_session("lg", agent_id="bot")
    graph = build_graph(GovernedToolNode(make_tools(ledger), gate_for(plane, sid)), InMemorySaver(), TWO_CALLS)
    ticket = graph.invoke(START_INPUT, thread("t"))["__interrupt__"][0].value["ticket_id"]

    answer = {"ticket_id": ticket, "approved": False, "approver": "bob", "reason": "no emails on a Friday"}
    result = graph.invoke(Command(resume=answer), thread("t"))

    denied = tool_messages(result)["c2"]
    assert denied.status == "error" and denied.artifact["code"] == "approval_denied"
    assert "denied by bob: no emails on a Friday" in denied.content
    assert ran(ledger) == ["read_file README.md"]
    assert plane.get_ticket(ticket).status is TicketStatus.DENIED


def test_a_ticket_denied_elsewhere_wins_over_an_answer_that_approves(plane: ControlPlaneFacade, ledger: Path) -> None:
    sid = plane.open_session("lg", agent_id="bot")
    graph = build_graph(GovernedToolNode(make_tools(ledger), gate_for(plane, sid)), InMemorySaver(), TWO_CALLS)
    ticket = graph.invoke(START_INPUT, thread("t"))["__interrupt__"][0].value["ticket_id"]
    plane.deny(ticket, approver="carol", reason="wrong recipient")

    result = graph.invoke(Command(resume={"ticket_id": ticket, "approved": True, "approver": "alice"}), thread("t"))

    assert "denied by carol: wrong recipient" in tool_messages(result)["c2"].content
    assert ran(ledger) == ["read_file README.md"]


def test_an_answer_that_cannot_decide_pauses_again_on_the_same_ticket_saying_why(
    plane: ControlPlaneFacade, ledger: Path
) -> None:
    sid = plane.open_session("lg", agent_id="bot")
    graph = build_graph(GovernedToolNode(make_tools(ledger), gate_for(plane, sid)), InMemorySaver(), TWO_CALLS)
    ticket = graph.invoke(START_INPUT, thread("t"))["__interrupt__"][0].value["ticket_id"]

    look_again = {"ticket_id": ticket}
    still = graph.invoke(Command(resume=look_again), thread("t"))["__interrupt__"][0].value  # nobody decided yet
    assert still["ticket_id"] == ticket and still["problem"] is None
    wrong = graph.invoke(Command(resume={"ticket_id": "t-other", "approved": True, "approver": "a"}), thread("t"))
    assert wrong["__interrupt__"][0].value["problem"] == (
        f"the answer names ticket t-other, but this tool call waits for ticket {ticket}"
    )
    itself = graph.invoke(Command(resume={**look_again, "approved": True, "approver": "bot"}), thread("t"))
    assert "an agent cannot approve or deny its own call" in itself["__interrupt__"][0].value["problem"]
    with pytest.raises(ValidationError, match="must name its `approver`"):
        graph.invoke(Command(resume={**look_again, "approved": True}), thread("t"))  # refused whole: answer again

    result = graph.invoke(Command(resume={**look_again, "approved": True, "approver": "alice"}), thread("t"))
    assert tool_messages(result)["c2"].content == "sent to ops@example.com"
    assert ran(ledger) == ["read_file README.md", "send_email ops@example.com"]
    assert len(plane.list_tickets(session_id=sid)) == 1


def test_a_node_that_takes_no_decisions_on_resume_waits_for_the_control_plane(
    plane: ControlPlaneFacade, ledger: Path
) -> None:
    sid = plane.open_session("lg", agent_id="bot")
    node = GovernedToolNode(make_tools(ledger), gate_for(plane, sid), decide_on_resume=False)
    graph = build_graph(node, InMemorySaver(), TWO_CALLS)
    ticket = graph.invoke(START_INPUT, thread("t"))["__interrupt__"][0].value["ticket_id"]

    refused = graph.invoke(Command(resume={"ticket_id": ticket, "approved": True, "approver": "alice"}), thread("t"))
    assert "takes no decisions from resume values" in refused["__interrupt__"][0].value["problem"]
    assert plane.get_ticket(ticket).status is TicketStatus.PENDING

    plane.approve(ticket, approver="alice")
    assert tool_messages(graph.invoke(Command(resume={"ticket_id": ticket}), thread("t")))["c2"].status == "success"


def test_two_calls_needing_approval_pause_one_ticket_at_a_time_and_skip_a_ticket_already_decided(
    plane: ControlPlaneFacade, ledger: Path
) -> None:
    sid = plane.open_session("lg", agent_id="bot")
    turn = AIMessage(
        "",
        id="ai-0",
        tool_calls=[call("send_email", "c1", to="a@example.com", body="1"), call("send_email", "c2", to="b", body="2")],
    )
    graph = build_graph(GovernedToolNode(make_tools(ledger), gate_for(plane, sid)), InMemorySaver(), turn)
    first = graph.invoke(START_INPUT, thread("t"))["__interrupt__"][0].value
    assert first["tool_call_id"] == "c1"
    tickets = {ticket.ticket_id for ticket in plane.list_tickets(session_id=sid)}  # both, for the humans to see
    [second] = tickets - {first["ticket_id"]}

    plane.approve(second, approver="alice")  # decided elsewhere while the graph waits on the first
    answer = {"ticket_id": first["ticket_id"], "approved": True, "approver": "alice"}
    result = graph.invoke(Command(resume=answer), thread("t"))

    assert "__interrupt__" not in result
    assert ran(ledger) == ["send_email a@example.com", "send_email b"]


def test_a_lost_checkpoint_gets_the_first_ticket_back_and_never_reruns_a_settled_call(
    plane: ControlPlaneFacade, ledger: Path
) -> None:
    """As after a crash that lost the graph's checkpoint: the same thread and tool calls are proposed again."""
    sid = plane.open_session("lg", agent_id="bot")
    node = GovernedToolNode(make_tools(ledger), gate_for(plane, sid))
    first = build_graph(node, InMemorySaver(), TWO_CALLS).invoke(START_INPUT, thread("t"))
    ticket = first["__interrupt__"][0].value["ticket_id"]
    again = build_graph(node, InMemorySaver(), TWO_CALLS)  # a fresh checkpointer: no task results to read back

    paused = again.invoke(START_INPUT, thread("t"))

    assert paused["__interrupt__"][0].value["ticket_id"] == ticket  # the first decision, not a second ticket
    assert len(plane.list_tickets(session_id=sid)) == 1
    assert ran(ledger) == ["read_file README.md"]  # the settled read did not run again
    plane.approve(ticket, approver="alice")
    messages = tool_messages(again.invoke(Command(resume={"ticket_id": ticket}), thread("t")))
    assert messages["c1"].status == "error"
    assert messages["c1"].artifact["code"] in ("already_settled", "already_consumed")
    assert messages["c2"].content == "sent to ops@example.com"

    third = build_graph(node, InMemorySaver(), TWO_CALLS).invoke(START_INPUT, thread("t"))
    assert "__interrupt__" not in third  # the used ticket is reported, not waited on
    assert "already consumed" in tool_messages(third)["c2"].content
    assert ran(ledger) == ["read_file README.md", "send_email ops@example.com"]


def test_the_node_runs_tools_through_a_tool_node_with_injected_state(plane: ControlPlaneFacade, ledger: Path) -> None:
    @tool
    def read_count(path: str, state: Annotated[dict[str, Any], InjectedState]) -> str:
        """Count the messages."""
        return f"{path}: {len(state['messages'])} messages"

    sid = plane.open_session("lg", agent_id="bot")
    node = GovernedToolNode(ToolNode([read_count]), gate_for(plane, sid))
    turn = AIMessage("", id="ai-0", tool_calls=[call("read_count", "c1", path="x")])
    result = build_graph(node, InMemorySaver(), turn).invoke(START_INPUT, thread("t"))
    assert tool_messages(result)["c1"].content == "x: 2 messages"


def test_the_async_graph_governs_on_the_async_facade(backend: Backend, table_prefix: str, ledger: Path) -> None:
    async def run() -> None:
        plane = AsyncControlPlaneFacade.from_database_url(backend.async_url, policy=POLICY, table_prefix=table_prefix)
        await plane.setup()
        sid = await plane.open_session("lg-async", agent_id="bot")
        node = GovernedToolNode(make_tools(ledger), gate_for(plane, sid))
        graph = build_graph(node, InMemorySaver(), TWO_CALLS)
        with pytest.raises(TypeError, match="run the graph with ainvoke"):
            graph.invoke(START_INPUT, thread("sync"))

        paused = await graph.ainvoke(START_INPUT, thread("t"))
        ticket = paused["__interrupt__"][0].value["ticket_id"]
        assert ran(ledger) == ["read_file README.md"]
        answer = {"ticket_id": ticket, "approved": True, "approver": "alice"}
        result = await graph.ainvoke(Command(resume=answer), thread("t"))
        assert tool_messages(result)["c2"].content == "sent to ops@example.com"
        assert ran(ledger) == ["read_file README.md", "send_email ops@example.com"]
        assert (await plane.get_ticket(ticket)).status is TicketStatus.CONSUMED
        await plane.close()

    asyncio.run(run())


@pytest.mark.parametrize("others", ALONGSIDE.values(), ids=ALONGSIDE.keys())
def test_on_the_async_facade_an_approved_tool_that_then_asks_the_user_gets_the_users_answer(
    backend: Backend, table_prefix: str, ledger: Path, others: list[dict[str, Any]]
) -> None:
    async def run() -> None:
        plane = AsyncControlPlaneFacade.from_database_url(backend.async_url, policy=POLICY, table_prefix=table_prefix)
        await plane.setup()
        sid = await plane.open_session("lg-async", agent_id="bot")
        email = call("send_email", "c1", to="ops@example.com", body="hi")
        turn = AIMessage("", id="ai-0", tool_calls=[*others, email])
        graph = build_graph(GovernedToolNode(asking_tools(ledger), gate_for(plane, sid)), InMemorySaver(), turn)

        paused = await graph.ainvoke(START_INPUT, thread("t"))
        ticket = paused["__interrupt__"][0].value["ticket_id"]
        answer = {"ticket_id": ticket, "approved": True, "approver": "alice"}
        asked = await graph.ainvoke(Command(resume=answer), thread("t"))
        assert [i.value for i in asked["__interrupt__"]] == ["send to ops@example.com?"]
        result = await graph.ainvoke(Command(resume="yes"), thread("t"))

        assert tool_messages(result)["c1"].content == "sent to ops@example.com (yes)"
        assert ran(ledger)[-1] == "send_email ops@example.com yes"
        settled = [f.payload["outcome"] for f in await plane.replay(sid) if f.kind == "proposal.settled"]
        assert settled == ["succeeded"] * (len(others) + 1)
        await plane.close()

    asyncio.run(run())


def test_the_async_graph_also_governs_on_a_sync_facade(plane: ControlPlaneFacade, ledger: Path) -> None:
    sid = plane.open_session("lg", agent_id="bot")
    graph = build_graph(GovernedToolNode(make_tools(ledger), gate_for(plane, sid)), InMemorySaver(), TWO_CALLS)

    async def run() -> dict[str, Any]:
        ticket = (await graph.ainvoke(START_INPUT, thread("t")))["__interrupt__"][0].value["ticket_id"]
        answer = {"ticket_id": ticket, "approved": False, "approver": "bob", "reason": "no"}
        result: dict[str, Any] = await graph.ainvoke(Command(resume=answer), thread("t"))
        return result

    assert "denied by bob: no" in tool_messages(asyncio.run(run()))["c2"].content
    assert ran(ledger) == ["read_file README.md"]


def test_idempotency_keys_name_the_thread_message_and_call_and_stay_short() -> None:
    assert idempotency_key("t-1", "ai-0", "call_7") == "langgraph/t-1/ai-0/call_7"
    assert idempotency_key("t", None, "c") == "langgraph/t/-/c"
    long = idempotency_key("t" * 300, "m", "c")
    assert long.startswith("langgraph/sha256:") and len(long) <= 200


# a durable pause across processes --------------------------------------------------------------------------------
def _durable_graph(cp: ControlPlaneFacade, sid: str, saver: SqliteSaver, ledger: Path) -> Any:
    return build_graph(GovernedToolNode(make_tools(ledger), gate_for(cp, sid)), saver, TWO_CALLS)


def _resume_in_this_process(url: str, prefix: str, sid: str, checkpoints: Path, ledger: Path, out: Any) -> None:
    """Another agent process: a graph built afresh, resumed from the checkpoint file (the ticket is in the state)."""
    with ControlPlaneFacade.from_database_url(url, table_prefix=prefix) as cp:
        saver = SqliteSaver(sqlite3.connect(checkpoints, check_same_thread=False))
        graph = _durable_graph(cp, sid, saver, ledger)
        [waiting] = graph.get_state(thread("durable")).interrupts
        result = graph.invoke(Command(resume={"ticket_id": waiting.value["ticket_id"]}), thread("durable"))
        out.put({key: (m.status, m.content) for key, m in tool_messages(result).items()})
        saver.conn.close()


def test_a_graph_paused_in_one_process_resumes_in_another_from_its_sqlite_checkpoint(
    backend: Backend, table_prefix: str, tmp_path: Path
) -> None:
    checkpoints, ledger = tmp_path / "checkpoints.sqlite", tmp_path / "ledger.txt"
    with ControlPlaneFacade.from_database_url(backend.url, policy=POLICY, table_prefix=table_prefix) as cp:
        cp.setup()
        sid = cp.open_session("durable", agent_id="bot")
        saver = SqliteSaver(sqlite3.connect(checkpoints, check_same_thread=False))
        paused = _durable_graph(cp, sid, saver, ledger).invoke(START_INPUT, thread("durable"))
        saver.conn.close()  # this agent process is done with the graph
        ticket = paused["__interrupt__"][0].value["ticket_id"]
        assert ran(ledger) == ["read_file README.md"]

        cp.approve(ticket, approver="alice")  # the human, here; the graph resumes in another process
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        resuming = ctx.Process(
            target=_resume_in_this_process, args=(backend.url, table_prefix, sid, checkpoints, ledger, out)
        )
        resuming.start()
        answers = out.get(timeout=60)
        resuming.join(30)

        assert resuming.exitcode == 0
        assert answers == {"c1": ("success", "contents of README.md"), "c2": ("success", "sent to ops@example.com")}
        assert ran(ledger) == ["read_file README.md", "send_email ops@example.com"]
        assert cp.get_ticket(ticket).status is TicketStatus.CONSUMED


# packaging and the example ----------------------------------------------------------------------------------------
def test_importing_the_adapter_without_langgraph_names_the_extra(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "sys.modules['langgraph'] = None  # as if the package were not installed\n"
        "try:\n"
        "    import agent_control_plane.integrations.langgraph\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout == (
        "the LangGraph adapter needs the `langgraph` package: pip install 'agent-control-plane[langgraph]'\n"
    )


def test_langgraph_example_pauses_for_approval_and_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    copy = tmp_path / "examples"
    copy.mkdir()
    shutil.copy(EXAMPLES / "langgraph_integration.py", copy / "langgraph_integration.py")
    for stale in ("langgraph_integration.db", "langgraph_integration.checkpoints.db"):
        (copy / stale).write_text("left over from an earlier run")  # not a database: a fresh start must remove it
    out = run_demo(copy / "langgraph_integration.py", tmp_path, None)
    assert "read_build_status -> ran: build v1.4.2 is green" in out
    assert "delete_branch -> refused: The tool call 'delete_branch' was denied (policy_blocked)" in out
    assert "deploy to staging and run the smoke tests first. Consider instead: deploy_staging." in out
    paused, resumed = out.split("resumed in a fresh graph from langgraph_integration.checkpoints.db")
    assert "graph paused: send_release_notes needs approval (ticket " in paused
    assert "side effects so far: read_build_status 1, delete_branch 0, deploy 0, deploy_staging 1" in paused
    assert "approved ticket " in paused and "(send_release_notes) by alice" in paused  # by the real `acp` CLI
    assert "send_release_notes -> ran: sent release notes to team@example.com" in resumed
    assert (
        "side effects: read_build_status 1, delete_branch 0, deploy 0, deploy_staging 1, send_release_notes 1"
        in resumed
    )
    assert "control plane: 6 decisions, 3 settled" in resumed and "verify: ok=True" in resumed
    assert (copy / "langgraph_integration.db").exists() and (copy / "langgraph_integration.checkpoints.db").exists()
