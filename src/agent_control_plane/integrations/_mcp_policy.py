"""Which upstream tools the MCP proxy may hide: those whose every call the policy blocks.

The check reads the policy itself, not a sample call, so it holds whatever the arguments, resource, agent or
session: a tool is hidden only when its entry in `actions` (or the default tier) is `blocked`, every rule that can
apply to it blocks too, and no agent has an explicit assignment that unblocks it. Evaluators and risk limits can
only make a decision stricter, so they never unblock a call. The check errs on the side of listing a tool: a rule
that could hold for any action counts, even when its condition never holds for this one.
"""

from __future__ import annotations

import fnmatch

from agent_control_plane.policy.conditions import required_actions
from agent_control_plane.policy.engine import PolicyEngine
from agent_control_plane.policy.model import PolicySource
from agent_control_plane.types.decisions import ActionTier


class BlockedTools:
    """`tool in BlockedTools(policy)`: whether the policy blocks every call of the tool."""

    def __init__(self, policy: PolicySource) -> None:
        self._engine = PolicyEngine(policy)
        self._known: dict[str, bool] = {}

    def __contains__(self, tool: object) -> bool:
        if not isinstance(tool, str):
            return False
        if tool not in self._known:
            self._known[tool] = self._always_blocked(tool)
        return self._known[tool]

    def _always_blocked(self, tool: str) -> bool:
        policy = self._engine.policy
        if self._engine.tier_for_action(tool).tier is not ActionTier.BLOCKED:
            return False
        for rule in policy.rules:
            actions = required_actions(rule.when)
            if rule.tier is not ActionTier.BLOCKED and (actions is None or tool in actions):
                return False
        return not any(
            tier is not ActionTier.BLOCKED and fnmatch.fnmatchcase(tool, pattern)
            for agent in policy.agents.registry.values()
            for pattern, tier in agent.actions.items()
        )
