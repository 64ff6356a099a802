"""Agents, routing and risk: the steps decided before the rules, and the limit applied after them.

`AgentRegistry` holds the agents a policy knows (capabilities = action globs they may propose, scopes = resource
globs they may act on, explicit tier assignments). `ProposalRouter` resolves, in order: registration (unknown
agents are denied when the policy requires registration), capability and scope (an action or resource outside
the agent's is denied), delegation (a `delegate` proposal names `args.to` and `args.task`; the target must be
registered when registration is required and capable of the task), and explicit assignment. Anything it does not
decide goes on to the rules. A `RiskClassifier` may raise the risk level the policy's risk rules set.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from agent_control_plane.policy.choice import TierChoice
from agent_control_plane.policy.conditions import Facts, compile_condition
from agent_control_plane.policy.model import AgentSpec, RiskSettings
from agent_control_plane.policy.patterns import PatternTable
from agent_control_plane.types.decisions import ActionTier, RiskLevel

DELEGATE_ACTION = "delegate"
"""The action of a delegation proposal: `args.to` is the agent handed the task, `args.task` its action."""


@runtime_checkable
class RiskClassifier(Protocol):
    """Judges a proposal's risk in code (e.g. from a model or a lookup); None leaves the policy's level."""

    def classify(self, facts: Facts) -> RiskLevel | None: ...


def _globs(patterns: list[str]) -> Callable[[str], bool]:
    compiled = tuple(re.compile(fnmatch.translate(p)).match for p in patterns)

    def matches(value: str) -> bool:
        for match in compiled:  # noqa: SIM110 - a loop, not a generator, on the decision path
            if match(value) is not None:
                return True
        return False

    return matches


@dataclass(frozen=True, slots=True)
class RegisteredAgent:
    agent_id: str
    may_propose: Callable[[str], bool]
    may_touch: Callable[[str], bool]
    assignments: PatternTable[tuple[str, ActionTier]]


class AgentRegistry:
    """The agents of one policy, compiled for routing (an instance, never global)."""

    def __init__(self, agents: Mapping[str, AgentSpec] | None = None, *, require_registration: bool = False) -> None:
        self.require_registration = require_registration
        self._agents: dict[str, RegisteredAgent] = {}
        for agent_id, spec in (agents or {}).items():
            self.register(agent_id, spec)

    def register(self, agent_id: str, spec: AgentSpec | None = None) -> None:
        spec = spec or AgentSpec()
        assignments = PatternTable({pattern: (pattern, tier) for pattern, tier in spec.actions.items()})
        self._agents[agent_id] = RegisteredAgent(agent_id, _globs(spec.capabilities), _globs(spec.scopes), assignments)

    def get(self, agent_id: str | None) -> RegisteredAgent | None:
        return None if agent_id is None else self._agents.get(agent_id)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._agents

    def __len__(self) -> int:
        return len(self._agents)


class ProposalRouter:
    """Decides what concerns the proposing agent before any rule is consulted (see the module docstring)."""

    def __init__(self, registry: AgentRegistry) -> None:
        self.registry = registry

    def route(self, facts: Facts) -> TierChoice | None:
        agent = self.registry.get(facts.agent)
        if agent is None:
            if self.registry.require_registration:
                who = "no agent" if facts.agent is None else f"agent {facts.agent!r}"
                return _deny("registration", facts.agent or "", f"{who} is not registered and the policy requires it")
        else:
            if not agent.may_propose(facts.action):
                return _deny("capability", agent.agent_id, f"agent {agent.agent_id!r} may not propose {facts.action!r}")
            if facts.resource is not None and not agent.may_touch(facts.resource):
                return _deny(
                    "capability",
                    agent.agent_id,
                    f"resource {facts.resource!r} is outside agent {agent.agent_id!r}'s scopes",
                )
        if facts.action == DELEGATE_ACTION:
            refused = self._check_delegation(facts)
            if refused is not None:
                return refused
        assigned = None if agent is None else agent.assignments.lookup(facts.action)
        if assigned is not None and agent is not None:
            pattern, tier = assigned
            return TierChoice(
                tier, pattern, "assignment", f"agent {agent.agent_id!r}'s explicit assignment {pattern!r}"
            )
        return None

    def _check_delegation(self, facts: Facts) -> TierChoice | None:
        target, task = facts.args.get("to"), facts.args.get("task")
        if not isinstance(target, str) or not isinstance(task, str):
            return _deny(
                "capability", DELEGATE_ACTION, "a delegation needs args.to (an agent id) and args.task (an action)"
            )
        delegate = self.registry.get(target)
        if delegate is None:
            if self.registry.require_registration:
                return _deny("registration", target, f"delegation target {target!r} is not a registered agent")
            return None
        if not delegate.may_propose(task):
            return _deny("capability", target, f"delegation target {target!r} may not perform {task!r}")
        return None


def _deny(step: str, name: str, reason: str) -> TierChoice:
    return TierChoice(ActionTier.BLOCKED, name, step, reason)


class RiskJudge:
    """The risk of a proposal: the first of the policy's risk rules that holds (else its default), raised by a
    classifier when one is given and it judges higher."""

    def __init__(self, settings: RiskSettings, classifier: RiskClassifier | None = None) -> None:
        self._rules = tuple((compile_condition(rule.when), rule.level) for rule in settings.rules)
        self._default = settings.default
        self._classifier = classifier

    @property
    def trivial(self) -> bool:
        """True when every proposal gets the default level (no rules, no classifier)."""
        return not self._rules and self._classifier is None

    def judge(self, facts: Facts) -> RiskLevel:
        level = self._default
        for holds, rule_level in self._rules:
            if holds(facts):
                level = rule_level
                break
        if self._classifier is not None:
            judged = self._classifier.classify(facts)
            if judged is not None and judged.rank > level.rank:
                level = judged
        return level
