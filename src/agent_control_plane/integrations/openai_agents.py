"""OpenAI Agents SDK adapter: function tools whose every call is proposed to the control plane before it runs.

`OpenAIAgentsGovernor` wraps one `ToolGate` (one control-plane session) and turns function tools into governed ones
with the SDK's own mechanisms, so a run pauses, resumes and reads refusals the way the SDK intends:

    governor = OpenAIAgentsGovernor(gate)

    @governor.function_tool                      # agents.function_tool, governed; or governor.govern(a_tool)
    def issue_refund(order_id: str, amount: float) -> str: ...

The SDK asks a function tool two things before running it, in this order, and the governor answers both:

1. `needs_approval` (when the model's call is first seen): the governor proposes the call through the gate. Allowed,
   denied or steered, it answers "no approval needed" and remembers the decision; needing a human, it answers "yes",
   so the run stops with an interruption (`RunResult.interruptions`) whose control-plane ticket already exists.
2. its tool input guardrails (right before the tool body, and only for calls that are not waiting): the governor's
   guardrail, which runs after the tool's own, lets an allowed call run (`ToolGuardrailFunctionOutput.allow()`) and
   turns a denial or a steer into `reject_content(message)`, so the model reads the reason, or the guidance and the
   alternatives, as the tool's result. The tool's own output is settled with the control plane afterwards (or the
   call is settled as failed with its exception).

A paused run survives the process: save `result.to_state().to_string()`, let a human decide the ticket from anywhere
(`cp.approve(...)`, `acp tickets approve`), and in any process load the state, call `resume_approvals(state)`, which
approves or rejects each interruption as the control plane's tickets say, and `Runner.run(agent, state)` again. The
approved call consumes its ticket right before it runs, so it runs once however many processes resume the state.

Needs the SDK: `pip install agent-control-plane[openai-agents]`.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, overload

from agent_control_plane.integrations._extras import require_extra

try:
    from agents import (
        FunctionTool,
        RunContextWrapper,
        RunState,
        ToolApprovalItem,
        ToolGuardrailFunctionOutput,
        ToolInputGuardrail,
        ToolInputGuardrailData,
    )
    from agents import function_tool as sdk_function_tool
    from agents.tool import maybe_invoke_function_tool_failure_error_function, set_function_tool_failure_error_function
    from agents.tool_context import ToolContext
except ModuleNotFoundError as exc:  # pragma: no cover - tests run it in a process without the package
    require_extra(exc, ("agents",), "the OpenAI Agents SDK adapter", "openai-agents", "openai-agents")

from agent_control_plane.errors import ControlPlaneError
from agent_control_plane.facade import ControlPlaneFacade
from agent_control_plane.integrations._gate import GateKind, GateResult, ToolGate
from agent_control_plane.types.tickets import Ticket, TicketStatus
from agent_control_plane.types.values import canonical_json

__all__ = ["GUARDRAIL_NAME", "ApprovalRequest", "ApprovalsApplied", "OpenAIAgentsGovernor"]

GUARDRAIL_NAME = "agent_control_plane"
"""The name of the governor's tool input guardrail (in `RunResult.tool_input_guardrail_results`)."""

_Key = tuple[str, str, str]
"""One tool call: (call id, tool name, canonical JSON of its arguments)."""


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """A paused governed call, as a host shows it to a human: the SDK's interruption and the control plane's ticket.

    `ticket` is the newest ticket of the gate's session for this exact call (tool, arguments, agent), or None when
    the call has not been proposed yet (`resume_approvals` proposes it then).
    """

    item: ToolApprovalItem = field(repr=False)
    tool: str
    call_id: str
    arguments: dict[str, Any] | None
    """The call's arguments as the model sent them; None when they are not a JSON object."""
    ticket: Ticket | None

    @property
    def ticket_id(self) -> str | None:
        return None if self.ticket is None else self.ticket.ticket_id


@dataclass(frozen=True, slots=True)
class ApprovalsApplied:
    """What `resume_approvals` did to a run state's interruptions of governed tools."""

    approved: tuple[ApprovalRequest, ...]
    """Approved in the state: each runs when the run resumes (consuming its ticket then)."""
    rejected: tuple[tuple[ApprovalRequest, str], ...]
    """Rejected in the state, each with the message the model reads instead of the tool's result."""
    waiting: tuple[ApprovalRequest, ...]
    """Still undecided by a human: the resumed run stops at them again."""


