"""What the MCP proxy hands back for a tool call: the upstream's result, or a tool error the model can read.

A call the control plane does not let run still answers with a `CallToolResult` (`isError: true`), never a protocol
error, so the model reads why and re-plans instead of seeing a crash. Every result the proxy builds carries the
decision under `_meta["agent-control-plane/decision"]` for programs (the model reads only the text).
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types

from agent_control_plane.integrations._gate import RERUN_AFTER_APPROVAL, GateKind, GateResult

DECISION_META_KEY = "agent-control-plane/decision"
"""The `_meta` key of a proxied result that holds the control plane's decision (kind, code, reason, ids …)."""

_RESERVED_META_PREFIX = "io.modelcontextprotocol/"


def decision_summary(result: GateResult) -> dict[str, Any]:
    """The decision of a governed call as plain JSON."""
    decision = result.decision
    summary: dict[str, Any] = {
        "kind": result.kind.value,
        "code": decision.code.value,
        "tier": decision.tier.value,
        "reason": decision.reason,
        "rule": decision.rule,
        "proposal_id": decision.proposal_id,
        "session_id": decision.session_id,
    }
    if decision.ticket_id is not None:
        summary["ticket_id"] = decision.ticket_id
    if decision.steering is not None:
        summary["guidance"] = decision.steering.guidance
        summary["alternatives"] = list(decision.steering.alternatives)
    return summary


def refusal(result: GateResult) -> types.CallToolResult:
    """The tool error for a call that did not run: denied, steered, or waiting for a human."""
    text = result.message
    if result.kind is GateKind.PENDING:
        text = f"{text} {RERUN_AFTER_APPROVAL}"
    return _error(text, {DECISION_META_KEY: decision_summary(result)})


def not_decided(tool: str, problem: str) -> types.CallToolResult:
    """The tool error for a call the control plane could not decide (so, failing closed, it did not run)."""
    return _error(f"The tool call '{tool}' was not run: the control plane could not decide it ({problem}).", None)


def upstream_failed(tool: str, allowed: GateResult, problem: str) -> types.CallToolResult:
    """The tool error for an allowed call the upstream server failed to answer."""
    text = f"The tool call '{tool}' failed: the upstream MCP server did not answer it ({problem})."
    return _error(text, {DECISION_META_KEY: decision_summary(allowed)})


def forwarded(answer: types.CallToolResult, allowed: GateResult) -> types.CallToolResult:
    """The upstream's result as the client receives it, with the decision that let it run.

    Protocol-reserved `_meta` keys (the upstream's own server stamp) stay behind, and so does structured content
    that is not a JSON object, which the handshake-era protocol the proxy speaks cannot carry (the text content
    still holds the result).
    """
    meta = {key: value for key, value in (answer.meta or {}).items() if not key.startswith(_RESERVED_META_PREFIX)}
    meta[DECISION_META_KEY] = decision_summary(allowed)
    structured = answer.structured_content if isinstance(answer.structured_content, dict) else None
    return types.CallToolResult(
        content=answer.content, structured_content=structured, is_error=answer.is_error, _meta=meta
    )


def result_text(answer: types.CallToolResult) -> str:
    """What an upstream result says, as text for the settlement's preview in the log."""
    parts = [block.text if isinstance(block, types.TextContent) else f"[{block.type}]" for block in answer.content]
    if not parts and answer.structured_content is not None:
        return json.dumps(answer.structured_content, ensure_ascii=False, default=str)
    return "\n".join(parts)


def _error(text: str, meta: dict[str, Any] | None) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True, _meta=meta)
