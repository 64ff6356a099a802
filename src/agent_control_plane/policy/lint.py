"""Semantic checks on a valid policy: what the schema cannot see but a reviewer would flag."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent_control_plane.policy.conditions import Condition
from agent_control_plane.policy.model import Policy

SCHEMA_PATH = Path(__file__).with_name("policy.schema.json")


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of the policy file (the same text ships as policy.schema.json for editors)."""
    schema = Policy.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "agent-control-plane policy"
    return schema


def _always(condition: Condition) -> bool:
    """Conditions that hold for every proposal (every proposal has an action)."""
    if condition.field == "action":
        op, value = condition.operator()
        return (op == "glob" and value == "*") or (op == "exists" and value is True)
    if condition.all is not None:
        return all(_always(child) for child in condition.all)
    if condition.any is not None:
        return any(_always(child) for child in condition.any)
    return False


def _action_globs(condition: Condition, where: tuple[str, ...]) -> list[tuple[tuple[str, ...], str]]:
    if condition.field == "action":
        op, value = condition.operator()
        return [(where, value)] if op == "glob" else []
    found = []
    for key, children in (("all", condition.all), ("any", condition.any)):
        for position, child in enumerate(children or []):
            found += _action_globs(child, (*where, key, str(position)))
    if condition.not_ is not None:
        found += _action_globs(condition.not_, (*where, "not"))
    return found


def unmatched_globs(policy: Policy, known_actions: Iterable[str]) -> list[tuple[tuple[str, ...], str]]:
    """Action glob patterns (in actions, rule conditions and agents) that match none of `known_actions`."""
    known = list(known_actions)
    patterns: list[tuple[tuple[str, ...], str]] = [(("actions", p), p) for p in policy.actions]
    for number, rule in enumerate(policy.rules):
        patterns += _action_globs(rule.when, ("rules", str(number), "when"))
    for agent_id, spec in policy.agents.registry.items():
        patterns += [(("agents", "registry", agent_id, "capabilities"), p) for p in spec.capabilities]
        patterns += [(("agents", "registry", agent_id, "actions", p), p) for p in spec.actions]
    return [
        (where, f"pattern {pattern!r} matches none of the {len(known)} known actions")
        for where, pattern in patterns
        if not any(fnmatch.fnmatchcase(action, pattern) for action in known)
    ]


def lint(policy: Policy, known_actions: Iterable[str] | None = None) -> list[tuple[tuple[str, ...], str]]:
    """Problems that make part of a valid policy dead or misleading: (where, what) with `where` a key path.

    With `known_actions` (the actions your agents really propose), patterns that match none of them are flagged.
    """
    problems: list[tuple[tuple[str, ...], str]] = []
    if known_actions is not None:
        problems += unmatched_globs(policy, known_actions)
    seen: dict[str, str] = {}
    catch_all: str | None = None
    for number, rule in enumerate(policy.rules, start=1):
        name = rule.name or f"rule {number}"
        if catch_all is not None:
            problems.append(
                (("rules", str(number - 1)), f"{name}: unreachable: {catch_all!r} before it matches everything")
            )
            continue
        key = json.dumps(rule.when.model_dump(mode="json"), sort_keys=True)
        if key in seen:
            problems.append((("rules", str(number - 1)), f"{name}: unreachable: {seen[key]!r} has the same condition"))
        seen.setdefault(key, name)
        if _always(rule.when):
            catch_all = name
    if catch_all is not None and policy.actions:
        problems.append((("actions",), f"unreachable: rule {catch_all!r} matches every proposal first"))
    names = [rule.name for rule in policy.rules if rule.name]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        problems.append(
            (("rules",), f"the name {duplicate!r} is used more than once, so traces cannot tell them apart")
        )
    return problems
