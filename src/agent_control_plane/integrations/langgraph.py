"""LangGraph adapter: a tool node that proposes every tool call to the control plane before it runs.

`GovernedToolNode(tools, gate)` takes the place of LangGraph's `ToolNode`. For each tool call in the last
`AIMessage` it asks the control plane through one `ToolGate` (one control-plane session): an allowed call runs (the
tool runs through a `ToolNode`, so injected state, error handling and `Command` results behave as usual) and is
settled with its output; a denied or steered call comes back as a `ToolMessage` with `status="error"` whose text is
the reason or the guidance, so the model re-plans; a call that needs a human pauses the graph with `interrupt()`,
carrying an `ApprovalRequest` (ticket id, tool, arguments, message). The graph is resumed with
`Command(resume=ApprovalAnswer-shaped dict)`; the ticket in the control plane decides (a human answers it with
`cp.approve` / `cp.deny`, `acp tickets`, or through the answer itself), and the call then runs once or comes back
refused with the human's reason.

LangGraph runs an interrupted node again from its start when the graph resumes. Nothing here repeats on that
second pass. Proposals carry an idempotency key made of the thread id, the `AIMessage` id and the tool call id, so
a re-run gets the first decision and the same ticket back, and an allowed call already settled comes back refused
instead of running twice; the execution an approved ticket gives a call has a key too, so a tool that pauses the
graph itself (`interrupt()` in the tool) runs again under the same execution when it resumes. When a message has
several tool calls, each call's proposal, execution and settlement also happen inside a LangGraph task
(`langgraph.func.task`), whose result the checkpointer keeps, so that a re-run after a pause for one call reads the
others' outputs back instead of refusing them as already run. A message's only call needs no task (its re-runs
follow pauses of its own), which spares the task's cost (about 0.8 ms per call) on the common path.

Needs LangGraph: `pip install agent-control-plane[langgraph]`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypedDict

from agent_control_plane.integrations._extras import require_extra

try:
    from langchain_core.messages import AIMessage, ToolCall, ToolMessage
    from langchain_core.runnables import RunnableConfig, RunnableLambda
    from langchain_core.tools import BaseTool
    from langgraph.errors import GraphBubbleUp
    from langgraph.func import task
    from langgraph.prebuilt import ToolNode
    from langgraph.types import Command, interrupt
except ModuleNotFoundError as exc:  # pragma: no cover - tests run it in a process without the package
    require_extra(exc, ("langgraph", "langchain_core"), "the LangGraph adapter", "langgraph", "langgraph")

from agent_control_plane.aio import AsyncControlPlaneFacade
from agent_control_plane.errors import InvalidInputError, SessionStateError
from agent_control_plane.facade import ControlPlaneFacade
from agent_control_plane.integrations._gate import GateKind, GateResult, ToolGate, preview
from agent_control_plane.integrations._langgraph_approval import (
    ApprovalAnswer,
    ApprovalRequest,
    approved_key,
    idempotency_key,
)

__all__ = ["ApprovalAnswer", "ApprovalRequest", "GovernedToolNode", "idempotency_key"]


class _Step(TypedDict):
    """Where one tool call stands, as a task returns it (plain values: the checkpointer stores it)."""

    outputs: list[Any]
    """The call's `ToolMessage` (or the `Command`s its tool returned); empty while it waits for a human."""
    ticket_id: str | None
    message: str
    problem: str | None


