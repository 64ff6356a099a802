"""`PolicyEngine`: the pure decision of an action's tier. No I/O, no clock, no logging.

A policy compiles once into an exact-name table and an ordered list of glob matchers, so a decision is a dict
lookup or a short scan of precompiled regular expressions.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from agent_control_plane.policy.model import PolicySource, load_policy
from agent_control_plane.types.decisions import ActionTier

_WILDCARDS = re.compile(r"[*?\[\]]")


@dataclass(frozen=True, slots=True)
class TierChoice:
    """The tier for one action and the entry that chose it (`None` means the default tier)."""

    tier: ActionTier
    rule: str | None

    def describe(self, action: str) -> str:
        if self.rule is None:
            return f"action {action!r} matched no policy entry; default tier is {self.tier.value}"
        if self.rule == action:
            return f"action {action!r} is {self.tier.value} by policy entry {self.rule!r}"
        return f"action {action!r} is {self.tier.value} by policy pattern {self.rule!r}"


class PolicyEngine:
    """Decides an action's tier under one policy. Same policy and action, same answer."""

    __slots__ = ("_default", "_exact", "_globs", "policy")

    def __init__(self, policy: PolicySource) -> None:
        self.policy = load_policy(policy)
        self._default = TierChoice(self.policy.default_tier, None)
        self._exact: dict[str, TierChoice] = {}
        ranked: list[tuple[int, int, int, str, ActionTier]] = []
        for position, (pattern, tier) in enumerate(self.policy.actions.items()):
            if _WILDCARDS.search(pattern) is None:
                self._exact[pattern] = TierChoice(tier, pattern)
            else:
                literal = len(_WILDCARDS.sub("", pattern))
                ranked.append((-literal, -len(pattern), position, pattern, tier))
        ranked.sort()
        self._globs = tuple(
            (re.compile(fnmatch.translate(pattern)).match, TierChoice(tier, pattern)) for *_, pattern, tier in ranked
        )

    def tier_for(self, action: str) -> TierChoice:
        """The tier for `action`: an exact entry, else the most specific matching glob, else the default."""
        choice = self._exact.get(action)
        if choice is not None:
            return choice
        for match, glob_choice in self._globs:
            if match(action) is not None:
                return glob_choice
        return self._default
