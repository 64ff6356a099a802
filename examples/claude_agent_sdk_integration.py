"""Claude Agent SDK integration: the control plane decides every tool call Claude makes.

Run it with `python examples/claude_agent_sdk_integration.py` (or from examples/). Offline by default, no API key:
it shows the `ClaudeAgentOptions` a host passes to `query()` / `ClaudeSDKClient`, then plays a scripted turn of
tool calls through the `can_use_tool` callback and the `PostToolUse` hook exactly as the SDK calls them, printing
what Claude would read for an allowed, a denied, a steered and an approval-gated call. Then it shows the session's
log. With the `claude` CLI on PATH and ANTHROPIC_API_KEY set, it also runs one small real `query()`.

It starts from a fresh `claude_agent_sdk_integration.db` next to this file each time (set ACP_DATABASE_URL to use
another database). Needs the extra: `pip install 'agent-control-plane[claude-agent-sdk]'`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    PermissionResultAllow,
    ResultMessage,
    TextBlock,
    ToolPermissionContext,
    query,
)

from agent_control_plane import ControlPlaneFacade
from agent_control_plane.integrations import ToolGate
from agent_control_plane.integrations.claude_agent_sdk import ClaudeAgentGovernor, governed_options

HERE = Path(__file__).resolve().parent
DATABASE = HERE / "claude_agent_sdk_integration.db"
POLICY: dict[str, Any] = {
    "default_tier": "always_approve",  # tools nobody named need a human
    "actions": {"Read": "unrestricted", "Grep": "unrestricted", "mcp__ops__delete_*": "blocked"},
    "rules": [
        {
            "name": "staging-first",
            "when": {"field": "resource", "glob": "prod/*"},
            "tier": "steer",
            "guidance": "production deploys go through staging: deploy there and run the smoke tests first",
            "alternatives": ["mcp__ops__deploy_staging"],
        },
        {"name": "staging-deploys", "when": {"field": "resource", "glob": "staging/*"}, "tier": "auto_approve"},
    ],
}

# What Claude does in the scripted turn: each tool call, and what the tool returns when it is allowed to run.
TURN: list[tuple[str, dict[str, Any], Any]] = [
    ("Read", {"file_path": "README.md"}, "# shop-web\nA small web shop."),
    ("mcp__ops__delete_repo", {"name": "shop-web"}, "deleted"),
    ("mcp__ops__deploy", {"target": "prod/web", "ref": "v1.4.2"}, "deployed"),
    ("mcp__ops__deploy_staging", {"target": "staging/web", "ref": "v1.4.2"}, "v1.4.2 is on staging, smoke tests ok"),
    ("mcp__ops__rotate_keys", {"service": "payments"}, "keys rotated"),
    ("mcp__ops__rotate_keys", {"service": "payments"}, "keys rotated"),  # made again after a human approved
]


def target(tool: str, args: Any) -> str | None:
    found = args.get("target")
    return None if found is None else str(found)


def describe(options: ClaudeAgentOptions) -> str:
    lines = [f"  can_use_tool = {getattr(options.can_use_tool, '__name__', None)}"]
    for event, matchers in (options.hooks or {}).items():
        for m in matchers:
            extra = f", timeout {m.timeout:g}s" if m.timeout else ""
            extra += f", on_failure={m.on_failure}" if m.on_failure else ""
            lines.append(f"  hooks[{event!r}] = matcher {m.matcher!r} -> {[h.__name__ for h in m.hooks]}{extra}")
    return "\n".join(lines)


def summary(kind: str, payload: dict[str, Any]) -> str:
    if kind == "proposal.decided":
        return f"{payload['action']} -> {payload['tier']} ({payload['code']})"
    if kind == "proposal.settled":
        result = payload["result"] or {}
        text = str(result.get("output") or result.get("error")).replace("\n", " / ")
        return f"{payload['action']} {payload['outcome']}: {text}"
    if kind.startswith("approval.") and "by" in payload:
        return f"by {payload['by']}"
    return ""


async def call_tool(options: ClaudeAgentOptions, tool: str, args: dict[str, Any], output: Any, tool_use_id: str) -> Any:
    """What the SDK does for one tool call: ask `can_use_tool`; if allowed, run the tool and call `PostToolUse`."""
    assert options.can_use_tool is not None and options.hooks is not None
    answer = await options.can_use_tool(tool, args, ToolPermissionContext(tool_use_id=tool_use_id))
    if isinstance(answer, PermissionResultAllow):
        post = {"hook_event_name": "PostToolUse", "tool_name": tool, "tool_input": args, "tool_response": output}
        base = {"session_id": "claude-1", "transcript_path": "", "cwd": str(HERE), "tool_use_id": tool_use_id}
        for matcher in options.hooks["PostToolUse"]:
            for hook in matcher.hooks:
                await hook({**base, **post}, tool_use_id, {"signal": None})  # type: ignore[arg-type]
    return answer


async def play_turn(cp: ControlPlaneFacade, sid: str, options: ClaudeAgentOptions) -> None:
    approved_by: dict[str, str] = {}
    for number, (tool, args, output) in enumerate(TURN, 1):
        print(f"Claude calls {tool} {json.dumps(args)}")
        answer = await call_tool(options, tool, args, output, f"toolu_{number:02}")
        if isinstance(answer, PermissionResultAllow):
            by = f" (approved by {approved_by.pop(tool)})" if tool in approved_by else ""
            print(f"  -> allow{by}; the tool runs and returns: {output!r}")
        else:
            print(f"  -> deny; Claude reads: {answer.message}")
            if pending := cp.list_tickets(status="pending", session_id=sid):
                # A human answers from anywhere: `acp tickets approve <id>`, the REST API or the dashboard.
                cp.approve(pending[0].ticket_id, approver="alice", comment="rotation is scheduled today")
                approved_by[tool] = "alice"
                print(f"  (alice approves ticket {pending[0].ticket_id}; Claude, told so, makes the call again)")
        print()


async def wait_for_a_human(cp: ControlPlaneFacade, sid: str) -> None:
    """With `approval_timeout`, the callback waits for the decision; here a human approves after a moment."""

    def human() -> None:
        for _ in range(200):
            if tickets := cp.list_tickets(status="pending", session_id=sid):
                cp.approve(tickets[0].ticket_id, approver="alice")
                return
            time.sleep(0.05)

    gate = ToolGate(cp, sid, agent_id="claude", approval_timeout=10, resource_of=target)
    options = ClaudeAgentOptions(**governed_options(gate, via="can_use_tool"))
    print("Claude calls mcp__ops__flush_cache {} (this gate waits up to 10 s for a human)")
    approver = threading.Thread(target=human)
    approver.start()
    answer = await call_tool(options, "mcp__ops__flush_cache", {}, "cache flushed", "toolu_w1")
    approver.join()
    if isinstance(answer, PermissionResultAllow):
        print("  -> allow (approved by alice); the tool runs and returns: 'cache flushed'\n")
    else:
        print(f"  -> deny: {answer.message}; the tool does not run\n")


async def live_query(gate: ToolGate) -> None:
    """One small real run: Claude reads this file under the control plane."""
    options = ClaudeAgentOptions(**ClaudeAgentGovernor(gate).options(), tools=["Read"], max_turns=3, cwd=str(HERE))
    prompt = f"Read {Path(__file__).name} and say in one sentence what it demonstrates."
    async for message in query(prompt=prompt, options=options):
        if isinstance(message, AssistantMessage):
            print("  Claude:", " ".join(block.text for block in message.content if isinstance(block, TextBlock)))
        elif isinstance(message, ResultMessage):
            print(f"  result: {message.subtype}, {message.num_turns} turns")


def main() -> None:
    url = os.environ.get("ACP_DATABASE_URL")
    if url is None:
        for leftover in HERE.glob("claude_agent_sdk_integration.db*"):
            leftover.unlink()
        url = f"sqlite:///{DATABASE}"

    with ControlPlaneFacade.from_database_url(url, policy=POLICY) as cp:
        cp.setup()
        sid = cp.open_session("Claude release assistant", agent_id="claude")
        gate = ToolGate(cp, sid, agent_id="claude", resource_of=target)
        governor = ClaudeAgentGovernor(gate)

        print("Governed by hooks (every tool call), the default:")
        print(describe(ClaudeAgentOptions(**governed_options(gate))))
        print("Governed by can_use_tool (calls that would prompt), used below:")
        options = ClaudeAgentOptions(**governor.options(via="can_use_tool"))
        print(describe(options))
        print("  e.g. query(prompt=..., options=ClaudeAgentOptions(**governed_options(gate), allowed_tools=[...]))\n")

        asyncio.run(play_turn(cp, sid, options))
        asyncio.run(wait_for_a_human(cp, sid))

        if shutil.which("claude") and os.environ.get("ANTHROPIC_API_KEY"):
            print("A real query() with the claude CLI:")
            asyncio.run(live_query(gate))
            print()

        events = cp.replay(sid)
        print(f"event log of session {sid} ({len(events)} events)")
        for event in events:
            print(f"  {event.seq:>2} {event.kind:<20} {summary(event.kind, event.payload)}")
        print(f"verify: ok={cp.verify(sid).ok}")
        settled = [e.payload["action"] for e in events if e.kind == "proposal.settled"]
        assert settled[:4] == ["Read", "mcp__ops__deploy_staging", "mcp__ops__rotate_keys", "mcp__ops__flush_cache"]
        assert governor.unsettled == 0


if __name__ == "__main__":
    main()