class GovernedToolNode(RunnableLambda[Any, Any]):
    """A LangGraph node that runs the last `AIMessage`'s tool calls under the control plane; use it as `ToolNode`.

    `tools` is a list of tools (run by a `ToolNode` with `handle_tool_errors=True`, so a failing tool comes back as
    an error message and settles as failed) or a `ToolNode` of your own (its error handling stands; an exception it
    raises settles the call as failed and propagates). Allowed calls run concurrently, as in `ToolNode`; calls that
    need a human pause the graph one ticket at a time, after the others have run. `decide_on_resume=False` refuses
    decisions carried by resume values, so only `cp.approve` / `cp.deny` (or `acp tickets`) decide.

    Runs with `invoke` / `stream` on a `ControlPlaneFacade` and with `ainvoke` / `astream` on either facade. Pausing
    needs a checkpointer, and the proposals are keyed by the config's `thread_id`.
    """

    def __init__(
        self,
        tools: Sequence[BaseTool | Callable[..., Any]] | ToolNode,
        gate: ToolGate,
        *,
        name: str = "tools",
        messages_key: str = "messages",
        decide_on_resume: bool = True,
    ) -> None:
        super().__init__(self._run, afunc=self._arun, name=name)
        self.tool_node = tools if isinstance(tools, ToolNode) else ToolNode(tools, handle_tool_errors=True)
        self.gate = gate
        self.messages_key = messages_key
        self.decide_on_resume = decide_on_resume

        # The tasks are named for what they do (their names show in LangGraph's streams and traces).
        def govern_tool_call(call: ToolCall, key: str | None) -> _Step:
            return self._govern_call(call, key)

        def resume_tool_call(call: ToolCall, key: str | None, ticket_id: str, answer: dict[str, Any] | None) -> _Step:
            return self._resume_call(call, key, ticket_id, answer)

        async def agovern_tool_call(call: ToolCall, key: str | None) -> _Step:
            return await self._agovern_call(call, key)

        async def aresume_tool_call(
            call: ToolCall, key: str | None, ticket_id: str, answer: dict[str, Any] | None
        ) -> _Step:
            return await self._aresume_call(call, key, ticket_id, answer)

        self._govern = task(govern_tool_call)
        self._resume = task(resume_tool_call)
        self._agovern = task(agovern_tool_call)
        self._aresume = task(aresume_tool_call)

    # the node -------------------------------------------------------------------------------------------------
    def _run(self, state: Any, config: RunnableConfig) -> Any:
        if isinstance(self.gate.plane, AsyncControlPlaneFacade):
            raise TypeError(
                "this GovernedToolNode's gate holds an AsyncControlPlaneFacade: run the graph with ainvoke / astream"
            )
        calls = self._calls(state, config)
        if self._alone(calls):
            call, key = calls[0]
            step = self._govern_call(call, key, reread_ticket=False)
            while step["ticket_id"] is not None:
                answer = interrupt(self._request(call, step), response_schema=ApprovalAnswer)
                step = self._resume_call(call, key, step["ticket_id"], answer.model_dump())
            return self._combine([step])
        # Every call is proposed (and, allowed, run) in a task of its own, concurrently; a re-run reads them back.
        futures = [self._govern(call, key) for call, key in calls]
        steps = [future.result() for future in futures]
        first = _first_pending(steps)
        for index, (call, key) in enumerate(calls):
            step = steps[index]
            if step["ticket_id"] is None:
                continue
            if index != first:  # decided meanwhile, perhaps, while the graph waited for an earlier ticket
                step = self._resume(call, key, step["ticket_id"], None).result()
            while step["ticket_id"] is not None:
                answer = interrupt(self._request(call, step), response_schema=ApprovalAnswer)
                step = self._resume(call, key, step["ticket_id"], answer.model_dump()).result()
            steps[index] = step
        return self._combine(steps)

    async def _arun(self, state: Any, config: RunnableConfig) -> Any:
        calls = self._calls(state, config)
        if self._alone(calls):
            call, key = calls[0]
            step = await self._agovern_call(call, key, reread_ticket=False)
            while step["ticket_id"] is not None:
                answer = interrupt(self._request(call, step), response_schema=ApprovalAnswer)
                step = await self._aresume_call(call, key, step["ticket_id"], answer.model_dump())
            return self._combine([step])
        futures = [self._agovern(call, key) for call, key in calls]
        steps = [await future for future in futures]
        first = _first_pending(steps)
        for index, (call, key) in enumerate(calls):
            step = steps[index]
            if step["ticket_id"] is None:
                continue
            if index != first:
                step = await self._aresume(call, key, step["ticket_id"], None)
            while step["ticket_id"] is not None:
                answer = interrupt(self._request(call, step), response_schema=ApprovalAnswer)
                step = await self._aresume(call, key, step["ticket_id"], answer.model_dump())
            steps[index] = step
        return self._combine(steps)

    def _alone(self, calls: list[tuple[ToolCall, str | None]]) -> bool:
        """Whether the one call of a message may run outside a task, its proposal's key standing in for the task.

        A task keeps a call's results for the node's re-runs, so that a re-run (after a pause for another call)
        neither proposes nor runs it again. A call alone in its message has no other call to pause for: a re-run
        follows a pause of its own, and what the task would have kept, the control plane has under the call's
        idempotency key. The re-run proposes again with the key and gets its first decision back, as first made
        (`reread_ticket=False`), so it pauses at the same `interrupt()` as the first pass did, and the resume value
        reaches the step that reads the ticket. That holds when the first pass paused for every ticket it got:
        with an `approval_timeout` the first pass may have waited for the ticket and run the call instead, so such
        a gate's calls run in tasks. A call without a thread id has no key and runs in a task too.
        """
        return len(calls) == 1 and calls[0][1] is not None and self.gate.approval_timeout == 0

    def _calls(self, state: Any, config: RunnableConfig) -> list[tuple[ToolCall, str | None]]:
        """The last AIMessage's tool calls, each with the idempotency key it is proposed with."""
        messages = state.get(self.messages_key, []) if isinstance(state, dict) else getattr(state, self.messages_key)
        message = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
        if message is None:
            raise ValueError(f"GovernedToolNode found no AIMessage in the state's {self.messages_key!r}")
        thread = (config.get("configurable") or {}).get("thread_id")
        calls: list[tuple[ToolCall, str | None]] = []
        for index, call in enumerate(message.tool_calls):
            call_id = call["id"] or f"#{index}"
            key = None if thread is None else idempotency_key(str(thread), message.id, call_id)
            calls.append(({**call, "id": call_id, "type": "tool_call"}, key))
        return calls

    def _request(self, call: ToolCall, step: _Step) -> ApprovalRequest:
        assert step["ticket_id"] is not None
        return ApprovalRequest(
            kind="approval_required",
            ticket_id=step["ticket_id"],
            session_id=self.gate.session_id,
            tool=call["name"],
            args=dict(call["args"]),
            tool_call_id=str(call["id"]),
            message=step["message"],
            problem=step["problem"],
        )

    def _combine(self, steps: list[_Step]) -> Any:
        """The node's update: the calls' ToolMessages in call order (with any `Command`s their tools returned)."""
        outputs = [output for step in steps for output in step["outputs"]]
        if not any(isinstance(output, Command) for output in outputs):
            return {self.messages_key: outputs}
        return [output if isinstance(output, Command) else {self.messages_key: [output]} for output in outputs]

    # a call's steps: each runs at most once per call (in a task, kept by the checkpointer, among several calls) -
    def _govern_call(self, call: ToolCall, key: str | None, *, reread_ticket: bool = True) -> _Step:
        if call["name"] not in self.tool_node.tools_by_name:
            return _done(self._execute(call))  # ToolNode's own "not a valid tool" message; nothing to govern
        # A pass whose results were lost proposes again with the same key: the gate reads the first decision back
        # (and, in a task, its ticket again, which may have been decided or used since) instead of proposing twice.
        result = self.gate.check(call["name"], call["args"], idempotency_key=key, reread_ticket=reread_ticket)
        return self._settled(call, result)

    async def _agovern_call(self, call: ToolCall, key: str | None, *, reread_ticket: bool = True) -> _Step:
        if call["name"] not in self.tool_node.tools_by_name:
            return _done(await self._aexecute(call))
        result = await self.gate.acheck(call["name"], call["args"], idempotency_key=key, reread_ticket=reread_ticket)
        return await self._asettled(call, result)

    def _resume_call(self, call: ToolCall, key: str | None, ticket_id: str, answer: dict[str, Any] | None) -> _Step:
        # The approved call runs under a key of its own: when its tool pauses the graph, the re-run gets the same
        # execution back (still allowed: it has not settled) instead of "ticket already consumed".
        problem = None if answer is None else self._decide(ticket_id, ApprovalAnswer(**answer))
        resumed = self.gate.resume(ticket_id, call["name"], idempotency_key=_approved(key))
        step = self._settled(call, resumed)
        return {**step, "problem": problem} if step["ticket_id"] is not None else step

    async def _aresume_call(
        self, call: ToolCall, key: str | None, ticket_id: str, answer: dict[str, Any] | None
    ) -> _Step:
        problem = None if answer is None else await self._adecide(ticket_id, ApprovalAnswer(**answer))
        resumed = await self.gate.aresume(ticket_id, call["name"], idempotency_key=_approved(key))
        step = await self._asettled(call, resumed)
        return {**step, "problem": problem} if step["ticket_id"] is not None else step

    # deciding a ticket from a resume value ---------------------------------------------------------------------
    def _refusal_of(self, ticket_id: str, answer: ApprovalAnswer) -> str | None:
        """Why `answer` may not decide `ticket_id` (None: it may, or it does not try)."""
        if answer.ticket_id != ticket_id:
            return f"the answer names ticket {answer.ticket_id}, but this tool call waits for ticket {ticket_id}"
        if answer.approved is not None and not self.decide_on_resume:
            return (
                "this node takes no decisions from resume values: decide the ticket with `acp tickets approve|deny` "
                f"{ticket_id} (or cp.approve / cp.deny), then resume"
            )
        return None

    def _decide(self, ticket_id: str, answer: ApprovalAnswer) -> str | None:
        """Apply the answer's decision to the ticket; returns the problem when it could not (the ticket still waits)."""
        refused = self._refusal_of(ticket_id, answer)
        if refused is not None or answer.approved is None:
            return refused
        plane = self.gate.plane
        assert isinstance(plane, ControlPlaneFacade) and answer.approver is not None
        try:
            if answer.approved:
                plane.approve(ticket_id, approver=answer.approver, comment=answer.comment)
            else:
                plane.deny(ticket_id, approver=answer.approver, reason=answer.reason or "")
        except SessionStateError:
            return None  # decided already (by a human, elsewhere): that decision stands
        except InvalidInputError as exc:
            return str(exc)  # e.g. the agent approving its own call
        return None

    async def _adecide(self, ticket_id: str, answer: ApprovalAnswer) -> str | None:
        plane = self.gate.plane
        if isinstance(plane, ControlPlaneFacade):
            return await asyncio.to_thread(self._decide, ticket_id, answer)
        refused = self._refusal_of(ticket_id, answer)
        if refused is not None or answer.approved is None:
            return refused
        assert answer.approver is not None
        try:
            if answer.approved:
                await plane.approve(ticket_id, approver=answer.approver, comment=answer.comment)
            else:
                await plane.deny(ticket_id, approver=answer.approver, reason=answer.reason or "")
        except SessionStateError:
            return None
        except InvalidInputError as exc:
            return str(exc)
        return None

    # running an allowed call -----------------------------------------------------------------------------------
    def _settled(self, call: ToolCall, result: GateResult) -> _Step:
        """Run an allowed call and settle it; any other result becomes the model's message or a pending step."""
        if result.kind is not GateKind.ALLOW:
            return _not_run(call, result)
        try:
            outputs = self._execute(call)
        except GraphBubbleUp:
            raise  # an interrupt inside the tool: it runs again on resume, under the same (unsettled) proposal
        except Exception as exc:
            self.gate.settle(result, error=exc)
            raise
        self.gate.settle(result, **_settlement(outputs, call))
        return _done(outputs)

    async def _asettled(self, call: ToolCall, result: GateResult) -> _Step:
        if result.kind is not GateKind.ALLOW:
            return _not_run(call, result)
        try:
            outputs = await self._aexecute(call)
        except GraphBubbleUp:
            raise
        except Exception as exc:
            await self.gate.asettle(result, error=exc)
            raise
        await self.gate.asettle(result, **_settlement(outputs, call))
        return _done(outputs)

    def _execute(self, call: ToolCall) -> list[Any]:
        return _flatten(self.tool_node.invoke([call]))

    async def _aexecute(self, call: ToolCall) -> list[Any]:
        return _flatten(await self.tool_node.ainvoke([call]))


