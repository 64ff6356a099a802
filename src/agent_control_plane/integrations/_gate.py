"""What every framework adapter shares: one governed tool call, and the text a model reads when it may not run.

An adapter turns a framework's tool call into `ToolGate.check` (or `acheck`), executes the tool only when the result
is allowed, and closes it with `settle` (or `asettle`). Everything else — a denial, a steer, a pending ticket — comes
back as a `GateResult` whose `message` the adapter hands to the model in the framework's own form (a tool error,
a rejection message, an interrupt), so the agent can read why and re-plan instead of crashing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from agent_control_plane import Outcome
from agent_control_plane.aio import AsyncControlPlaneFacade
from agent_control_plane.facade import ControlPlaneFacade
from agent_control_plane.types.decisions import Decision, DecisionCode
from agent_control_plane.types.identity import IdentityContext

Plane = ControlPlaneFacade | AsyncControlPlaneFacade
ResourceOf = Callable[[str, Mapping[str, Any]], str | None]
"""Maps (tool name, arguments) to the resource a call touches, for policies that decide by resource."""
CostOf = Callable[[str, Mapping[str, Any]], Decimal | int | str]
"""Maps (tool name, arguments) to the cost a call reserves in the session's budget."""

RERUN_AFTER_APPROVAL = (
    "Once a human has approved it, call the tool again with exactly the same arguments: the approved call then "
    "runs, once."
)
"""Appended to a pending call's message by adapters where the approved call runs when the model makes it again
(the MCP proxy, the Claude Agent SDK): proposing the same call again consumes its approved ticket."""

RESULT_PREVIEW_CHARS = 2_000
"""How much of a tool's output a settlement keeps in the log (the log is for audit, not for the output itself)."""


class GateKind(StrEnum):
    """How an adapter must treat a governed call."""

    ALLOW = "allow"
    """Execute the tool, then settle."""
    DENY = "deny"
    """Do not execute; tell the model why."""
    STEER = "steer"
    """Do not execute; give the model the guidance and alternatives to re-plan with."""
    PENDING = "pending"
    """Do not execute yet: a human must decide the ticket first."""


@dataclass(frozen=True, slots=True)
class GateResult:
    """A decision as an adapter uses it: what to do, and the text for the model when the call does not run."""

    kind: GateKind
    decision: Decision
    message: str

    @property
    def allowed(self) -> bool:
        return self.kind is GateKind.ALLOW

    @property
    def ticket_id(self) -> str | None:
        return self.decision.ticket_id


def classify(decision: Decision, tool: str) -> GateResult:
    """The adapter's view of a decision, with the message a model reads when the call does not run."""
    if decision.allowed:
        return GateResult(GateKind.ALLOW, decision, "")
    if decision.code is DecisionCode.STEERED and decision.steering is not None:
        steering, reason = decision.steering, decision.reason.rstrip(". ")
        text = f"The tool call '{tool}' was not run: {reason}."
        if steering.guidance and steering.guidance not in reason:  # a rule's reason usually is its guidance
            text += f" Guidance: {steering.guidance.rstrip('. ')}."
        if steering.alternatives:
            text += f" Consider instead: {', '.join(steering.alternatives)}."
        return GateResult(GateKind.STEER, decision, text)
    if decision.code is DecisionCode.APPROVAL_REQUIRED and decision.ticket_id is not None:
        text = (
            f"The tool call '{tool}' needs a human's approval and has not run yet (ticket {decision.ticket_id}). "
            "Do not retry it; wait for the decision or continue with other work."
        )
        return GateResult(GateKind.PENDING, decision, text)
    text = f"The tool call '{tool}' was denied ({decision.code}): {decision.reason}"
    return GateResult(GateKind.DENY, decision, text)


def preview(output: Any) -> str:
    """A bounded text form of a tool's output, for the settlement's `result`."""
    text = output if isinstance(output, str) else repr(output)
    return text if len(text) <= RESULT_PREVIEW_CHARS else text[:RESULT_PREVIEW_CHARS] + "…"


