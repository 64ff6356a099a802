"""The benchmark's Cedar reference: the same rules as Cedar policies, evaluated with cedarpy.

Cedar has no rule order (a forbid beats any permit), so the translation keeps first-match-wins by giving each
forbid an `unless` over the earlier permit rules that could apply to the same actions; `actions` becomes one
permit over the action names whose tier executes. Our allow is a tier that executes without a human
(`ActionTier.executes`), Cedar's is `Decision.Allow`; `disagreements` lists proposals on which the two differ.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from agent_control_plane._bench.action import BenchError
from agent_control_plane.policy.conditions import Condition, Facts
from agent_control_plane.policy.engine import PolicyEngine

if TYPE_CHECKING:
    import cedarpy


# translation -----------------------------------------------------------------------------------
def _quote(text: str) -> str:
    return json.dumps(text)


def _uid(kind: str, name: str) -> str:
    return f"{kind}::{_quote(name)}"


def _cedar_decimal(value: Any) -> str:
    return f"decimal({_quote(format(Decimal(str(value)).quantize(Decimal('0.0001')), 'f'))})"


def _cedar_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _quote(value)
    raise BenchError(f"no Cedar translation for the constant {value!r}")


_DECIMAL_METHODS = {"gt": "greaterThan", "gte": "greaterThanOrEqual", "lt": "lessThan", "lte": "lessThanOrEqual"}
_LONG_OPERATORS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _args_access(path: list[str]) -> tuple[str, str]:
    """`(guard, expression)` for context.args.<path>: Cedar errors on a missing attribute, ours is false."""
    guards, expression = [], "context.args"
    for part in path:
        guards.append(f"{expression} has {_quote(part)}")
        expression = f"{expression}[{_quote(part)}]"
    return " && ".join(guards), expression


def _cedar_condition(condition: Condition) -> str:
    """The Cedar expression for one condition tree, with the facts laid out as `cedar_request` lays them out."""
    if condition.all is not None:
        return " && ".join(f"({_cedar_condition(child)})" for child in condition.all)
    if condition.any is not None:
        return " || ".join(f"({_cedar_condition(child)})" for child in condition.any)
    if condition.not_ is not None:
        return f"!({_cedar_condition(condition.not_)})"
    name, (op, value) = condition.field, condition.operator()
    if name == "action" and op in ("eq", "in"):
        return f"action in [{', '.join(_uid('Action', a) for a in (value if op == 'in' else [value]))}]"
    if name == "cost" and op in _DECIMAL_METHODS:
        return f"context.cost.{_DECIMAL_METHODS[op]}({_cedar_decimal(value)})"
    if name == "resource" and op == "glob" and not set(value) & set("?[]\\"):
        return f"context has resource && context.resource like {_quote(value)}"
    if name is not None and name.startswith("args."):
        guard, expression = _args_access(name[5:].split("."))
        if op == "exists":
            return guard if value else f"!({guard})"
        if op == "eq":
            return f"{guard} && {expression} == {_cedar_literal(value)}"
        if op == "in":
            return f"{guard} && [{', '.join(_cedar_literal(v) for v in value)}].contains({expression})"
        if op in _LONG_OPERATORS and isinstance(value, int) and not isinstance(value, bool):
            return f"{guard} && {expression} {_LONG_OPERATORS[op]} {value}"
    raise BenchError(f"no Cedar translation for {{field: {name}, {op}: {value!r}}}")


def _scope(condition: Condition) -> tuple[frozenset[str] | None, list[Condition]]:
    """The actions a rule is about (`None`: any), when its tree is `all` starting with an action eq / in."""
    if condition.all is not None and condition.all[0].field == "action":
        op, value = condition.all[0].operator()
        if op in ("eq", "in"):
            return frozenset(value if op == "in" else [value]), list(condition.all[1:])
    return None, [condition]


def cedar_policies(engine: PolicyEngine, action_names: Sequence[str]) -> str:
    """The engine's rules and `actions` as Cedar policy text, for proposals whose action is one of `action_names`."""
    statements: list[str] = []
    permits: list[tuple[frozenset[str] | None, str]] = []
    for n, rule in enumerate(engine.policy.rules, start=1):
        actions, rest = _scope(rule.when)
        scope = "action" if actions is None else f"action in [{', '.join(_uid('Action', a) for a in sorted(actions))}]"
        condition = " && ".join(f"({_cedar_condition(part)})" for part in rest)
        head = f"@id({_quote(rule.name or f'rule {n}')})\n"
        if rule.tier.executes:
            permits.append((actions, f"{scope} && {condition}" if actions is not None else condition))
            statements.append(f"{head}permit(principal, {scope}, resource) when {{ {condition} }};")
            continue
        # First match wins: an earlier permit rule that applies overrules this forbid. Only permits that can
        # share an action with it are listed; the others cannot hold on the same proposal.
        earlier = [text for scope_of, text in permits if actions is None or scope_of is None or scope_of & actions]
        unless = f" unless {{ {' || '.join(f'({text})' for text in earlier)} }}" if earlier else ""
        statements.append(f"{head}forbid(principal, {scope}, resource) when {{ {condition} }}{unless};")
    names = sorted({*action_names, *(a for rule in engine.policy.rules for a in _scope(rule.when)[0] or ())})
    allowed = [name for name in names if engine.tier_for_action(name).tier.executes]
    if allowed:
        listed = ", ".join(_uid("Action", name) for name in allowed)
        statements.append(f'@id("actions")\npermit(principal, action in [{listed}], resource);')
    return "\n".join(statements)