def _approved(key: str | None) -> str | None:
    return None if key is None else approved_key(key)


def _first_pending(steps: list[_Step]) -> int | None:
    return next((index for index, step in enumerate(steps) if step["ticket_id"] is not None), None)


def _done(outputs: list[Any]) -> _Step:
    return {"outputs": outputs, "ticket_id": None, "message": "", "problem": None}


def _not_run(call: ToolCall, result: GateResult) -> _Step:
    """A pending step for a call that waits for a human, or the refusal the model reads for a denied / steered one."""
    if result.kind is GateKind.PENDING:
        return {"outputs": [], "ticket_id": result.ticket_id, "message": result.message, "problem": None}
    decision = result.decision
    refusal = ToolMessage(
        content=result.message,
        name=call["name"],
        tool_call_id=str(call["id"]),
        status="error",
        artifact={"code": decision.code.value, "proposal_id": decision.proposal_id, "ticket_id": decision.ticket_id},
    )
    return _done([refusal])


def _flatten(output: Any) -> list[Any]:
    """ToolNode's answer for one call (`{key: [ToolMessage]}`, or a list with `Command`s) as a flat list."""
    items = output if isinstance(output, list) else [output]
    flat: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            for value in item.values():
                flat.extend(value if isinstance(value, list) else [value])
        else:
            flat.append(item)
    return flat


def _settlement(outputs: list[Any], call: ToolCall) -> dict[str, Any]:
    """Settle with the call's ToolMessage: failed when it is an error message, succeeded with its content else."""
    message = next((o for o in outputs if isinstance(o, ToolMessage) and o.tool_call_id == call["id"]), None)
    if message is None:
        return {"output": preview(outputs)}
    if message.status == "error":
        return {"error": preview(message.content)}
    return {"output": message.content}
