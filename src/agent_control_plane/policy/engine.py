"""`PolicyEngine`: the pure decision of a proposal's tier. No I/O, no clock reads, no logging.

A policy compiles once: rules into closures (see conditions.py), `actions` into an exact-name table and an
ordered list of precompiled glob matchers. Deciding is then a scan of closures and, failing those, a dict lookup or
a short scan of regular expressions. The trace is not built while deciding: rules are first-match-wins, so the
index of the rule that applied says everything about the rules before it.
"""

from __future__ import annotations

import fnmatch
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import cast

from agent_control_plane.errors import PolicyError
from agent_control_plane.policy.conditions import Facts, compile_condition, fields_used
from agent_control_plane.policy.evaluators import (
    EvaluatorRegistry,
    EvaluatorSpec,
    Verdict,
    most_severe,
)
from agent_control_plane.policy.model import PolicySource, Rule, load_policy
from agent_control_plane.types.decisions import SEVERITY, ActionTier, SteeringContext, TraceStep

_WILDCARDS = re.compile(r"[*?\[\]]")


@dataclass(frozen=True, slots=True)
class TierChoice:
    """The tier for one proposal, the policy entry that chose it (`None`: the default tier), and why."""

    tier: ActionTier
    rule: str | None
    step: str = "default"
    """rule, actions or default: which part of the policy decided."""
    reason: str | None = None
    steering: SteeringContext | None = None
    rules_tried: tuple[str, ...] = field(default=(), repr=False)
    evaluations: tuple[TraceStep, ...] = field(default=(), repr=False)
    overruled: TierChoice | None = field(default=None, repr=False)
    """For an evaluator's decision: what the rules and actions had chosen."""

    def describe(self, action: str) -> str:
        if self.step == "evaluator":
            because = f": {self.reason}" if self.reason else ""
            return f"evaluator {self.rule!r} makes action {action!r} {self.tier.value}{because}"
        if self.step == "rule":
            because = f": {self.reason}" if self.reason else ""
            return f"rule {self.rule!r} makes action {action!r} {self.tier.value}{because}"
        if self.rule is None:
            return f"action {action!r} matched no policy entry; default tier is {self.tier.value}"
        if self.rule == action:
            return f"action {action!r} is {self.tier.value} by policy entry {self.rule!r}"
        return f"action {action!r} is {self.tier.value} by policy pattern {self.rule!r}"

    @property
    def trace(self) -> tuple[TraceStep, ...]:
        if self.overruled is not None:
            return self.overruled.trace + self.evaluations
        tried = [TraceStep("rule", name, False) for name in self.rules_tried]
        if self.step == "rule":
            tried[-1] = TraceStep("rule", tried[-1].name, True, self.tier)
            return (*tried, *self.evaluations)
        return (*tried, TraceStep(self.step, self.rule or "default_tier", True, self.tier), *self.evaluations)


