"""Approval tickets and session grants as callers see them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


class TicketStatus(StrEnum):
    """pending → approved → consumed, or pending → denied / expired. Escalation keeps it pending, with a new
    approver group and deadline."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CONSUMED = "consumed"


@dataclass(frozen=True, slots=True)
class Ticket:
    """A request for a human decision on one exact call (its `digest` covers session, agent, action, canonical
    args, resource and cost, and when present the dry-run mode, identity, model and token estimate: approving it
    authorizes that call and no other)."""

    ticket_id: str
    session_id: str
    proposal_id: str
    digest: str
    agent_id: str | None
    action: str
    resource: str | None
    args: dict[str, Any]
    cost: Decimal
    reason: str
    status: TicketStatus
    approver_group: str | None
    deadline: datetime | None
    decided_by: str | None
    decided_at: datetime | None
    comment: str | None
    consumed_by: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class GrantScope:
    """What `approve_for_session` allows beyond the one call: the same action in the same session, on `resource`
    (an exact name or a glob; None: any resource), at most `max_uses` times (None: no limit), until `expires_at`.
    A grant covers only the identity of the call it was given on; one given on a dry run covers dry runs only."""

    resource: str | None = None
    max_uses: int | None = None
    expires_at: datetime | None = None
