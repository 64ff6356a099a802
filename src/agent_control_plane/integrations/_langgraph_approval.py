"""The LangGraph adapter's pause and its answer: what an approval interrupt carries, what resumes it, and the
idempotency key that makes a re-run of the node get its first decisions back."""

from __future__ import annotations

import hashlib
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_KEY_CHARS = 200
"""The longest idempotency key the control plane stores; longer keys are replaced by their digest."""


class ApprovalRequest(TypedDict):
    """What the graph's interrupt carries while a tool call waits for a human (`Interrupt.value`)."""

    kind: Literal["approval_required"]
    ticket_id: str
    session_id: str
    tool: str
    args: dict[str, Any]
    tool_call_id: str
    message: str
    """What the call waits for, in the words the model would read."""
    problem: str | None
    """Why the previous resume value did not decide the ticket (None when the graph first pauses for it)."""


class ApprovalAnswer(BaseModel):
    """The resume value for an `ApprovalRequest` interrupt: `Command(resume={"ticket_id": …, …})`.

    `{"ticket_id": T}` alone says "look again": the node reads the ticket's decision from the control plane (made
    with `cp.approve` / `cp.deny` or `acp tickets`) and pauses once more if nobody has decided yet. With `approved`
    the answer also decides the ticket through the control plane, as `approver` (who cannot be the agent that
    asked; a denial needs a `reason`, which the model reads). A ticket already decided keeps its decision: the
    control plane is the source of truth. (An empty dict would not do: LangGraph reads `{}` as a map of interrupt
    ids that resumes nothing.)
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"description": "The answer to an agent-control-plane approval ticket."},
    )

    ticket_id: str = Field(description="The ticket this answers: the interrupt's `ticket_id`.")
    approved: bool | None = Field(None, description="Approve (true) or deny (false); omit if decided elsewhere.")
    approver: str | None = Field(None, description="Who decides; required with `approved`.")
    comment: str | None = Field(None, description="A note kept with an approval.")
    reason: str | None = Field(None, description="Why it is denied; required when `approved` is false.")

    @model_validator(mode="after")
    def _complete(self) -> ApprovalAnswer:
        if self.approved is not None and not self.approver:
            raise ValueError("an answer that approves or denies must name its `approver`")
        if self.approved is False and not self.reason:
            raise ValueError("an answer that denies must give a `reason` (the model reads it)")
        return self


def idempotency_key(thread_id: str, message_id: str | None, tool_call_id: str) -> str:
    """The idempotency key a tool call is proposed with: stable across re-runs of the node, unique per call."""
    return _bounded(f"langgraph/{thread_id}/{message_id or '-'}/{tool_call_id}")


def approved_key(key: str) -> str:
    """The key of the execution an approved ticket gives the call proposed under `key` (see `ToolGate.resume`)."""
    return _bounded(f"{key}/approved")


def _bounded(key: str) -> str:
    if len(key) <= MAX_KEY_CHARS:
        return key
    return "langgraph/sha256:" + hashlib.sha256(key.encode()).hexdigest()
