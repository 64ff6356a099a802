"""LangGraph integration: a release agent's tool calls go through the control plane, and one waits for a human.

Run it from the repository root with `python examples/langgraph_integration.py` (needs
`pip install agent-control-plane[langgraph]`). No API key and no network: a scripted "model" node stands in for the
LLM and answers with the tool calls an LLM would make. The tools run through `GovernedToolNode`:

1. the model asks for three calls: a read (allowed: it runs), a branch deletion (blocked: the model reads why) and
   a production deploy (steered: the model reads the guidance and the alternative);
2. it re-plans: it deploys to staging (auto-approved) and sends the release notes, which need a human. The graph
   pauses with `interrupt()`; its state waits in a SQLite checkpoint and the agent's graph object is dropped;
3. a human approves the ticket with `acp tickets approve`, in another process;
4. a graph built afresh resumes from the checkpoint with `Command(resume={"ticket_id": …})`: the notes are sent
   once, and the deploy and the read are not repeated.

It starts from a fresh `langgraph_integration.db` and `langgraph_integration.checkpoints.db` beside this file each
time (set ACP_DATABASE_URL to keep the control plane in another database).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import tools_condition
from langgraph.types import Command

from agent_control_plane import ControlPlaneFacade
from agent_control_plane.integrations import ToolGate
from agent_control_plane.integrations.langgraph import GovernedToolNode

HERE = Path(__file__).resolve().parent
DATABASE = HERE / "langgraph_integration.db"
CHECKPOINTS = HERE / "langgraph_integration.checkpoints.db"
THREAD = {"configurable": {"thread_id": "release-v1.4.2"}}

POLICY = {
    "default_tier": "always_approve",  # anything not listed needs a human
    "actions": {
        "read_*": "unrestricted",
        "delete_*": "blocked",
        "deploy": "unrestricted",
        "deploy_staging": "auto_approve",
    },
    "rules": [
        {
            "name": "staging-first",
            "when": {"field": "resource", "glob": "prod/*"},
            "tier": "steer",
            "guidance": "deploy to staging and run the smoke tests first",
            "alternatives": ["deploy_staging"],
        }
    ],
}

side_effects: Counter[str] = Counter()


@tool
def read_build_status(ref: str) -> str:
    """Read the CI status of a git ref."""
    side_effects["read_build_status"] += 1
    return f"build {ref} is green"


@tool
def delete_branch(name: str) -> str:
    """Delete a git branch."""
    side_effects["delete_branch"] += 1
    return f"deleted {name}"


@tool
def deploy(ref: str, target: str) -> str:
    """Deploy a ref to a target."""
    side_effects["deploy"] += 1
    return f"deployed {ref} to {target}"


@tool
def deploy_staging(ref: str, target: str) -> str:
    """Deploy a ref to a staging target."""
    side_effects["deploy_staging"] += 1
    return f"deployed {ref} to {target}"


@tool
def send_release_notes(to: str, ref: str) -> str:
    """Email the release notes."""
    side_effects["send_release_notes"] += 1
    return f"sent release notes to {to}"


TOOLS: list[BaseTool] = [read_build_status, delete_branch, deploy, deploy_staging, send_release_notes]


def model(state: MessagesState) -> dict[str, list[BaseMessage]]:
    """Stands in for the LLM: a first plan, a re-plan after reading the steer, then a summary."""
    turn = sum(isinstance(message, AIMessage) for message in state["messages"])
    if turn == 0:
        calls = [
            {"name": "read_build_status", "args": {"ref": "v1.4.2"}, "id": "call-1"},
            {"name": "delete_branch", "args": {"name": "main"}, "id": "call-2"},
            {"name": "deploy", "args": {"ref": "v1.4.2", "target": "prod/web"}, "id": "call-3"},
        ]
        return {"messages": [AIMessage("", id="ai-1", tool_calls=calls)]}
    steered = any(
        isinstance(m, ToolMessage) and "Consider instead: deploy_staging" in str(m.content) for m in state["messages"]
    )
    if turn == 1 and steered:
        calls = [
            {"name": "deploy_staging", "args": {"ref": "v1.4.2", "target": "staging/web"}, "id": "call-4"},
            {"name": "send_release_notes", "args": {"to": "team@example.com", "ref": "v1.4.2"}, "id": "call-5"},
        ]
        return {"messages": [AIMessage("", id="ai-2", tool_calls=calls)]}
    return {"messages": [AIMessage("v1.4.2 is on staging and the team has the notes.", id=f"ai-{turn + 1}")]}


def build_graph(cp: ControlPlaneFacade, session_id: str, checkpointer: SqliteSaver) -> Any:
    gate = ToolGate(cp, session_id, agent_id="release-bot", resource_of=lambda tool, args: args.get("target"))
    builder = StateGraph(MessagesState)
    builder.add_node("model", model)
    builder.add_node("tools", GovernedToolNode(TOOLS, gate))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=checkpointer)


def show(graph: Any, graph_input: Any) -> dict[str, Any] | None:
    """Stream the graph, printing what the model asks and what each tool call gave; the interrupt, if it pauses."""
    paused = None
    for update in graph.stream(graph_input, THREAD, stream_mode="updates"):
        for node, change in update.items():
            if node == "__interrupt__":
                paused = change[0].value
                continue
            for message in (change or {}).get("messages", []):
                if isinstance(message, AIMessage) and message.tool_calls:
                    print(f"model asks for {', '.join(call['name'] for call in message.tool_calls)}")
                elif isinstance(message, AIMessage):
                    print(f"model: {message.content}")
                elif isinstance(message, ToolMessage):
                    verdict = "refused" if message.status == "error" else "ran"
                    print(f"  {message.name} -> {verdict}: {message.content}")
    return paused


def approve_from_another_process(url: str, ticket_id: str) -> None:
    """What a human does from any shell: `acp tickets approve TICKET --by alice`."""
    command = "import sys; from agent_control_plane.cli import main; main(sys.argv[1:])"
    argv = ["tickets", "approve", ticket_id, "--by", "alice", "--comment", "notes look right"]
    print(f"\nhuman: acp {' '.join(argv)}")
    env = {**os.environ, "ACP_DATABASE_URL": url}
    done = subprocess.run([sys.executable, "-c", command, *argv], env=env, capture_output=True, text=True, check=True)
    for line in done.stdout.strip().splitlines():
        print(f"  {line}")


def counts() -> str:
    return ", ".join(f"{tool.name} {side_effects[tool.name]}" for tool in TOOLS)


def main() -> None:
    for leftover in HERE.glob("langgraph_integration.checkpoints.db*"):
        leftover.unlink()
    url = os.environ.get("ACP_DATABASE_URL")
    if url is None:
        for leftover in HERE.glob("langgraph_integration.db*"):
            leftover.unlink()
        url = f"sqlite:///{DATABASE}"

    with ControlPlaneFacade.from_database_url(url, policy=POLICY) as cp:
        cp.setup()
        sid = cp.open_session("release v1.4.2", agent_id="release-bot")
        print(f"session {sid}\ncheckpoints {CHECKPOINTS.name}\n")

        # The agent process: runs until the graph pauses for a human, then lets go of the graph.
        with sqlite3.connect(CHECKPOINTS, check_same_thread=False) as conn:
            paused = show(build_graph(cp, sid, SqliteSaver(conn)), {"messages": [HumanMessage("ship v1.4.2")]})
        conn.close()
        assert paused is not None, "the release notes need a human: the graph must pause"
        print(f"graph paused: {paused['tool']} needs approval (ticket {paused['ticket_id']})")
        print(f"  the model would read: {paused['message']}")
        # deploy_staging has run already; its ToolMessage joins the state with the others when the node finishes.
        print(f"  side effects so far: {counts()}")

        approve_from_another_process(url, paused["ticket_id"])

        # Later, anywhere: a graph built afresh picks the run up from the checkpoint file.
        print(f"\nresumed in a fresh graph from {CHECKPOINTS.name}")
        with sqlite3.connect(CHECKPOINTS, check_same_thread=False) as conn:
            again = show(build_graph(cp, sid, SqliteSaver(conn)), Command(resume={"ticket_id": paused["ticket_id"]}))
        conn.close()
        assert again is None, again

        print(f"\nside effects: {counts()}")
        events = cp.replay(sid)
        decided = [e.payload for e in events if e.kind == "proposal.decided"]
        print(f"control plane: {len(decided)} decisions, {sum(e.kind == 'proposal.settled' for e in events)} settled")
        for payload in decided:
            print(f"  {payload['action']:<19} {payload['tier']:<15} {payload['code']}")
        print(f"verify: ok={cp.verify(sid).ok}")

    assert side_effects == Counter(read_build_status=1, deploy_staging=1, send_release_notes=1), side_effects


if __name__ == "__main__":
    main()