class OpenAIAgentsGovernor:
    """Governs OpenAI Agents SDK function tools through one `ToolGate`, and resumes their paused runs.

    Use one governor for the tools of an agent and for `pending_approvals` / `resume_approvals` in the same process:
    it remembers, per tool call, what the control plane decided between the SDK's approval check, the guardrail and
    the tool body. Across processes nothing is remembered: the control plane's tickets are the record.
    """

    def __init__(self, gate: ToolGate) -> None:
        self.gate = gate
        self._names: set[str] = set()
        self._decided: dict[_Key, GateResult] = {}
        """Calls the approval check proposed (or `resume_approvals` found allowed), waiting for the guardrail."""
        self._refused: dict[_Key, str] = {}
        """Calls the control plane could not decide (bad input, storage down): the message for the model."""
        self._tickets: dict[_Key, str] = {}
        """Calls waiting for a human, or approved in the SDK state: their ticket, consumed by the guardrail."""
        self._running: dict[_Key, GateResult] = {}
        """Allowed calls between the guardrail and the tool body, to settle with the tool's outcome."""

    # governing tools --------------------------------------------------------------------------------------------
    @overload
    def function_tool(self, func: Callable[..., Any], /, **options: Any) -> FunctionTool: ...

    @overload
    def function_tool(self, func: None = None, /, **options: Any) -> Callable[[Callable[..., Any]], FunctionTool]: ...

    def function_tool(
        self, func: Callable[..., Any] | None = None, /, **options: Any
    ) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
        """`agents.function_tool`, governed: use it bare (`@governor.function_tool`) or with the SDK's options."""

        def decorate(f: Callable[..., Any]) -> FunctionTool:
            made: FunctionTool = sdk_function_tool(f, **options)
            return self.govern(made)

        return decorate if func is None else decorate(func)

    def govern(self, tool: FunctionTool) -> FunctionTool:
        """A governed copy of `tool` (the original is left as it was): same name, schema and options.

        The copy's `needs_approval` proposes each call, its last tool input guardrail applies the decision (after the
        tool's own guardrails), and its body settles the call. A tool that already has `needs_approval` set is
        refused: approvals come from the policy (`always_approve`), not from the tool.
        """
        if not isinstance(tool, FunctionTool):
            raise TypeError(f"govern() takes a FunctionTool (see agents.function_tool), not {type(tool).__name__}")
        if tool.needs_approval is not False:
            raise ValueError(
                f"tool '{tool.name}' already sets needs_approval; a governed tool asks the control plane instead "
                "(give the action the always_approve tier in the policy)"
            )
        name = tool.name
        # A copy that raises instead of formatting its errors, so the governed body sees the exception to settle.
        body = copy.copy(tool)
        set_function_tool_failure_error_function(body, None)

        async def needs_approval(context: RunContextWrapper[Any], params: dict[str, Any], call_id: str) -> bool:
            return await self._needs_approval(name, params, call_id)

        async def invoke(context: ToolContext[Any], arguments: str) -> Any:
            return await self._invoke(tool, body, context, arguments)

        governed = copy.copy(tool)
        governed.on_invoke_tool = invoke
        governed.needs_approval = needs_approval
        governed.tool_input_guardrails = [
            *(self._after(guardrail) for guardrail in tool.tool_input_guardrails or ()),
            ToolInputGuardrail(guardrail_function=self._guardrail, name=GUARDRAIL_NAME),
        ]
        self._names.add(name)
        return governed

    # the SDK's three questions ----------------------------------------------------------------------------------
    async def _needs_approval(self, tool: str, params: dict[str, Any], call_id: str) -> bool:
        key = _key(call_id, tool, params)
        if key in self._decided or key in self._refused:
            return False  # asked again about a call already decided: never propose (and reserve) twice
        try:
            result = await self.gate.acheck(tool, params)
        except ControlPlaneError as exc:
            self._refused[key] = _undecided(tool, exc)
            return False
        if result.kind is GateKind.PENDING and result.ticket_id is not None:
            self._tickets[key] = result.ticket_id
            return True
        self._decided[key] = result
        return False

    async def _guardrail(self, data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
        context = data.context
        tool, call_id = context.tool_name, context.tool_call_id
        args = _arguments(context.tool_arguments)
        if args is None:
            return ToolGuardrailFunctionOutput.reject_content(
                f"The tool call '{tool}' was not run: its arguments are not a JSON object."
            )
        key = _key(call_id, tool, args)
        if (refused := self._refused.pop(key, None)) is not None:
            return ToolGuardrailFunctionOutput.reject_content(refused)
        result = self._decided.pop(key, None)
        if result is None:
            ticket_id = self._tickets.get(key)
            if ticket_id is not None and context.is_tool_approved(tool, call_id) is None:
                # A guardrail run before the SDK pauses (RunConfig's pre_approval_tool_input_guardrails): let it pause.
                return ToolGuardrailFunctionOutput.allow(output_info={"decision": "pending", "ticket_id": ticket_id})
            try:
                # Approved in the SDK state: the ticket is consumed now, right before the call runs. Without a ticket
                # on record (a state approved by hand), proposing again consumes an approved ticket for this exact
                # call, or says it still waits.
                result = await (self.gate.aresume(ticket_id, tool) if ticket_id else self.gate.acheck(tool, args))
            except ControlPlaneError as exc:
                return ToolGuardrailFunctionOutput.reject_content(_undecided(tool, exc))
        self._tickets.pop(key, None)
        info = _output_info(result)
        if not result.allowed:
            return ToolGuardrailFunctionOutput.reject_content(result.message, output_info=info)
        self._running[key] = result
        return ToolGuardrailFunctionOutput.allow(output_info=info)

    async def _invoke(self, tool: FunctionTool, body: FunctionTool, context: ToolContext[Any], arguments: str) -> Any:
        args = _arguments(arguments)
        result = None if args is None else self._running.pop(_key(context.tool_call_id, tool.name, args), None)
        if result is None:  # only the governor's guardrail lets a call through to here
            return f"The tool call '{tool.name}' was not run: the control plane has not allowed it."
        try:
            output = await body.on_invoke_tool(context, arguments)
        except Exception as exc:
            await self.gate.asettle(result, error=exc if str(exc) else type(exc).__name__)
            # The tool's own failure policy, as the SDK would apply it: a message for the model, or the exception.
            message = await maybe_invoke_function_tool_failure_error_function(
                function_tool=tool, context=context, error=exc
            )
            if message is None:
                raise
            return message
        except BaseException as exc:  # cancelled (a tool time-out) or interrupted: it did not finish
            await self.gate.asettle(result, error=str(exc) or type(exc).__name__)
            raise
        await self.gate.asettle(result, output=output)
        return output

    def _after(self, guardrail: ToolInputGuardrail[Any]) -> ToolInputGuardrail[Any]:
        """The tool's own guardrail, which runs after the call was proposed: when it stops an allowed call, the
        call's reservation is settled as failed (it never ran)."""

        async def run(data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
            reason = f"not run: the tool input guardrail '{guardrail.get_name()}' stopped it"
            try:
                output = await guardrail.run(data)
            except BaseException:
                await self._release(data.context, reason)
                raise
            if output.behavior["type"] != "allow":
                await self._release(data.context, reason)
            return output

        return ToolInputGuardrail(guardrail_function=run, name=guardrail.get_name())

    async def _release(self, context: ToolContext[Any], reason: str) -> None:
        args = _arguments(context.tool_arguments)
        if args is None:
            return
        key = _key(context.tool_call_id, context.tool_name, args)
        self._refused.pop(key, None)
        result = self._decided.pop(key, None)
        if result is not None and result.allowed:
            await self.gate.asettle(result, error=reason)

    # paused runs ------------------------------------------------------------------------------------------------
    async def pending_approvals(self, interruptions: Iterable[ToolApprovalItem]) -> list[ApprovalRequest]:
        """The governed calls among a paused run's interruptions (`result.interruptions` or
        `state.get_interruptions()`), each with its control-plane ticket, to show to a human."""
        calls = [call for item in interruptions if (call := self._call_of(item)) is not None]
        if not calls:
            return []
        tickets = await self._session_tickets()
        return [
            ApprovalRequest(item, tool, call_id, args, self._ticket_for(tickets, call_id, tool, args))
            for item, tool, call_id, args in calls
        ]

    async def resume_approvals(self, state: RunState[Any, Any]) -> ApprovalsApplied:
        """Approve or reject a loaded run state's governed interruptions as the control plane's tickets say.

        An approved ticket approves the interruption (the ticket is consumed when the resumed run reaches the call);
        a denied, expired or already consumed one rejects it with the message the model then reads; an undecided one
        is left waiting. A call with no ticket yet is proposed now. Interruptions of tools this governor does not
        govern are left alone. Then run `Runner.run(agent, state)`.
        """
        approved: list[ApprovalRequest] = []
        rejected: list[tuple[ApprovalRequest, str]] = []
        waiting: list[ApprovalRequest] = []
        for request in await self.pending_approvals(state.get_interruptions()):
            if request.arguments is None:
                message = f"The tool call '{request.tool}' was not run: its arguments are not a JSON object."
                state.reject(request.item, rejection_message=message)
                rejected.append((request, message))
                continue
            key = _key(request.call_id, request.tool, request.arguments)
            ticket = request.ticket
            if ticket is not None and ticket.status is TicketStatus.APPROVED:
                self._tickets[key] = ticket.ticket_id
                state.approve(request.item)
                approved.append(request)
                continue
            try:
                if ticket is None:
                    result = await self.gate.acheck(request.tool, request.arguments)
                else:  # pending (perhaps overdue), denied, expired or consumed: what the ticket stands for now
                    result = await self.gate.aresume(ticket.ticket_id, request.tool)
            except ControlPlaneError:  # the control plane cannot answer now: the call keeps waiting, never runs
                waiting.append(request)
                continue
            if result.kind is GateKind.PENDING:
                if result.ticket_id is not None:
                    self._tickets[key] = result.ticket_id
                waiting.append(request)
            elif result.allowed:  # approved just now, and consumed by this answer: the guardrail lets it run
                self._decided[key] = result
                state.approve(request.item)
                approved.append(request)
            else:
                state.reject(request.item, rejection_message=result.message)
                rejected.append((request, result.message))
        return ApprovalsApplied(tuple(approved), tuple(rejected), tuple(waiting))

    def _call_of(self, item: ToolApprovalItem) -> tuple[ToolApprovalItem, str, str, dict[str, Any] | None] | None:
        tool = item.tool_name or item.name
        raw = item.raw_item
        call_id = raw.get("call_id") if isinstance(raw, dict) else getattr(raw, "call_id", None)
        arguments = raw.get("arguments") if isinstance(raw, dict) else getattr(raw, "arguments", None)
        if tool not in self._names or not isinstance(call_id, str):
            return None
        return item, tool, call_id, _arguments(arguments if isinstance(arguments, str) else None)

    def _ticket_for(
        self, tickets: Sequence[Ticket], call_id: str, tool: str, args: dict[str, Any] | None
    ) -> Ticket | None:
        """This process's record of the call's ticket, else the session's newest ticket for the same exact call:
        re-proposing a call while its ticket waits returns that ticket, so the newest one is the one it waits on."""
        if args is None:
            return None
        known = self._tickets.get(_key(call_id, tool, args))
        for ticket in reversed(tickets):
            same_call = (
                ticket.action == tool
                and ticket.args == args
                and (self.gate.agent_id is None or ticket.agent_id == self.gate.agent_id)
            )
            if ticket.ticket_id == known or (known is None and same_call):
                return ticket
        return None

    async def _session_tickets(self) -> list[Ticket]:
        plane = self.gate.plane
        if isinstance(plane, ControlPlaneFacade):
            return await asyncio.to_thread(plane.list_tickets, session_id=self.gate.session_id)
        return await plane.list_tickets(session_id=self.gate.session_id)


def _reject_constant(value: str) -> NoReturn:
    raise ValueError(f"not a JSON value: {value}")


def _arguments(text: str | None) -> dict[str, Any] | None:
    """A call's arguments as a JSON object, or None (invalid JSON, NaN or Infinity, or not an object)."""
    if text is None:
        return None
    try:
        parsed = json.loads(text or "{}", parse_constant=_reject_constant)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _key(call_id: str, tool: str, args: dict[str, Any]) -> _Key:
    return call_id, tool, canonical_json(args)


def _output_info(result: GateResult) -> dict[str, Any]:
    """What the governor's guardrail records about a call (kept in the SDK's run state and result)."""
    decision = result.decision
    return {
        "decision": result.kind.value,
        "code": decision.code.value,
        "proposal_id": decision.proposal_id,
        "ticket_id": decision.ticket_id,
    }


def _undecided(tool: str, exc: ControlPlaneError) -> str:
    return f"The tool call '{tool}' was not run: the control plane could not decide it ({exc})."
