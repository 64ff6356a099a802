"""Claude Agent SDK adapter: every tool call Claude makes is proposed to the control plane before it runs.

`ClaudeAgentGovernor` wraps one `ToolGate` (one control-plane session) and gives the SDK what it asks for: a
`can_use_tool` callback, or a `PreToolUse` hook, that answers allow or deny with a reason Claude reads; and the
`PostToolUse` / `PostToolUseFailure` hooks that settle each allowed call with its outcome. `governed_options(gate)`
returns those as `ClaudeAgentOptions` keyword arguments:

    gate = ToolGate(cp, session_id, agent_id="claude", approval_timeout=120)
    options = ClaudeAgentOptions(**governed_options(gate), allowed_tools=[...])

A denial is the policy's reason, a steer its guidance and alternatives (so Claude re-plans), and a call that needs a
human waits for the ticket up to the gate's `approval_timeout`, then runs if approved or is denied with the human's
reason, or, still undecided, with the ticket id. A kill switch (or a session that is no longer active) also stops
the run. An approved ticket stays good for that exact call: when Claude (or a resumed session) makes it again, it
runs, once.

Needs the SDK: `pip install agent-control-plane[claude-agent-sdk]`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal, TypedDict

from agent_control_plane.integrations._extras import require_extra

try:
    from claude_agent_sdk import (
        CanUseTool,
        HookContext,
        HookInput,
        HookMatcher,
        PermissionResult,
        PermissionResultAllow,
        PermissionResultDeny,
        PreToolUseHookSpecificOutput,
        ToolPermissionContext,
    )
    from claude_agent_sdk.types import HookEvent, SyncHookJSONOutput
except ModuleNotFoundError as exc:  # pragma: no cover - tests run it in a process without the package
    require_extra(exc, ("claude_agent_sdk",), "the Claude Agent SDK adapter", "claude-agent-sdk", "claude-agent-sdk")

from agent_control_plane.integrations._gate import RERUN_AFTER_APPROVAL, GateKind, GateResult, ToolGate
from agent_control_plane.types.decisions import DecisionCode

__all__ = [
    "HOOK_TIMEOUT_MARGIN",
    "STOPPING_CODES",
    "ClaudeAgentGovernor",
    "GovernedOptions",
    "Via",
    "governed_options",
]

logger = logging.getLogger(__name__)

Via = Literal["hooks", "can_use_tool"]
"""Where the decision is taken: a `PreToolUse` hook (every tool call) or `can_use_tool` (calls that would prompt)."""

STOPPING_CODES: frozenset[DecisionCode] = frozenset({DecisionCode.KILLED, DecisionCode.SESSION_NOT_ACTIVE})
"""Denials that end the agent's run instead of letting Claude re-plan: nothing it tries next could run either."""

HOOK_TIMEOUT_MARGIN = 30.0
"""Seconds a `PreToolUse` hook is given beyond the gate's approval wait, so the CLI never times it out first."""


class GovernedOptions(TypedDict, total=False):
    """The `ClaudeAgentOptions` keyword arguments that put a run under the control plane."""

    can_use_tool: CanUseTool
    hooks: dict[HookEvent, list[HookMatcher]]


