"""Evaluators: checks beside the rules that may object to a proposal, built in or plugged in.

An evaluator looks at a proposal's `Facts` and returns a `Verdict`: no objection, or a tier (usually blocked) with
a reason. The policy file configures them::

    evaluators:
      - name: sql-guard
        type: regex                  # built in: a regular expression searched in one field
        field: args.query
        pattern: "(?i)drop\\s+table"
        reason: dropping tables is never allowed
      - name: recipients
        type: list                   # built in: a field compared with a list of values
        field: args.to
        values: ["@evil.com", "@spam.org"]
        match: suffix
      - name: pii
        type: pii-scanner            # registered in code, or discovered from the entry-point group
        config: {strict: true}
        timeout: 0.5

Custom types are registered on an `EvaluatorRegistry` instance (never globally) with `register(type, factory)`, or
discovered from installed distributions that declare the entry-point group `agent_control_plane.evaluators`
(name = type, object = factory). A factory takes the `EvaluatorSpec` and returns an evaluator. Verdicts combine by
severity: deny beats steer beats approval beats allow.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent_control_plane.errors import PolicyError
from agent_control_plane.policy.conditions import MISSING, Facts, check_field, getter
from agent_control_plane.types.decisions import SEVERITY, ActionTier

ENTRY_POINT_GROUP = "agent_control_plane.evaluators"


@dataclass(frozen=True, slots=True)
class Verdict:
    """An evaluator's answer: `tier` None means no objection."""

    evaluator: str
    tier: ActionTier | None = None
    reason: str | None = None

    @property
    def objects(self) -> bool:
        return self.tier is not None


@runtime_checkable
class Evaluator(Protocol):
    """Anything with a `name` and `evaluate(facts) -> Verdict` (or an async `evaluate`, for checks doing I/O)."""

    name: str

    def evaluate(self, facts: Facts) -> Verdict | Awaitable[Verdict]: ...


