"""Framework adapters: each maps the control plane's decisions onto one agent framework's own mechanism.

Each adapter is a module with an optional extra (`pip install agent-control-plane[mcp]`, `[openai-agents]`,
`[claude-agent-sdk]`, `[langgraph]`); importing one without its framework installed raises an ImportError that
names the extra. What they all share is exported here, with no framework needed: `ToolGate` governs the tool calls
of one session (propose, wait for or resume a ticket, settle) and turns each decision into a `GateResult` whose
`message` a model can read; it is the piece to build an adapter for another framework on.
"""

from agent_control_plane.integrations._gate import CostOf, GateKind, GateResult, ResourceOf, ToolGate

__all__ = ["CostOf", "GateKind", "GateResult", "ResourceOf", "ToolGate"]