class ClaudeAgentGovernor:
    """Governs the tool calls of Claude Agent SDK runs through one `ToolGate`.

    Each call is proposed with the tool's name as the action and its input as the arguments (the gate's
    `resource_of` / `cost_of` derive resource and cost). An allowed call is remembered by its `tool_use_id` until
    the `PostToolUse` hook (succeeded, or failed when the response marks an error) or `PostToolUseFailure` hook
    (failed) settles it. Denials whose code is in `stop_on` also interrupt the run.
    """

    def __init__(self, gate: ToolGate, *, stop_on: Collection[DecisionCode] = STOPPING_CODES) -> None:
        self.gate = gate
        self._stop_on = frozenset(stop_on)
        self._open: dict[str, list[GateResult]] = {}

    # deciding -------------------------------------------------------------------------------------------------
    async def can_use_tool(
        self, tool_name: str, tool_input: dict[str, Any], context: ToolPermissionContext
    ) -> PermissionResult:
        """The SDK's `can_use_tool` callback: allow, or deny with the text Claude reads."""
        try:
            result = await self._decide(tool_name, tool_input, context.tool_use_id)
        except Exception as exc:  # fail closed: a call the control plane could not decide does not run
            return PermissionResultDeny(message=_undecided(tool_name, exc))
        if result.allowed:
            return PermissionResultAllow()
        return PermissionResultDeny(message=_message(result), interrupt=self._stops(result))

    async def pre_tool_use(
        self, input_data: HookInput, tool_use_id: str | None, context: HookContext
    ) -> SyncHookJSONOutput:
        """A `PreToolUse` hook: `permissionDecision` allow or deny, with the reason (a denial's is what Claude reads).

        A call waiting for a human also tells the user its ticket (`systemMessage`); a stopping denial ends the run.
        """
        if input_data["hook_event_name"] != "PreToolUse":
            return {}
        tool = input_data["tool_name"]
        try:
            result = await self._decide(tool, input_data["tool_input"], tool_use_id or input_data.get("tool_use_id"))
        except Exception as exc:  # fail closed: a call the control plane could not decide does not run
            reason = _undecided(tool, exc)
            return {"hookSpecificOutput": _pre_tool_use_output("deny", reason)}
        specific = _pre_tool_use_output("allow" if result.allowed else "deny", _message(result))
        output: SyncHookJSONOutput = {"hookSpecificOutput": specific}
        if result.kind is GateKind.PENDING:
            output["systemMessage"] = (
                f"The control plane holds '{tool}' for a human's approval: ticket {result.ticket_id} "
                f"(acp tickets approve {result.ticket_id})."
            )
        if self._stops(result):
            output["continue_"] = False
            output["stopReason"] = _message(result)
        return output

    async def _decide(self, tool: str, tool_input: Mapping[str, Any], tool_use_id: str | None) -> GateResult:
        try:
            result = await self.gate.acheck(tool, tool_input)
        except Exception:
            logger.exception("the control plane could not decide the tool call %r", tool)
            raise
        if result.allowed:
            self._open.setdefault(_key(tool_use_id, tool, tool_input), []).append(result)
        return result

    def _stops(self, result: GateResult) -> bool:
        return result.kind is GateKind.DENY and result.decision.code in self._stop_on

    # settling -------------------------------------------------------------------------------------------------
    async def post_tool_use(
        self, input_data: HookInput, tool_use_id: str | None, context: HookContext
    ) -> SyncHookJSONOutput:
        """A `PostToolUse` hook: settles the allowed call, failed when its response marks an error."""
        if input_data["hook_event_name"] == "PostToolUse":
            response = input_data["tool_response"]
            error = _error_in(response)
            await self._settle(
                tool_use_id or input_data["tool_use_id"],
                input_data["tool_name"],
                input_data["tool_input"],
                output=_text_of(response) if error is None else None,
                error=error,
            )
        return {}

    async def post_tool_use_failure(
        self, input_data: HookInput, tool_use_id: str | None, context: HookContext
    ) -> SyncHookJSONOutput:
        """A `PostToolUseFailure` hook: settles the allowed call as failed, with the tool's error."""
        if input_data["hook_event_name"] == "PostToolUseFailure":
            error = input_data["error"] or "the tool failed"
            if input_data.get("is_interrupt"):
                error = f"interrupted: {error}"
            await self._settle(
                tool_use_id or input_data["tool_use_id"],
                input_data["tool_name"],
                input_data["tool_input"],
                output=None,
                error=error,
            )
        return {}

    async def _settle(
        self, tool_use_id: str | None, tool: str, tool_input: Mapping[str, Any], *, output: Any, error: str | None
    ) -> None:
        result = self._take(tool_use_id, tool, tool_input)
        if result is None:
            logger.warning(
                "tool call %r (%s) ran without an allowed proposal to settle: a permission rule or mode allowed it "
                "before can_use_tool was asked, or another governor decided it",
                tool,
                tool_use_id,
            )
            return
        try:
            await self.gate.asettle(result, output=output, error=error)
        except Exception:  # the call has run; a failed settlement is left to crash recovery, not to the agent
            logger.exception("could not settle the tool call %r (proposal %s)", tool, result.decision.proposal_id)

    def _take(self, tool_use_id: str | None, tool: str, tool_input: Mapping[str, Any]) -> GateResult | None:
        for key in (_key(tool_use_id, tool, tool_input), _key(None, tool, tool_input)):
            waiting = self._open.get(key)
            if waiting:
                result = waiting.pop(0)
                if not waiting:
                    del self._open[key]
                return result
        return None

    @property
    def unsettled(self) -> int:
        """How many allowed calls have not reported back through `PostToolUse` / `PostToolUseFailure` yet."""
        return sum(len(waiting) for waiting in self._open.values())

    async def settle_unreported(self, reason: str = "the tool call never reported a result") -> int:
        """Settle as failed every allowed call that never reported back (a deny rule, an interrupt or a crash of the
        CLI stopped it after the control plane allowed it); returns how many. Call it when a run ends."""
        waiting = [result for results in self._open.values() for result in results]
        self._open.clear()
        for result in waiting:
            await self.gate.asettle(result, error=reason)
        return len(waiting)

    # wiring ---------------------------------------------------------------------------------------------------
    def options(
        self,
        *,
        via: Via = "hooks",
        matcher: str | None = None,
        hooks: Mapping[HookEvent, Sequence[HookMatcher]] | None = None,
    ) -> GovernedOptions:
        """The `ClaudeAgentOptions` keyword arguments that govern a run (see `governed_options`)."""
        timeout = self.gate.approval_timeout + HOOK_TIMEOUT_MARGIN if self.gate.approval_timeout > 0 else None
        ours: dict[HookEvent, list[HookMatcher]] = {}
        pieces: GovernedOptions = {}
        if via == "hooks":
            # on_failure="block": a hook that fails or times out denies the call instead of letting it through.
            ours["PreToolUse"] = [HookMatcher(matcher, [self.pre_tool_use], timeout=timeout, on_failure="block")]
        elif via == "can_use_tool":
            if matcher is not None:
                raise ValueError(
                    "can_use_tool is asked about every tool call that would prompt, so it takes no matcher: narrow "
                    "it with allowed_tools, or use via='hooks' with a matcher"
                )
            pieces["can_use_tool"] = self.can_use_tool
        else:
            raise ValueError(f"via must be 'hooks' or 'can_use_tool', not {via!r}")
        ours["PostToolUse"] = [HookMatcher(matcher, [self.post_tool_use])]
        ours["PostToolUseFailure"] = [HookMatcher(matcher, [self.post_tool_use_failure])]
        for event, matchers in (hooks or {}).items():
            ours.setdefault(event, []).extend(matchers)
        pieces["hooks"] = ours
        return pieces


