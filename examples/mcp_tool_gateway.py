"""MCP tool gateway: `acp mcp-proxy` governs every tool call an MCP client makes to an upstream MCP server.

Run it with `python examples/mcp_tool_gateway.py` (or from examples/). Offline, no API key: a scripted "model"
calls the tools of `mcp_demo_server.py` through the proxy, which it starts as any MCP host would (a command on
stdio), with the real MCP client. The proxy decides each call with `mcp_gateway_policy.yaml`: an allowed call runs
upstream, a denied or steered one comes back as a tool error the model reads, and a call that needs a human runs
once a human has approved it and the model makes it again. Then the control plane's log of the session is shown.

It starts from a fresh `mcp_tool_gateway.db` next to this file each time (set ACP_DATABASE_URL to use another
database). Needs the MCP extra: `pip install 'agent-control-plane[mcp]'`.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, StdioServerParameters

from agent_control_plane import ControlPlaneFacade

HERE = Path(__file__).resolve().parent
DATABASE = HERE / "mcp_tool_gateway.db"
POLICY = HERE / "mcp_gateway_policy.yaml"
UPSTREAM = HERE / "mcp_demo_server.py"
DECISION = "agent-control-plane/decision"  # where the proxy puts its decision in a result's _meta

# What a model would do: each tool call it makes, in order (it re-plans after the steer, and retries the launch
# once a human has approved it).
PLAN: list[tuple[str, str, dict[str, Any]]] = [
    ("read_file", "read_file", {"path": "README.md"}),
    ("delete_repo", "delete_repo", {"name": "app"}),
    ("deploy", "deploy", {"target": "prod/web"}),
    ("deploy_staging (the model follows the guidance)", "deploy_staging", {"service": "web"}),
    ("launch", "launch", {"rocket": "r1"}),
    ("launch (again, after approval)", "launch", {"rocket": "r1"}),
]


def acp_command() -> str:
    beside = Path(sys.executable).with_name("acp")
    found = str(beside) if beside.exists() else shutil.which("acp")
    if found is None:
        raise SystemExit("the `acp` command is not installed: pip install 'agent-control-plane[mcp]'")
    return found


def text_of(result: types.CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, types.TextContent))


def summary(kind: str, payload: dict[str, Any]) -> str:
    """One line on what an event says."""
    if kind == "session.opened":
        return f"{payload['name']!r} for agent {payload['agent_id']}"
    if kind == "mcp_client_connected":
        client = payload["client"] or {}
        return f"client {client.get('name')} over {payload['transport']}, protocol {payload['protocol_version']}"
    if kind == "proposal.decided":
        where = f" on {payload['resource']}" if payload["resource"] else ""
        return f"{payload['action']}{where} -> {payload['tier']} ({payload['code']})"
    if kind == "proposal.settled":
        result = payload["result"] or {}
        return f"{payload['action']} {payload['outcome']}: {result.get('output') or result.get('error')}"
    if kind.startswith("approval."):
        return f"ticket by {payload['by']}" if "by" in payload else "ticket"
    if kind == "session.status_changed":
        return f"{payload['from']} -> {payload['to']} ({payload['reason']})"
    return ""


async def run_model(proxy: StdioServerParameters, url: str) -> str:
    """Connect to the proxy as an MCP host does, make the plan's calls, print what the model sees; the session id."""
    session_id = ""
    async with Client(proxy, client_info=types.Implementation(name="demo-model", version="1")) as client:
        listed = await client.list_tools()
        print(f"tools the model sees: {', '.join(tool.name for tool in listed.tools)}\n")
        for label, tool, args in PLAN:
            if label.startswith("launch (again"):
                approve_pending_ticket(url, session_id)
            result = await client.call_tool(tool, args)
            decision = (result.meta or {}).get(DECISION, {})
            session_id = decision.get("session_id", session_id)
            print(f"{label} {json.dumps(args)}")
            print(f"  ->  {'isError' if result.is_error else 'ok'}: {text_of(result)}\n")
    return session_id


def approve_pending_ticket(url: str, session_id: str) -> None:
    """The human's part, here in-process; from a shell it is `acp tickets approve TICKET --by alice`."""
    with ControlPlaneFacade.from_database_url(url) as cp:
        [ticket] = cp.list_tickets(status="pending", session_id=session_id)
        cp.approve(ticket.ticket_id, approver="alice", comment="launch window is open")
        print(f"a human approves ticket {ticket.ticket_id} ({ticket.action} {json.dumps(ticket.args)})\n")


def main() -> None:
    url = os.environ.get("ACP_DATABASE_URL")
    if url is None:
        for leftover in HERE.glob("mcp_tool_gateway.db*"):
            leftover.unlink()
        url = f"sqlite:///{DATABASE}"
    with tempfile.TemporaryDirectory() as scratch:
        record = Path(scratch) / "upstream-calls.jsonl"
        record.touch()
        upstream = shlex.join([sys.executable, str(UPSTREAM), "--record", str(record)])
        args = ["mcp-proxy", "--upstream-command", upstream, "--policy", str(POLICY), "--database-url", url]
        args += ["--agent", "release-bot", "--resource-arg", "target"]
        print(f"policy   {POLICY.name}\nupstream {UPSTREAM.name}, behind `acp mcp-proxy` on stdio\n")
        session_id = anyio.run(run_model, StdioServerParameters(command=acp_command(), args=args), url)
        ran = [json.loads(line)["tool"] for line in record.read_text(encoding="utf-8").splitlines()]
    print(f"upstream received: {', '.join(ran)}\n")

    with ControlPlaneFacade.from_database_url(url) as cp:
        events = cp.replay(session_id)
        print(f"the control plane's log of the connection's session ({len(events)} events)")
        for event in events:
            print(f"  {event.seq:>2} {event.kind:<22} {summary(event.kind, event.payload)}")
        report = cp.verify(session_id)
        print(f"verify: ok={report.ok} ({report.events_checked} events checked)")
    assert ran == ["read_file", "deploy_staging", "launch"], ran
    assert report.ok


if __name__ == "__main__":
    main()