class ToolGate:
    """Governs the tool calls of one control-plane session, for a framework adapter.

    `approval_timeout` is how many seconds `check` waits for a human when a call needs approval (0: return at once
    with a pending result carrying the ticket id). `resource_of` and `cost_of` derive a call's resource and cost from
    its tool name and arguments. With an `AsyncControlPlaneFacade` use the awaited methods; a sync facade works with
    both (the awaited ones run it in a worker thread).
    """

    def __init__(
        self,
        plane: Plane,
        session_id: str,
        *,
        agent_id: str | None = None,
        identity: IdentityContext | None = None,
        approval_timeout: float = 0.0,
        resource_of: ResourceOf | None = None,
        cost_of: CostOf | None = None,
    ) -> None:
        if approval_timeout < 0:
            raise ValueError(f"approval_timeout must be 0 or more seconds, not {approval_timeout}")
        self.plane = plane
        self.session_id = session_id
        self.agent_id = agent_id
        self.identity = identity
        self.approval_timeout = approval_timeout
        self._resource_of = resource_of
        self._cost_of = cost_of

    def _proposal(self, tool: str, args: Mapping[str, Any], idempotency_key: str | None) -> dict[str, Any]:
        return {
            "args": dict(args),
            "resource": self._resource_of(tool, args) if self._resource_of else None,
            "cost": self._cost_of(tool, args) if self._cost_of else 0,
            "agent_id": self.agent_id,
            "identity": self.identity,
            "idempotency_key": idempotency_key,
        }

    def _sync_plane(self) -> ControlPlaneFacade:
        if not isinstance(self.plane, ControlPlaneFacade):
            raise TypeError("this ToolGate holds an AsyncControlPlaneFacade: use acheck / asettle / await_ticket")
        return self.plane

    def check(
        self,
        tool: str,
        args: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        reread_ticket: bool = True,
    ) -> GateResult:
        """Propose the call; when it needs approval, wait up to `approval_timeout` for the human's decision.

        With an `idempotency_key` a retried check (a framework re-running a step whose results were lost) gets the
        first decision back instead of a second proposal; when that decision was a ticket, the ticket is read again,
        since a human may have decided it (or the call used it) in between. With `reread_ticket=False` a replayed
        ticket comes back pending, as first decided, neither read again nor waited for: for a framework that
        replays its own pauses (LangGraph runs an interrupted node again) and reads the ticket when it resumes.
        """
        plane = self._sync_plane()
        decision = plane.propose(self.session_id, tool, **self._proposal(tool, args, idempotency_key))
        result = classify(decision, tool)
        if result.kind is not GateKind.PENDING or result.ticket_id is None:
            return result
        if decision.replayed:
            if not reread_ticket:
                return result
            result = self.resume(result.ticket_id, tool)
        if result.kind is GateKind.PENDING and self.approval_timeout > 0:
            return self.await_ticket(result, tool, timeout=self.approval_timeout)
        return result

    def await_ticket(self, pending: GateResult, tool: str, *, timeout: float) -> GateResult:
        """Wait up to `timeout` seconds for the ticket of a pending result; approved, it is allowed (consumed)."""
        assert pending.ticket_id is not None, "only a pending result has a ticket to wait for"
        return classify(self._sync_plane().wait_for_decision(pending.ticket_id, timeout=timeout), tool)

    def resume(self, ticket_id: str, tool: str, *, idempotency_key: str | None = None) -> GateResult:
        """The outcome of a ticket decided earlier (from any process); approved, it is allowed now, once.

        With an `idempotency_key` (another than the call's own proposal's), a repeated resume gets the call's
        execution back, allowed while it is unsettled, instead of "already consumed": for a framework that runs a
        step again when a tool pauses it (see `ControlPlaneFacade.resume`).
        """
        return classify(self._sync_plane().resume(ticket_id, idempotency_key=idempotency_key), tool)

    def settle(self, result: GateResult, *, output: Any = None, error: BaseException | str | None = None) -> None:
        """Close an allowed call: succeeded with `output`, or failed with `error`."""
        self._sync_plane().settle(result.decision.proposal_id, **_settlement(output, error))

    async def acheck(
        self,
        tool: str,
        args: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        reread_ticket: bool = True,
    ) -> GateResult:
        """`check`, awaited."""
        if isinstance(self.plane, ControlPlaneFacade):
            return await asyncio.to_thread(
                lambda: self.check(tool, args, idempotency_key=idempotency_key, reread_ticket=reread_ticket)
            )
        decision = await self.plane.propose(self.session_id, tool, **self._proposal(tool, args, idempotency_key))
        result = classify(decision, tool)
        if result.kind is not GateKind.PENDING or result.ticket_id is None:
            return result
        if decision.replayed:
            if not reread_ticket:
                return result
            result = await self.aresume(result.ticket_id, tool)
        if result.kind is GateKind.PENDING and self.approval_timeout > 0:
            return await self.aawait_ticket(result, tool, timeout=self.approval_timeout)
        return result

    async def aawait_ticket(self, pending: GateResult, tool: str, *, timeout: float) -> GateResult:
        """`await_ticket`, awaited."""
        if isinstance(self.plane, ControlPlaneFacade):
            return await asyncio.to_thread(self.await_ticket, pending, tool, timeout=timeout)
        assert pending.ticket_id is not None, "only a pending result has a ticket to wait for"
        return classify(await self.plane.wait_for_decision(pending.ticket_id, timeout=timeout), tool)

    async def aresume(self, ticket_id: str, tool: str, *, idempotency_key: str | None = None) -> GateResult:
        """`resume`, awaited."""
        if isinstance(self.plane, ControlPlaneFacade):
            return await asyncio.to_thread(self.resume, ticket_id, tool, idempotency_key=idempotency_key)
        return classify(await self.plane.resume(ticket_id, idempotency_key=idempotency_key), tool)

    async def asettle(
        self, result: GateResult, *, output: Any = None, error: BaseException | str | None = None
    ) -> None:
        """`settle`, awaited."""
        if isinstance(self.plane, ControlPlaneFacade):
            await asyncio.to_thread(self.settle, result, output=output, error=error)
            return
        await self.plane.settle(result.decision.proposal_id, **_settlement(output, error))


def _settlement(output: Any, error: BaseException | str | None) -> dict[str, Any]:
    if error is not None:
        return {"outcome": Outcome.FAILED, "result": {"error": preview(str(error))}}
    return {"outcome": Outcome.SUCCEEDED, "result": {"output": preview(output)} if output is not None else None}