def governed_options(
    gate: ToolGate,
    *,
    via: Via = "hooks",
    matcher: str | None = None,
    hooks: Mapping[HookEvent, Sequence[HookMatcher]] | None = None,
    stop_on: Collection[DecisionCode] = STOPPING_CODES,
) -> GovernedOptions:
    """`ClaudeAgentOptions` keyword arguments that govern every tool call of a run through `gate`.

    `via="hooks"` (the default) decides in a `PreToolUse` hook, which sees every tool call, even those a permission
    rule or mode would allow; `matcher` (e.g. `"Bash|Write|mcp__.*"`) limits it to some tools. `via="can_use_tool"`
    decides in the `can_use_tool` callback, which the CLI only asks about calls that would prompt (not those
    `allowed_tools`, `permission_mode` or settings already allow). Either way the `PostToolUse` and
    `PostToolUseFailure` hooks settle the allowed calls; the host's own `hooks` are added beside them.
    Use `ClaudeAgentGovernor(gate).options(...)` instead to keep the governor (for `settle_unreported`).
    """
    return ClaudeAgentGovernor(gate, stop_on=stop_on).options(via=via, matcher=matcher, hooks=hooks)


def _key(tool_use_id: str | None, tool: str, tool_input: Mapping[str, Any]) -> str:
    if tool_use_id:
        return f"id:{tool_use_id}"
    return f"call:{tool}:{json.dumps(tool_input, sort_keys=True, default=str)}"


def _message(result: GateResult) -> str:
    """What Claude reads about a call: a refusal's message (a pending one says how the approved call runs), or, for
    an allowed call, the decision's reason (shown to the user, not to Claude)."""
    if result.kind is GateKind.PENDING:
        return f"{result.message} {RERUN_AFTER_APPROVAL}"
    return result.message or result.decision.reason


def _pre_tool_use_output(decision: Literal["allow", "deny"], reason: str) -> PreToolUseHookSpecificOutput:
    return {"hookEventName": "PreToolUse", "permissionDecision": decision, "permissionDecisionReason": reason}


def _undecided(tool: str, exc: Exception) -> str:
    return f"The tool call '{tool}' was not run: the control plane could not decide it ({type(exc).__name__}: {exc})"


def _error_in(response: Any) -> str | None:
    """The error a tool's response reports (`isError` / `is_error`, as MCP results do), or None."""
    if isinstance(response, Mapping) and (response.get("isError") or response.get("is_error")):
        return _text_of(response.get("content", response)) or "the tool reported an error"
    return None


def _text_of(response: Any) -> str:
    """A tool response as text: the text blocks of MCP-style content, or the response as JSON."""
    if isinstance(response, str):
        return response
    blocks = response.get("content") if isinstance(response, Mapping) else response
    if isinstance(blocks, list) and blocks and all(isinstance(b, Mapping) and "text" in b for b in blocks):
        return "\n".join(str(block["text"]) for block in blocks)
    return json.dumps(response, default=str)