def cedar_request(facts: Facts) -> dict[str, Any]:
    """A Cedar request for the facts; the context is JSON text already, so cedarpy does not serialize it per call."""
    context: dict[str, Any] = {
        "cost": {"__extn": {"fn": "decimal", "arg": format(facts.cost.quantize(Decimal("0.0001")), "f")}},
        "args": facts.args,
    }
    if facts.resource is not None:
        context["resource"] = facts.resource
    return {
        "principal": {"type": "Agent", "id": facts.agent or "bench-agent"},
        "action": {"type": "Action", "id": facts.action},
        "resource": {"type": "Resource", "id": facts.resource or "none"},
        "context": json.dumps(context),
    }


@dataclass(frozen=True, slots=True)
class CedarReference:
    """The workload's policy as a parsed Cedar policy set, with the proposals as Cedar requests."""

    text: str
    policies: cedarpy.PolicySet
    entities: cedarpy.Entities
    requests: tuple[dict[str, Any], ...]

    @classmethod
    def build(cls, engine: PolicyEngine, proposals: Sequence[Facts]) -> CedarReference:
        import cedarpy

        text = cedar_policies(engine, [facts.action for facts in proposals])
        requests = tuple(cedar_request(facts) for facts in proposals)
        return cls(text, cedarpy.PolicySet.from_str(text), cedarpy.Entities.from_json_str("[]"), requests)

    def decide(self, request: dict[str, Any]) -> cedarpy.AuthzResult:
        import cedarpy

        return cedarpy.is_authorized(request, self.policies, self.entities)

    def decide_batch(self, requests: list[dict[str, Any]]) -> list[cedarpy.AuthzResult]:
        import cedarpy

        return cedarpy.is_authorized_batch(requests, self.policies, self.entities)

    def allowed(self) -> list[bool]:
        """Cedar's allow / deny for each request; a policy that errors on a request is a translation bug."""
        results = self.decide_batch(list(self.requests))
        errors = [error for result in results for error in result.diagnostics.errors]
        if errors:
            raise BenchError(f"the Cedar translation errors on a proposal: {errors[0]}")
        return [bool(result.allowed) for result in results]


def disagreements(engine: PolicyEngine, cedar: CedarReference, proposals: Sequence[Facts]) -> list[str]:
    """Proposals on which our allow / deny differs from Cedar's, described."""
    ours = [engine.decide(facts).tier.executes for facts in proposals]
    return [
        f"{facts.action} on {facts.resource}: ours {'allow' if a else 'deny'}, cedar {'allow' if b else 'deny'}"
        for facts, a, b in zip(proposals, ours, cedar.allowed(), strict=True)
        if a != b
    ]
