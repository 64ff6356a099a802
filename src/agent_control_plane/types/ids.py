"""Typed string ids."""

from __future__ import annotations

from typing import NewType

SessionId = NewType("SessionId", str)
ProposalId = NewType("ProposalId", str)
AgentId = NewType("AgentId", str)
