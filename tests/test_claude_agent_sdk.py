"""The Claude Agent SDK adapter, driven the way the SDK drives it, with the SDK's own types.

Running a real agent needs the Claude Code CLI and an API key, so these tests call the `can_use_tool` callback and
the hooks registered in `ClaudeAgentOptions` exactly as the SDK's control protocol does (a `ToolPermissionContext`,
hook input dicts, `{"signal": None}`), and one end-to-end test runs the SDK's real `query()` over a `Transport`
that plays the CLI's side of that protocol.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import (
    BaseHookInput,
    ClaudeAgentOptions,
    HookMatcher,
    PermissionResultAllow,
    PermissionResultDeny,
    PostToolUseFailureHookInput,
    PostToolUseHookInput,
    PreToolUseHookInput,
    ResultMessage,
    ToolPermissionContext,
    Transport,
    query,
)
from claude_agent_sdk.types import HookEvent, SyncHookJSONOutput

from agent_control_plane import AsyncControlPlaneFacade, ControlPlaneFacade
from agent_control_plane.integrations import ToolGate
from agent_control_plane.integrations.claude_agent_sdk import ClaudeAgentGovernor, Via, governed_options
from conftest import Backend

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "claude_agent_sdk_integration.py"
POLICY = {
    "default_tier": "always_approve",
    "actions": {"Read": "unrestricted", "mcp__ops__deploy*": "unrestricted", "mcp__ops__delete_*": "blocked"},
    "rules": [
        {
            "name": "staging-first",
            "when": {"field": "resource", "glob": "prod/*"},
            "tier": "steer",
            "guidance": "deploy to staging and run the smoke tests first",
            "alternatives": ["mcp__ops__deploy_staging"],
        }
    ],
}
READ = ("Read", {"file_path": "/work/README.md"})
DELETE = ("mcp__ops__delete_repo", {"name": "app"})
DEPLOY = ("mcp__ops__deploy", {"target": "prod/web"})
LAUNCH = ("mcp__ops__launch", {"rocket": "r1"})


def _target(tool: str, args: Any) -> str | None:
    found = args.get("target")
    return None if found is None else str(found)


@pytest.fixture
def plane(backend: Backend, table_prefix: str) -> Iterator[ControlPlaneFacade]:
    with ControlPlaneFacade.from_database_url(backend.url, policy=POLICY, table_prefix=table_prefix) as cp:
        cp.setup()
        yield cp


def _gate(cp: ControlPlaneFacade, *, approval_timeout: float = 0) -> ToolGate:
    sid = cp.open_session("claude run", agent_id="claude")
    return ToolGate(cp, sid, agent_id="claude", approval_timeout=approval_timeout, resource_of=_target)


def _settled(cp: ControlPlaneFacade, sid: str) -> list[dict[str, Any]]:
    return [frame.payload for frame in cp.replay(sid) if frame.kind == "proposal.settled"]


# calling the options' pieces the way the SDK's control protocol does ----------------------------------------------
async def _ask(options: ClaudeAgentOptions, tool: str, args: dict[str, Any], tool_use_id: str) -> Any:
    assert options.can_use_tool is not None
    return await options.can_use_tool(tool, args, ToolPermissionContext(suggestions=[], tool_use_id=tool_use_id))


BASE: BaseHookInput = {"session_id": "claude-1", "transcript_path": "/tmp/claude-1.jsonl", "cwd": "/work"}


def _pre(tool: str, args: dict[str, Any], tool_use_id: str) -> PreToolUseHookInput:
    return {
        "session_id": BASE["session_id"],
        "transcript_path": BASE["transcript_path"],
        "cwd": BASE["cwd"],
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": tool,
        "tool_input": args,
        "tool_use_id": tool_use_id,
    }


def _post(tool: str, args: dict[str, Any], tool_use_id: str, response: Any) -> PostToolUseHookInput:
    return {
        "session_id": BASE["session_id"],
        "transcript_path": BASE["transcript_path"],
        "cwd": BASE["cwd"],
        "hook_event_name": "PostToolUse",
        "tool_name": tool,
        "tool_input": args,
        "tool_response": response,
        "tool_use_id": tool_use_id,
        "duration_ms": 3,
    }


def _failure(tool: str, args: dict[str, Any], tool_use_id: str, error: str) -> PostToolUseFailureHookInput:
    return {
        "session_id": BASE["session_id"],
        "transcript_path": BASE["transcript_path"],
        "cwd": BASE["cwd"],
        "hook_event_name": "PostToolUseFailure",
        "tool_name": tool,
        "tool_input": args,
        "tool_use_id": tool_use_id,
        "error": error,
    }


def _matches(matcher: HookMatcher, tool: str) -> bool:
    return matcher.matcher is None or re.fullmatch(matcher.matcher, tool) is not None


async def _hook(options: ClaudeAgentOptions, event: HookEvent, data: Any) -> list[SyncHookJSONOutput]:
    assert options.hooks is not None
    outputs: list[Any] = []
    for matcher in options.hooks.get(event, []):
        if _matches(matcher, data["tool_name"]):
            outputs += [await hook(data, data["tool_use_id"], {"signal": None}) for hook in matcher.hooks]
    return outputs


# the decisions --------------------------------------------------------------------------------------------------
def test_an_allowed_call_is_allowed_and_the_post_tool_use_hook_settles_it_as_succeeded(
    plane: ControlPlaneFacade,
) -> None:
    gate = _gate(plane)
    options = ClaudeAgentOptions(**governed_options(gate, via="can_use_tool"), allowed_tools=[])

    async def run() -> None:
        allowed = await _ask(options, *READ, "toolu_1")
        assert allowed == PermissionResultAllow()  # the SDK then sends the original input
        content = [{"type": "text", "text": "# agent-control-plane"}]
        assert await _hook(options, "PostToolUse", _post(*READ, "toolu_1", content)) == [{}]

    asyncio.run(run())
    [settled] = _settled(plane, gate.session_id)
    assert settled["outcome"] == "succeeded" and settled["result"] == {"output": "# agent-control-plane"}
    assert plane.verify(gate.session_id).ok


def test_a_denied_call_is_refused_with_the_policy_reason_and_nothing_is_settled(plane: ControlPlaneFacade) -> None:
    gate = _gate(plane)
    by_callback = ClaudeAgentOptions(**governed_options(gate, via="can_use_tool"))
    by_hook = ClaudeAgentOptions(**governed_options(gate, via="hooks"))

    async def run() -> None:
        denied = await _ask(by_callback, *DELETE, "toolu_1")
        assert isinstance(denied, PermissionResultDeny) and not denied.interrupt
        assert denied.message.startswith("The tool call 'mcp__ops__delete_repo' was denied (policy_blocked): ")
        [output] = await _hook(by_hook, "PreToolUse", _pre(*DELETE, "toolu_2"))
        assert output == {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": denied.message,
            }
        }

    asyncio.run(run())
    assert _settled(plane, gate.session_id) == []


def test_a_steered_call_is_denied_with_the_guidance_and_alternatives_claude_re_plans_with(
    plane: ControlPlaneFacade,
) -> None:
    gate = _gate(plane)
    by_callback = ClaudeAgentOptions(**governed_options(gate, via="can_use_tool"))
    by_hook = ClaudeAgentOptions(**governed_options(gate, matcher="mcp__ops__.*"))

    async def run() -> None:
        steered = await _ask(by_callback, *DEPLOY, "toolu_1")
        assert isinstance(steered, PermissionResultDeny) and not steered.interrupt
        assert "steer; deploy to staging and run the smoke tests first." in steered.message
        assert steered.message.endswith("Consider instead: mcp__ops__deploy_staging.")
        [output] = await _hook(by_hook, "PreToolUse", _pre(*DEPLOY, "toolu_2"))
        assert output["hookSpecificOutput"] == {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": steered.message,
        }
        assert await _hook(by_hook, "PreToolUse", _pre(*READ, "toolu_3")) == []  # the matcher leaves Read alone
        replanned = await _ask(by_callback, "mcp__ops__deploy_staging", {"target": "staging/web"}, "toolu_4")
        assert isinstance(replanned, PermissionResultAllow)

    asyncio.run(run())


def _decide_first_pending(url: str, prefix: str, verdict: str, done: Any) -> None:
    with ControlPlaneFacade.from_database_url(url, table_prefix=prefix) as cp:
        for _ in range(1200):
            tickets = cp.list_tickets(status="pending")
            if tickets:
                ticket_id = tickets[0].ticket_id
                if verdict == "approve":
                    cp.approve(ticket_id, approver="alice")
                else:
                    cp.deny(ticket_id, approver="alice", reason="not during the release freeze")
                done.put(ticket_id)
                return
            time.sleep(0.05)


def _human_in_another_process(backend: Backend, prefix: str, verdict: str) -> tuple[Any, Any]:
    ctx = multiprocessing.get_context("spawn")
    done = ctx.Queue()
    process = ctx.Process(target=_decide_first_pending, args=(backend.url, prefix, verdict, done))
    process.start()
    return process, done


def test_a_waiting_callback_runs_the_call_once_a_human_in_another_process_approves_it(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    gate = _gate(plane, approval_timeout=60)
    options = ClaudeAgentOptions(**governed_options(gate, via="can_use_tool"))
    human, done = _human_in_another_process(backend, table_prefix, "approve")

    async def run() -> Any:
        answer = await _ask(options, *LAUNCH, "toolu_1")
        if answer == PermissionResultAllow():
            await _hook(options, "PostToolUse", _post(*LAUNCH, "toolu_1", {"launched": "r1"}))
        return answer

    answer = asyncio.run(run())
    human.join(20)
    assert answer == PermissionResultAllow(), f"{answer} (the approver process exited with {human.exitcode})"
    ticket_id = done.get(timeout=5)
    assert plane.get_ticket(ticket_id).status == "consumed"
    [settled] = _settled(plane, gate.session_id)
    assert settled["outcome"] == "succeeded" and settled["result"] == {"output": '{"launched": "r1"}'}


def test_a_waiting_hook_denies_the_call_with_the_reason_of_the_human_who_denied_it(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    gate = _gate(plane, approval_timeout=60)
    options = ClaudeAgentOptions(**governed_options(gate))
    [pre_tool_use] = options.hooks["PreToolUse"] if options.hooks else []
    assert pre_tool_use.timeout == 90 and pre_tool_use.on_failure == "block"  # the CLI waits as long as the gate
    human, done = _human_in_another_process(backend, table_prefix, "deny")
    [output] = asyncio.run(_hook(options, "PreToolUse", _pre(*LAUNCH, "toolu_1")))
    human.join(20)
    assert human.exitcode == 0, f"{output} (the denier process exited with {human.exitcode})"
    ticket_id = done.get(timeout=5)
    decision = output["hookSpecificOutput"]
    assert decision["permissionDecision"] == "deny"  # type: ignore[typeddict-item]
    reason = decision["permissionDecisionReason"]  # type: ignore[typeddict-item]
    assert reason == (
        "The tool call 'mcp__ops__launch' was denied (approval_denied): denied by alice: not during the release freeze"
    )
    assert plane.get_ticket(ticket_id).status == "denied" and _settled(plane, gate.session_id) == []


def test_without_a_wait_a_call_needing_approval_is_denied_with_its_ticket_and_runs_when_made_again_after_approval(
    plane: ControlPlaneFacade,
) -> None:
    gate = _gate(plane)
    by_callback = ClaudeAgentOptions(**governed_options(gate, via="can_use_tool"))
    by_hook = ClaudeAgentOptions(**governed_options(gate))

    async def run() -> None:
        pending = await _ask(by_callback, *LAUNCH, "toolu_1")
        assert isinstance(pending, PermissionResultDeny) and not pending.interrupt
        [ticket] = plane.list_tickets(status="pending")
        assert pending.message == (
            "The tool call 'mcp__ops__launch' needs a human's approval and has not run yet "
            f"(ticket {ticket.ticket_id}). Do not retry it; wait for the decision or continue with other work. "
            "Once a human has approved it, call the tool again with exactly the same arguments: the approved call "
            "then runs, once."
        )
        [output] = await _hook(by_hook, "PreToolUse", _pre(*LAUNCH, "toolu_2"))  # the same call: the same ticket
        assert output["hookSpecificOutput"]["permissionDecisionReason"] == pending.message  # type: ignore[typeddict-item]
        assert output["systemMessage"] == (
            f"The control plane holds 'mcp__ops__launch' for a human's approval: ticket {ticket.ticket_id} "
            f"(acp tickets approve {ticket.ticket_id})."
        )
        plane.approve(ticket.ticket_id, approver="alice")
        assert await _ask(by_callback, *LAUNCH, "toolu_3") == PermissionResultAllow()
        await _hook(by_callback, "PostToolUse", _post(*LAUNCH, "toolu_3", "r1 is up"))
        again = await _ask(by_callback, *LAUNCH, "toolu_4")  # the approval was for one run
        assert isinstance(again, PermissionResultDeny) and "needs a human's approval" in again.message

    asyncio.run(run())
    [settled] = _settled(plane, gate.session_id)
    assert settled["action"] == "mcp__ops__launch" and settled["outcome"] == "succeeded"


def test_a_tool_that_fails_or_reports_an_error_is_settled_as_failed(plane: ControlPlaneFacade) -> None:
    gate = _gate(plane)
    options = ClaudeAgentOptions(**governed_options(gate))

    async def run() -> None:
        for tool_use_id in ("toolu_1", "toolu_2"):
            [allowed] = await _hook(options, "PreToolUse", _pre(*READ, tool_use_id))
            assert allowed["hookSpecificOutput"]["permissionDecision"] == "allow"  # type: ignore[typeddict-item]
        await _hook(options, "PostToolUseFailure", _failure(*READ, "toolu_1", "File does not exist."))
        refused = {"content": [{"type": "text", "text": "permission denied"}], "isError": True}
        await _hook(options, "PostToolUse", _post(*READ, "toolu_2", refused))

    asyncio.run(run())
    assert [(s["outcome"], s["result"]) for s in _settled(plane, gate.session_id)] == [
        ("failed", {"error": "File does not exist."}),
        ("failed", {"error": "permission denied"}),
    ]


def test_a_kill_switch_denies_the_call_and_interrupts_the_run(plane: ControlPlaneFacade) -> None:
    gate = _gate(plane)
    by_callback = ClaudeAgentOptions(**governed_options(gate, via="can_use_tool"))
    by_hook = ClaudeAgentOptions(**governed_options(gate))
    plane.kill_session(gate.session_id, reason="runaway agent", by="ops")

    async def run() -> None:
        denied = await _ask(by_callback, *READ, "toolu_1")
        assert isinstance(denied, PermissionResultDeny) and denied.interrupt
        assert "(killed)" in denied.message and "runaway agent" in denied.message
        [output] = await _hook(by_hook, "PreToolUse", _pre(*READ, "toolu_2"))
        assert output["continue_"] is False and output["stopReason"] == denied.message

    asyncio.run(run())


def test_a_call_the_control_plane_cannot_decide_is_denied(plane: ControlPlaneFacade) -> None:
    gate = ToolGate(plane, "no-such-session")
    by_callback = ClaudeAgentOptions(**governed_options(gate, via="can_use_tool"))
    by_hook = ClaudeAgentOptions(**governed_options(gate))

    async def run() -> None:
        denied = await _ask(by_callback, *READ, "toolu_1")
        assert isinstance(denied, PermissionResultDeny)
        assert denied.message.startswith("The tool call 'Read' was not run: the control plane could not decide it")
        [output] = await _hook(by_hook, "PreToolUse", _pre(*READ, "toolu_2"))
        assert output["hookSpecificOutput"]["permissionDecision"] == "deny"  # type: ignore[typeddict-item]

    asyncio.run(run())


def test_allowed_calls_that_never_report_back_are_settled_when_the_run_ends(plane: ControlPlaneFacade) -> None:
    gate = _gate(plane)
    governor = ClaudeAgentGovernor(gate)
    options = ClaudeAgentOptions(**governor.options(via="can_use_tool"))

    async def run() -> None:
        await _ask(options, *READ, "toolu_1")
        await _ask(options, *READ, "toolu_2")
        await _hook(options, "PostToolUse", _post(*READ, "toolu_2", "text"))
        assert governor.unsettled == 1
        await _hook(options, "PostToolUse", _post(*READ, "toolu_unknown", "text"))  # not ours: nothing to settle
        assert await governor.settle_unreported() == 1 and governor.unsettled == 0

    asyncio.run(run())
    assert [(s["outcome"], s["result"]) for s in _settled(plane, gate.session_id)] == [
        ("succeeded", {"output": "text"}),
        ("failed", {"error": "the tool call never reported a result"}),
    ]


def test_the_options_register_the_hooks_beside_the_hosts_own_and_refuse_what_cannot_work(
    plane: ControlPlaneFacade,
) -> None:
    gate = _gate(plane)

    async def audit(data: Any, tool_use_id: str | None, context: Any) -> SyncHookJSONOutput:
        return {}

    own: dict[HookEvent, list[HookMatcher]] = {
        "PostToolUse": [HookMatcher(hooks=[audit])],
        "Stop": [HookMatcher(hooks=[audit])],
    }
    pieces = governed_options(gate, hooks=own)
    assert "can_use_tool" not in pieces
    hooks = pieces["hooks"]
    assert set(hooks) == {"PreToolUse", "PostToolUse", "PostToolUseFailure", "Stop"}
    assert [matcher.hooks[0] for matcher in hooks["PostToolUse"]][1] is audit
    assert hooks["PreToolUse"][0].timeout is None  # no approval wait: the CLI's default
    by_callback = governed_options(gate, via="can_use_tool")
    assert set(by_callback) == {"can_use_tool", "hooks"} and "PreToolUse" not in by_callback["hooks"]
    with pytest.raises(ValueError, match="takes no matcher"):
        governed_options(gate, via="can_use_tool", matcher="Bash")
    with pytest.raises(ValueError, match="via must be"):
        governed_options(gate, via="both")  # type: ignore[arg-type]


# the SDK's own query() loop, over a transport playing the CLI -----------------------------------------------------
@dataclass
class ToolCall:
    name: str
    args: dict[str, Any]
    run: Callable[[dict[str, Any]], Any]


class ScriptedClaudeCode(Transport):
    """Plays the Claude Code CLI's side of the SDK's control protocol for one turn of scripted tool calls.

    It answers `initialize` (learning the hook callback ids), then for each call asks the SDK what the real CLI
    asks: the `PreToolUse` hooks when any are registered, else `can_use_tool`; runs the tool when allowed and reports
    it through `PostToolUse` or `PostToolUseFailure`; and ends the turn with a `result` message. `seen` is what
    Claude would have read for each call.
    """

    def __init__(self, calls: list[ToolCall]) -> None:
        self.calls = calls
        self.seen: list[str] = []
        self.hooks: dict[str, list[dict[str, Any]]] = {}
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._turn: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        pass

    def is_ready(self) -> bool:
        return True

    async def write(self, data: str) -> None:
        for line in data.splitlines():
            message = json.loads(line)
            if message["type"] == "control_request" and message["request"]["subtype"] == "initialize":
                self.hooks = message["request"]["hooks"] or {}
                answer = {"commands": [], "hook_on_failure_supported": True}
                reply = {"subtype": "success", "request_id": message["request_id"], "response": answer}
                await self._outbox.put({"type": "control_response", "response": reply})
            elif message["type"] == "control_response":
                self._answers.pop(message["response"]["request_id"]).set_result(message["response"])
            elif message["type"] == "user":
                self._turn = asyncio.create_task(self._play())

    async def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        request_id = f"cli_{len(self.seen)}_{len(self._answers)}_{request['subtype']}_{id(request)}"
        self._answers[request_id] = asyncio.get_running_loop().create_future()
        await self._outbox.put({"type": "control_request", "request_id": request_id, "request": request})
        answer = await self._answers[request_id]
        assert answer["subtype"] == "success", answer
        response: dict[str, Any] = answer["response"]
        return response

    async def _hooks(self, event: str, tool: str, data: dict[str, Any], tool_use_id: str) -> list[dict[str, Any]]:
        ids = [
            callback_id
            for matcher in self.hooks.get(event, [])
            if matcher["matcher"] is None or re.fullmatch(matcher["matcher"], tool)
            for callback_id in matcher["hookCallbackIds"]
        ]
        request = {
            "subtype": "hook_callback",
            "input": {**BASE, "hook_event_name": event, **data},
            "tool_use_id": tool_use_id,
        }
        return [await self._ask({**request, "callback_id": callback_id}) for callback_id in ids]

    async def _play(self) -> None:
        for number, call in enumerate(self.calls, 1):
            tool_use_id = f"toolu_{number:02}"
            data = {"tool_name": call.name, "tool_input": call.args, "tool_use_id": tool_use_id}
            if "PreToolUse" in self.hooks:
                [output] = await self._hooks("PreToolUse", call.name, data, tool_use_id)
                decision = output["hookSpecificOutput"]
                allowed, text = decision["permissionDecision"] == "allow", decision["permissionDecisionReason"]
            else:
                permission = {"subtype": "can_use_tool", "tool_name": call.name, "input": call.args}
                answer = await self._ask({**permission, "permission_suggestions": None, "tool_use_id": tool_use_id})
                allowed, text = answer["behavior"] == "allow", answer.get("message", "")
                assert not allowed or answer["updatedInput"] == call.args  # the call runs as it was decided
            if not allowed:
                self.seen.append(f"{call.name}: {text}")
                continue
            try:
                response = call.run(call.args)
            except Exception as exc:
                await self._hooks("PostToolUseFailure", call.name, {**data, "error": str(exc)}, tool_use_id)
                self.seen.append(f"{call.name}: error: {exc}")
            else:
                await self._hooks("PostToolUse", call.name, {**data, "tool_response": response}, tool_use_id)
                self.seen.append(f"{call.name}: {response}")
        result = {"subtype": "success", "duration_ms": 5, "duration_api_ms": 4, "is_error": False, "num_turns": 1}
        await self._outbox.put({"type": "result", **result, "session_id": "claude-1", "result": "done"})

    async def read_messages(self) -> AsyncIterator[dict[str, Any]]:
        while (message := await self._outbox.get()) is not None:
            yield message

    async def end_input(self) -> None:
        await self._outbox.put(None)

    async def close(self) -> None:
        await self._outbox.put(None)


def _broken(args: dict[str, Any]) -> Any:
    raise RuntimeError("connection reset by upstream")


@pytest.mark.parametrize("via", ["hooks", "can_use_tool"])
def test_a_query_through_the_sdk_governs_each_tool_call_and_settles_what_ran(
    backend: Backend, table_prefix: str, via: Via
) -> None:
    async def run() -> tuple[list[str], list[Any], list[dict[str, Any]]]:
        cp = AsyncControlPlaneFacade.from_database_url(backend.async_url, policy=POLICY, table_prefix=table_prefix)
        await cp.setup()
        sid = await cp.open_session("claude run", agent_id="claude")
        gate = ToolGate(cp, sid, agent_id="claude", resource_of=_target)
        cli = ScriptedClaudeCode(
            [
                ToolCall(*READ, lambda args: "# agent-control-plane"),
                ToolCall(*DELETE, lambda args: "deleted"),
                ToolCall(*DEPLOY, lambda args: "deployed"),
                ToolCall("mcp__ops__deploy_staging", {"target": "staging/web"}, _broken),
            ]
        )
        options = ClaudeAgentOptions(**governed_options(gate, via=via))
        messages = [message async for message in query(prompt="ship it", options=options, transport=cli)]
        settled = [frame.payload for frame in await cp.replay(sid) if frame.kind == "proposal.settled"]
        await cp.close()
        return cli.seen, messages, settled

    seen, messages, settled = asyncio.run(run())
    assert seen[0] == "Read: # agent-control-plane"
    assert seen[1].startswith("mcp__ops__delete_repo: The tool call 'mcp__ops__delete_repo' was denied (policy_b")
    assert seen[2].endswith("Consider instead: mcp__ops__deploy_staging.")
    assert seen[3] == "mcp__ops__deploy_staging: error: connection reset by upstream"
    assert isinstance(messages[-1], ResultMessage) and messages[-1].result == "done"
    assert [(s["action"], s["outcome"]) for s in settled] == [
        ("Read", "succeeded"),
        ("mcp__ops__deploy_staging", "failed"),
    ]


# packaging and the example ----------------------------------------------------------------------------------------
def test_without_the_sdk_the_module_says_how_to_install_it(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "sys.modules['claude_agent_sdk'] = None  # as if the package were not installed\n"
        "try:\n"
        "    import agent_control_plane.integrations.claude_agent_sdk\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout == (
        "the Claude Agent SDK adapter needs the `claude-agent-sdk` package: "
        "pip install 'agent-control-plane[claude-agent-sdk]'\n"
    ), done.stderr


def test_the_example_runs_offline_and_shows_what_claude_reads(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("ACP_DATABASE_URL", "ANTHROPIC_API_KEY")}
    env["ACP_DATABASE_URL"] = f"sqlite:///{tmp_path / 'example.db'}"
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    out = done.stdout
    assert "  hooks['PreToolUse'] = matcher None -> ['pre_tool_use'], on_failure=block\n" in out
    assert "  can_use_tool = can_use_tool\n" in out
    assert 'Claude calls Read {"file_path": "README.md"}\n  -> allow; the tool runs' in out
    assert "  -> deny; Claude reads: The tool call 'mcp__ops__delete_repo' was denied (policy_blocked): " in out
    assert "Consider instead: mcp__ops__deploy_staging.\n" in out
    assert "  -> deny; Claude reads: The tool call 'mcp__ops__rotate_keys' needs a human's approval" in out
    assert out.count("-> allow (approved by alice); the tool runs") == 2
    assert "proposal.settled     mcp__ops__flush_cache succeeded: cache flushed\n" in out
    assert "verify: ok=True" in out
    assert (tmp_path / "example.db").exists()