class PolicyEngine:
    """Decides a proposal's tier under one policy. Same policy and facts, same answer."""

    __slots__ = ("_default", "_evaluators", "_exact", "_globs", "_rules", "needs_session_facts", "policy")

    def __init__(self, policy: PolicySource, *, registry: EvaluatorRegistry | None = None) -> None:
        self.policy = load_policy(policy)
        if self.policy.evaluators and registry is None:
            registry = EvaluatorRegistry(discover=False)
        self._evaluators = tuple(_sync_evaluator(registry, spec) for spec in self.policy.evaluators if registry)
        names = tuple(rule.name or f"rule {n}" for n, rule in enumerate(self.policy.rules, start=1))
        self._rules = tuple(
            (compile_condition(rule.when), _choice_for_rule(rule, names[: n + 1]))
            for n, rule in enumerate(self.policy.rules)
        )
        used = set().union(*(fields_used(rule.when) for rule in self.policy.rules))
        # Conditions on the session so far (or on the agent, which may be the session's own) need the session row,
        # read under its lock before deciding; policies without them decide before touching the database.
        self.needs_session_facts = any(name.startswith("session.") or name == "agent" for name in used)
        everything = names
        self._default = TierChoice(self.policy.default_tier, None, rules_tried=everything)
        self._exact: dict[str, TierChoice] = {}
        ranked: list[tuple[int, int, int, str, ActionTier]] = []
        for position, (pattern, tier) in enumerate(self.policy.actions.items()):
            if _WILDCARDS.search(pattern) is None:
                self._exact[pattern] = _actions_choice(tier, pattern, everything)
            else:
                literal = len(_WILDCARDS.sub("", pattern))
                ranked.append((-literal, -len(pattern), position, pattern, tier))
        ranked.sort()
        self._globs = tuple(
            (re.compile(fnmatch.translate(pattern)).match, _actions_choice(tier, pattern, everything))
            for *_, pattern, tier in ranked
        )

    def decide(self, facts: Facts) -> TierChoice:
        """The first rule whose condition holds, else the most specific `actions` entry, else the default tier;
        then the evaluators, whose most severe objection wins over that tier (the first deny stops them)."""
        choice = self._by_rules_and_actions(facts)
        if not self._evaluators or choice.tier is ActionTier.BLOCKED:
            return choice
        verdicts: list[Verdict] = []
        for evaluate in self._evaluators:
            verdict = evaluate(facts)
            verdicts.append(verdict)
            if verdict.tier is ActionTier.BLOCKED:
                break
        worst = most_severe(verdicts)
        steps = tuple(TraceStep("evaluator", v.evaluator, v.objects, v.tier) for v in verdicts)
        if worst is None or worst.tier is None or SEVERITY[worst.tier] <= SEVERITY[choice.tier]:
            return replace(choice, evaluations=steps)
        steering = None
        if worst.tier is ActionTier.STEER:
            steering = SteeringContext(worst.reason or "choose a different action", (), worst.evaluator)
        return TierChoice(
            worst.tier,
            worst.evaluator,
            "evaluator",
            worst.reason,
            steering,
            choice.rules_tried,
            evaluations=steps,
            overruled=choice,
        )

    def _by_rules_and_actions(self, facts: Facts) -> TierChoice:
        for holds, choice in self._rules:
            if holds(facts):
                return choice
        return self.tier_for_action(facts.action)

    def tier_for(self, action: str) -> TierChoice:
        """The tier of a proposal about which nothing but its action is known."""
        return self.decide(Facts(action))

    def tier_for_action(self, action: str) -> TierChoice:
        choice = self._exact.get(action)
        if choice is not None:
            return choice
        for match, glob_choice in self._globs:
            if match(action) is not None:
                return glob_choice
        return self._default


def _sync_evaluator(registry: EvaluatorRegistry | None, spec: EvaluatorSpec) -> Callable[[Facts], Verdict]:
    assert registry is not None
    evaluator = registry.create(spec)
    if inspect.iscoroutinefunction(evaluator.evaluate):
        raise PolicyError(
            f"evaluator {spec.name!r} ({spec.type}) is asynchronous; propose runs evaluators synchronously, so "
            "wrap its I/O in a synchronous evaluate() or run it through ParallelPolicyEvaluator before proposing"
        )
    return cast(Callable[[Facts], Verdict], evaluator.evaluate)


def _choice_for_rule(rule: Rule, tried: tuple[str, ...]) -> TierChoice:
    steering = None
    if rule.tier is ActionTier.STEER:
        steering = SteeringContext(rule.guidance or "", tuple(rule.alternatives), tried[-1])
    return TierChoice(rule.tier, tried[-1], "rule", rule.reason, steering, tried)


def _actions_choice(tier: ActionTier, pattern: str, tried: tuple[str, ...]) -> TierChoice:
    steering = None
    if tier is ActionTier.STEER:
        steering = SteeringContext(
            f"actions matching {pattern!r} are steered by policy; choose a different action", (), pattern
        )
    return TierChoice(tier, pattern, "actions", None, steering, tried)
