"""`PolicyEngine`: the pure decision of a proposal's tier. No I/O, no clock reads, no logging.

A policy compiles once: rules into closures (see conditions.py), `actions` into an exact-name table and an
ordered list of precompiled glob matchers. Deciding is then a scan of closures and, failing those, a dict lookup or
a short scan of regular expressions. The trace is not built while deciding: rules are first-match-wins, so the
index of the rule that applied says everything about the rules before it.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from functools import partial

from agent_control_plane.policy.choice import TierChoice
from agent_control_plane.policy.conditions import Facts, Predicate, compile_condition, fields_used, required_actions
from agent_control_plane.policy.evaluators import (
    EvaluatorRegistry,
    ParallelPolicyEvaluator,
    Verdict,
    evaluate_now,
    most_severe,
)
from agent_control_plane.policy.model import PolicySource, Rule, load_policy
from agent_control_plane.policy.patterns import PatternTable
from agent_control_plane.policy.routing import AgentRegistry, ProposalRouter, RiskClassifier, RiskJudge
from agent_control_plane.types.decisions import SEVERITY, ActionTier, RiskLevel, SteeringContext, TraceStep


class PolicyEngine:
    """Decides a proposal's tier under one policy. Same policy and facts, same answer."""

    __slots__ = (
        "_actions",
        "_default",
        "_evaluators",
        "_risk",
        "_risk_matters",
        "_router",
        "_router_on",
        "_rules",
        "_rules_for_action",
        "_rules_for_any_action",
        "async_evaluators",
        "needs_session_facts",
        "policy",
    )

    def __init__(
        self,
        policy: PolicySource,
        *,
        registry: EvaluatorRegistry | None = None,
        risk_classifier: RiskClassifier | None = None,
    ) -> None:
        self.policy = load_policy(policy)
        if self.policy.evaluators and registry is None:
            registry = EvaluatorRegistry()
        built = [(spec, registry.create(spec)) for spec in self.policy.evaluators] if registry else []
        self._evaluators = tuple(
            partial(evaluate_now, evaluator)
            for _, evaluator in built
            if not inspect.iscoroutinefunction(evaluator.evaluate)
        )
        asynchronous = [(spec, e) for spec, e in built if inspect.iscoroutinefunction(e.evaluate)]
        self.async_evaluators: ParallelPolicyEvaluator | None = None
        if asynchronous:
            # Awaited before the proposal's transaction (see plane/core.py), never while it holds a lock.
            self.async_evaluators = ParallelPolicyEvaluator(
                [e for _, e in asynchronous], timeouts={spec.name: spec.timeout for spec, _ in asynchronous}
            )
        names = tuple(rule.name or f"rule {n}" for n, rule in enumerate(self.policy.rules, start=1))
        self._rules = tuple(
            (compile_condition(rule.when), _choice_for_rule(rule, names[: n + 1]))
            for n, rule in enumerate(self.policy.rules)
        )
        # Rules that can only hold for certain actions are indexed by action: deciding scans, in file order, just
        # the rules for this action and those for any action. First match still wins: a skipped rule could not
        # have held.
        pinned = [required_actions(rule.when) for rule in self.policy.rules]
        everywhere = tuple(self._rules[n] for n, actions in enumerate(pinned) if actions is None)
        self._rules_for_action: dict[str, tuple[tuple[Predicate, TierChoice], ...]] = {
            name: tuple(self._rules[n] for n, actions in enumerate(pinned) if actions is None or name in actions)
            for name in set().union(*(actions for actions in pinned if actions is not None))
        }
        self._rules_for_any_action = everywhere
        agents = self.policy.agents
        routed = bool(agents.registry) or agents.require_registration
        self._router = ProposalRouter(AgentRegistry(agents.registry, require_registration=agents.require_registration))
        self._router_on = routed
        self._risk = RiskJudge(self.policy.risk, risk_classifier)
        used = set().union(*(fields_used(rule.when) for rule in self.policy.rules))
        self._risk_matters = (
            not self._risk.trivial
            or "risk" in used
            or self.policy.auto_approve.max_risk is not RiskLevel.HIGH
            or not self.policy.auto_approve.live
            or self.policy.risk.default is not RiskLevel.LOW
        )
        # Conditions on the session so far (or on the agent, which may be the session's own) need the session row,
        # read under its lock before deciding; policies without them decide before touching the database.
        # Routing needs the agent too: a proposal without agent_id is made by the session's own agent.
        self.needs_session_facts = routed or any(name.startswith("session.") or name == "agent" for name in used)
        everything = names
        self._default = TierChoice(self.policy.default_tier, None, rules_tried=everything)
        self._actions: PatternTable[TierChoice] = PatternTable(
            {pattern: _actions_choice(tier, pattern, everything) for pattern, tier in self.policy.actions.items()}
        )

    def decide(self, facts: Facts, verdicts: tuple[Verdict, ...] = ()) -> TierChoice:
        """Decide a proposal's tier. In order: the risk level; the agent's registration, capabilities, scopes and
        explicit assignments; the first rule whose condition holds, else the most specific `actions` entry, else
        the default tier; the evaluators, whose most severe objection wins (the first deny stops them); and last
        the auto_approve limits, which send a too-risky (or live, when only dry runs may be auto-approved)
        auto_approve to a human. `verdicts` are those of the asynchronous evaluators, gathered beforehand."""
        risk = None
        if self._risk_matters:
            if facts.risk is None:
                risk = self._risk.judge(facts)
                facts = replace(facts, risk=risk.value)
            else:
                risk = RiskLevel(facts.risk)  # given by the caller (a policy test case): taken as judged
        choice = (self._router.route(facts) if self._router_on else None) or self._by_rules_and_actions(facts)
        if (self._evaluators or verdicts) and choice.tier is not ActionTier.BLOCKED:
            choice = self._evaluate(choice, facts, verdicts)
        if risk is not None:
            choice = self._limit_auto_approve(choice, facts, risk)
        return choice

    def _limit_auto_approve(self, choice: TierChoice, facts: Facts, risk: RiskLevel) -> TierChoice:
        limits = self.policy.auto_approve
        reason = None
        if choice.tier is ActionTier.AUTO_APPROVE:
            if risk.rank > limits.max_risk.rank:
                reason = f"risk {risk.value} is above auto_approve.max_risk {limits.max_risk.value}, so a human decides"
            elif facts.mode == "live" and not limits.live:
                reason = "auto_approve is limited to dry runs (auto_approve.live: false), so a human decides"
        if reason is None:
            return replace(choice, risk=risk)
        step = TraceStep("risk", f"risk {risk.value}", True, ActionTier.ALWAYS_APPROVE)
        return TierChoice(
            ActionTier.ALWAYS_APPROVE,
            "auto_approve",
            "risk",
            reason,
            None,
            choice.rules_tried,
            evaluations=(step,),
            overruled=choice,
            risk=risk,
        )

    def _evaluate(self, choice: TierChoice, facts: Facts, gathered: tuple[Verdict, ...]) -> TierChoice:
        verdicts = list(gathered)
        for evaluate in () if any(v.tier is ActionTier.BLOCKED for v in gathered) else self._evaluators:
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
        for holds, choice in self._rules_for_action.get(facts.action, self._rules_for_any_action):
            if holds(facts):
                return choice
        return self.tier_for_action(facts.action)

    def tier_for(self, action: str) -> TierChoice:
        """The tier of a proposal about which nothing but its action is known."""
        return self.decide(Facts(action))

    def tier_for_action(self, action: str) -> TierChoice:
        return self._actions.lookup(action) or self._default


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