class EvaluatorSpec(BaseModel):
    """One entry of the policy's `evaluators` list."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Shown in reasons and traces.")
    type: str = Field(description="regex, list, or a registered / discovered evaluator type.")
    field: str | None = Field(None, description="regex and list: the proposal field to look at (as in conditions).")
    pattern: str | None = Field(None, description="regex: the regular expression to search for.")
    values: list[Any] | None = Field(None, description="list: the values to compare the field with.")
    match: Literal["exact", "prefix", "suffix", "contains"] = Field(
        "exact", description="list: how a value matches the field (strings; exact also compares numbers)."
    )
    when_listed: bool = Field(
        True, description="list: object when the field matches a value (true, a deny list) or when it does not."
    )
    tier: ActionTier = Field(ActionTier.BLOCKED, description="The tier to demand when objecting.")
    reason: str | None = Field(None, description="Why, in words the agent and the operator will read.")
    timeout: float = Field(1.0, gt=0, description="Seconds an async evaluator may take before it counts as deny.")
    config: dict[str, Any] = Field(default_factory=dict, description="Settings for a custom evaluator type.")

    @model_validator(mode="after")
    def _complete(self) -> EvaluatorSpec:
        if self.type in ("regex", "list"):
            if self.field is None:
                raise ValueError(f"a {self.type} evaluator needs a field (e.g. args.query)")
            check_field(self.field)
        if self.type == "regex":
            if self.pattern is None:
                raise ValueError("a regex evaluator needs a pattern")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern: invalid regular expression {self.pattern!r}: {exc}") from None
        if self.type == "list" and not self.values:
            raise ValueError("a list evaluator needs a non-empty values list")
        return self


class RegexEvaluator:
    """Objects when a regular expression finds a match in a string field."""

    def __init__(
        self, name: str, field: str, pattern: str, *, tier: ActionTier = ActionTier.BLOCKED, reason: str | None = None
    ) -> None:
        self.name = name
        self._get = getter(field)
        self._search = re.compile(pattern).search
        self._objection = Verdict(name, tier, reason or f"{field} matches {pattern!r}")
        self._fine = Verdict(name)

    def evaluate(self, facts: Facts) -> Verdict:
        value = self._get(facts)
        return self._objection if isinstance(value, str) and self._search(value) else self._fine


class ListEvaluator:
    """Objects when a field matches one of a list of values (a deny list), or, inverted, when it matches none."""

    def __init__(
        self,
        name: str,
        field: str,
        values: Sequence[Any],
        *,
        match: str = "exact",
        when_listed: bool = True,
        tier: ActionTier = ActionTier.BLOCKED,
        reason: str | None = None,
    ) -> None:
        self.name = name
        self._get = getter(field)
        self._values = tuple(values)
        self._texts = tuple(str(v) for v in values)
        self._match = match
        self._when_listed = when_listed
        listed = "is on" if when_listed else "is not on"
        self._objection = Verdict(name, tier, reason or f"{field} {listed} the {name} list")
        self._fine = Verdict(name)

    def _listed(self, value: Any) -> bool:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if self._match == "exact":
                if item in self._values:
                    return True
            elif isinstance(item, str):
                for text in self._texts:
                    if (
                        (self._match == "prefix" and item.startswith(text))
                        or (self._match == "suffix" and item.endswith(text))
                        or (self._match == "contains" and text in item)
                    ):
                        return True
        return False

    def evaluate(self, facts: Facts) -> Verdict:
        value = self._get(facts)
        present = value is not MISSING
        if present and self._listed(value) == self._when_listed:
            return self._objection
        if not present and not self._when_listed:
            return self._objection  # an allow list admits nothing it cannot see
        return self._fine


Factory = Callable[[EvaluatorSpec], Evaluator]


def _regex(spec: EvaluatorSpec) -> Evaluator:
    assert spec.field is not None and spec.pattern is not None
    return RegexEvaluator(spec.name, spec.field, spec.pattern, tier=spec.tier, reason=spec.reason)


def _list(spec: EvaluatorSpec) -> Evaluator:
    assert spec.field is not None and spec.values is not None
    return ListEvaluator(
        spec.name,
        spec.field,
        spec.values,
        match=spec.match,
        when_listed=spec.when_listed,
        tier=spec.tier,
        reason=spec.reason,
    )


class EvaluatorRegistry:
    """Evaluator types by name for one control plane: the built-ins, registered ones, and discovered plugins."""

    def __init__(self, *, discover: bool = True) -> None:
        self._factories: dict[str, Factory] = {"regex": _regex, "list": _list}
        if discover:
            self.discover()

    def register(self, type_name: str, factory: Factory) -> None:
        """Make `type_name` usable in policies; `factory(spec)` builds the evaluator."""
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", type_name):
            raise ValueError(f"evaluator type {type_name!r} must be lower-case letters, digits, '-' or '_'")
        if type_name in ("regex", "list"):
            raise ValueError(f"evaluator type {type_name!r} is built in")
        self._factories[type_name] = factory

    def discover(self) -> list[str]:
        """Register the factories of the entry-point group `agent_control_plane.evaluators`; returns their types."""
        found = []
        for point in entry_points(group=ENTRY_POINT_GROUP):
            self.register(point.name, point.load())
            found.append(point.name)
        return found

    @property
    def types(self) -> list[str]:
        return sorted(self._factories)

    def create(self, spec: EvaluatorSpec) -> Evaluator:
        factory = self._factories.get(spec.type)
        if factory is None:
            raise PolicyError(
                f"evaluator {spec.name!r}: unknown type {spec.type!r} (known: {', '.join(self.types)}; register "
                f"custom types with EvaluatorRegistry.register or the {ENTRY_POINT_GROUP!r} entry-point group)"
            )
        return factory(spec)


def evaluate_now(evaluator: Evaluator, facts: Facts) -> Verdict:
    """A synchronous evaluator's verdict. An exception, or an answer that is not a `Verdict`, counts as a deny
    naming the evaluator and what went wrong (fail closed), exactly as with `ParallelPolicyEvaluator`."""
    try:
        result = evaluator.evaluate(facts)
    except Exception as exc:
        return _failed(evaluator, exc)
    return _checked(evaluator, result)


def _failed(evaluator: Evaluator, exc: Exception) -> Verdict:
    return Verdict(
        evaluator.name,
        ActionTier.BLOCKED,
        f"evaluator {evaluator.name!r} failed: {type(exc).__name__}: {exc} (fail closed)",
    )


def _checked(evaluator: Evaluator, result: object) -> Verdict:
    if isinstance(result, Verdict):
        return result
    return Verdict(
        evaluator.name,
        ActionTier.BLOCKED,
        f"evaluator {evaluator.name!r} returned {type(result).__name__}, not a Verdict (fail closed)",
    )


def most_severe(verdicts: Sequence[Verdict]) -> Verdict | None:
    """The objection that wins (deny over steer over approval over allow), or None when nobody objects."""
    worst: Verdict | None = None
    worst_severity = -1
    for verdict in verdicts:
        if verdict.tier is not None and SEVERITY[verdict.tier] > worst_severity:
            worst, worst_severity = verdict, SEVERITY[verdict.tier]
    return worst


class ParallelPolicyEvaluator:
    """Runs evaluators concurrently; the first deny cancels the rest. Errors and time-outs count as deny."""

    def __init__(
        self, evaluators: Sequence[Evaluator], *, timeouts: dict[str, float] | None = None, default_timeout: float = 1.0
    ) -> None:
        self.evaluators = tuple(evaluators)
        self._timeouts = dict(timeouts or {})
        self._default_timeout = default_timeout

    async def _one(self, evaluator: Evaluator, facts: Facts) -> Verdict:
        timeout = self._timeouts.get(evaluator.name, self._default_timeout)
        try:
            result = evaluator.evaluate(facts)
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, timeout)
        except TimeoutError:
            return Verdict(
                evaluator.name,
                ActionTier.BLOCKED,
                f"evaluator {evaluator.name!r} timed out after {timeout:g}s (fail closed)",
            )
        except Exception as exc:
            return _failed(evaluator, exc)
        return _checked(evaluator, result)

    async def evaluate(self, facts: Facts) -> list[Verdict]:
        """Every verdict gathered before the first deny (that deny included), in completion order."""
        tasks = [asyncio.ensure_future(self._one(evaluator, facts)) for evaluator in self.evaluators]
        verdicts: list[Verdict] = []
        try:
            for finished in asyncio.as_completed(tasks):
                verdict = await finished
                verdicts.append(verdict)
                if verdict.tier is ActionTier.BLOCKED:
                    break
        finally:
            for task in tasks:
                task.cancel()
        return verdicts
