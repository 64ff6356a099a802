"""Condition trees: their file format, and their compilation into plain closures.

A condition is one of::

    {field: args.amount, gt: 1000}          # a comparison on one field of the proposal
    {all: [cond, cond, ...]}                # every one holds
    {any: [cond, cond, ...]}                # at least one holds
    {not: cond}                             # it does not hold

Fields: `action`, `resource`, `agent`, `cost`, `risk`, `mode`, `org`, `team`, `user`, `args.<dotted.path>`,
`session.action_count`, `session.spent_cost`, `time.hour`, `time.minute`, `time.weekday` (0 = Monday, UTC clock).
Operators: eq, ne, lt, lte, gt, gte, in, not_in, contains, matches (regex search), glob, exists.

A comparison on a field the proposal does not have is false (only `exists: false` holds), so a condition never
raises while deciding. Compiled conditions are closures over precomputed getters and constants: no parsing, no
generators and no allocation beyond the comparison itself at decision time.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from operator import attrgetter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "contains", "matches", "glob", "exists")
SIMPLE_FIELDS = ("action", "resource", "agent", "cost", "risk", "mode", "org", "team", "user")
SESSION_FIELDS = ("session.action_count", "session.spent_cost")
TIME_FIELDS = ("time.hour", "time.minute", "time.weekday")

MISSING = object()
"""What a getter returns for a field the proposal does not have."""


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything a condition may look at: the proposal, who makes it, the session so far, and the time."""

    action: str
    args: Mapping[str, Any] = field(default_factory=dict)
    resource: str | None = None
    agent: str | None = None
    cost: Decimal = Decimal(0)
    risk: str | None = None
    mode: str = "live"
    org: str | None = None
    team: str | None = None
    user: str | None = None
    session_action_count: int = 0
    session_spent_cost: Decimal = Decimal(0)
    now: datetime = datetime(1970, 1, 1, tzinfo=UTC)


Predicate = Callable[[Facts], bool]
Getter = Callable[[Facts], Any]


class Condition(BaseModel):
    """One node of a condition tree: a comparison (`field` + one operator) or `all` / `any` / `not`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    all: list[Condition] | None = Field(None, description="Holds when every listed condition holds.")
    any: list[Condition] | None = Field(None, description="Holds when at least one listed condition holds.")
    not_: Condition | None = Field(None, alias="not", description="Holds when the given condition does not.")
    field: str | None = Field(
        None,
        description="What to compare: action, resource, agent, cost, risk, mode, org, team, user, args.<path>, "
        "session.action_count, session.spent_cost, time.hour, time.minute, time.weekday.",
    )
    eq: Any = Field(None, description="Equal to this value.")
    ne: Any = Field(None, description="Not equal to this value.")
    lt: Any = Field(None, description="Less than this number (or string).")
    lte: Any = Field(None, description="Less than or equal to this number (or string).")
    gt: Any = Field(None, description="Greater than this number (or string).")
    gte: Any = Field(None, description="Greater than or equal to this number (or string).")
    in_: list[Any] | None = Field(None, alias="in", description="One of these values.")
    not_in: list[Any] | None = Field(None, description="None of these values.")
    contains: Any = Field(None, description="A string containing this text, or a list containing this value.")
    matches: str | None = Field(None, description="A string in which this regular expression finds a match.")
    glob: str | None = Field(None, description="A string matching this glob pattern (*, ?, [abc]).")
    exists: bool | None = Field(None, description="true: the field is present; false: it is absent.")

    @model_validator(mode="before")
    @classmethod
    def _one_shape(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("a condition is a mapping such as {field: action, eq: deploy} or {all: [...]}")
        shapes = [key for key in ("all", "any", "not", "not_", "field") if key in data]
        if len(shapes) != 1:
            raise ValueError(
                "a condition needs exactly one of: field (with one operator), all, any, not"
                + (f" (found {', '.join(shapes)})" if shapes else "")
            )
        operators = [key for key in data if key in OPERATORS or key == "in_"]
        if shapes[0] == "field":
            unknown = [key for key in data if key != "field" and key not in operators]
            if unknown:
                raise ValueError(f"unknown operator {unknown[0]!r} (expected one of {', '.join(OPERATORS)})")
            if len(operators) != 1:
                found = f" (found {', '.join(operators)})" if operators else ""
                raise ValueError(f"a field condition needs exactly one operator of {', '.join(OPERATORS)}{found}")
        elif operators:
            raise ValueError(f"operator {operators[0]!r} belongs in a field condition, not beside {shapes[0]!r}")
        return data

    @model_validator(mode="after")
    def _valid_operands(self) -> Condition:
        if self.field is not None:
            check_field(self.field)
            if self.matches is not None:
                try:
                    re.compile(self.matches)
                except re.error as exc:
                    raise ValueError(f"matches: invalid regular expression {self.matches!r}: {exc}") from None
            for name in ("lt", "lte", "gt", "gte"):
                value = getattr(self, name)
                if value is not None and (isinstance(value, bool) or not isinstance(value, int | float | str)):
                    raise ValueError(f"{name} compares with a number or a string, not {value!r}")
        for children in (self.all, self.any):
            if children is not None and not children:
                raise ValueError("all / any need at least one condition")
        return self

    @model_serializer(mode="plain")
    def _as_written(self) -> dict[str, Any]:
        # Only the keys that define the node, so a dumped condition validates again as the same condition.
        if self.all is not None:
            return {"all": self.all}
        if self.any is not None:
            return {"any": self.any}
        if self.not_ is not None:
            return {"not": self.not_}
        op, value = self.operator()
        return {"field": self.field, op: value}

    def operator(self) -> tuple[str, Any]:
        for name in OPERATORS:
            value = getattr(self, "in_" if name == "in" else name)
            if value is not None or name in self.model_fields_set or (name == "in" and "in_" in self.model_fields_set):
                return name, value
        raise AssertionError("validated conditions always have an operator")


def check_field(name: str) -> None:
    if name in SIMPLE_FIELDS or name in SESSION_FIELDS or name in TIME_FIELDS:
        return
    if name.startswith("args.") and all(part for part in name[5:].split(".")):
        return
    raise ValueError(
        f"unknown field {name!r} (expected one of {', '.join(SIMPLE_FIELDS + SESSION_FIELDS + TIME_FIELDS)}, "
        "or args.<path>)"
    )


def getter(name: str) -> Getter:
    """A function reading field `name` (already checked) from facts; `MISSING` when absent."""
    simple: dict[str, Getter] = {
        "action": lambda f: f.action,
        "resource": lambda f: f.resource,
        "agent": lambda f: f.agent,
        "cost": lambda f: f.cost,
        "risk": lambda f: f.risk,
        "mode": lambda f: f.mode,
        "org": lambda f: f.org,
        "team": lambda f: f.team,
        "user": lambda f: f.user,
        "session.action_count": lambda f: f.session_action_count,
        "session.spent_cost": lambda f: f.session_spent_cost,
        "time.hour": lambda f: f.now.astimezone(UTC).hour,
        "time.minute": lambda f: f.now.astimezone(UTC).minute,
        "time.weekday": lambda f: f.now.astimezone(UTC).weekday(),
    }
    if name in simple:
        plain = simple[name]
        return lambda f: MISSING if (value := plain(f)) is None else value
    path = tuple(name[5:].split("."))

    def from_args(facts: Facts) -> Any:
        value: Any = facts.args
        for part in path:
            if isinstance(value, Mapping):
                value = value.get(part, MISSING)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return MISSING
            if value is MISSING:
                return MISSING
        return value

    return from_args


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | float):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return None
    return None


def _same(left: Any, right: Any) -> bool:
    """Equality as a policy author means it: 1 == 1.0 == Decimal("1"), but True is not 1 and "1" is not 1."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    a, b = _number(left), _number(right)
    if a is not None or b is not None:
        return a is not None and b is not None and a == b
    return bool(left == right)


def _ordered(op: str, constant: Any) -> Callable[[Any], bool]:
    number = _number(constant)
    compare: Callable[[Any, Any], bool] = {
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
    }[op]
    if number is not None:

        def numeric(value: Any) -> bool:
            candidate = _number(value)
            return candidate is not None and compare(candidate, number)

        return numeric

    def textual(value: Any) -> bool:
        return isinstance(value, str) and compare(value, constant)

    return textual


def _test(op: str, constant: Any) -> Callable[[Any], bool]:
    """A predicate on a present field value."""
    if op == "eq":
        return lambda value: _same(value, constant)
    if op == "ne":
        return lambda value: not _same(value, constant)
    if op in ("lt", "lte", "gt", "gte"):
        return _ordered(op, constant)
    if op in ("in", "not_in"):
        options = list(constant)

        def member(value: Any) -> bool:
            for option in options:  # noqa: SIM110 - a loop, not a generator, on the decision path
                if _same(value, option):
                    return True
            return False

        return member if op == "in" else (lambda value: not member(value))
    if op == "contains":

        def contains(value: Any) -> bool:
            if isinstance(value, str):
                return isinstance(constant, str) and constant in value
            if isinstance(value, list):
                for item in value:
                    if _same(item, constant):
                        return True
            return False

        return contains
    if op == "matches":
        search = re.compile(constant).search
        return lambda value: isinstance(value, str) and search(value) is not None
    if op == "glob":
        match = re.compile(fnmatch.translate(constant)).match
        return lambda value: isinstance(value, str) and match(value) is not None
    raise AssertionError(f"unhandled operator {op}")


def fields_used(condition: Condition) -> set[str]:
    """Every field a condition tree reads (to know, for instance, whether session facts must be loaded)."""
    if condition.field is not None:
        return {condition.field}
    children = condition.all or condition.any or ([condition.not_] if condition.not_ is not None else [])
    used: set[str] = set()
    for child in children:
        used |= fields_used(child)
    return used


def compile_condition(condition: Condition) -> Predicate:
    """Turn a validated condition tree into one closure `Facts -> bool`."""
    if condition.all is not None:
        parts = tuple(compile_condition(child) for child in condition.all)

        def every(facts: Facts) -> bool:
            for part in parts:  # noqa: SIM110 - a loop, not a generator, on the decision path
                if not part(facts):
                    return False
            return True

        return every
    if condition.any is not None:
        parts = tuple(compile_condition(child) for child in condition.any)

        def some(facts: Facts) -> bool:
            for part in parts:  # noqa: SIM110 - a loop, not a generator, on the decision path
                if part(facts):
                    return True
            return False

        return some
    if condition.not_ is not None:
        inner = compile_condition(condition.not_)
        return lambda facts: not inner(facts)
    assert condition.field is not None
    op, constant = condition.operator()
    fast = _text_leaf(condition.field, op, constant)
    if fast is not None:
        return fast
    get = getter(condition.field)
    if op == "exists":
        wanted = bool(constant)
        return lambda facts: (get(facts) is not MISSING) is wanted
    test = _test(op, constant)
    return lambda facts: (value := get(facts)) is not MISSING and test(value)


_TEXT_FIELDS = ("action", "resource", "agent", "risk", "mode", "org", "team", "user")


def _text_leaf(field: str, op: str, constant: Any) -> Predicate | None:
    """Comparisons of a text field with text constants, the most common leaves, as a single closure each.

    Same semantics as the general path: these fields hold a str or None (missing), a str only ever equals a str,
    and a missing field satisfies no comparison.
    """
    if field not in _TEXT_FIELDS:
        return None
    if op in ("in", "not_in") and all(isinstance(option, str) for option in constant):
        options = frozenset(constant)
        if field == "action":
            return (lambda f: f.action in options) if op == "in" else (lambda f: f.action not in options)
        get = attrgetter(field)
        if op == "in":
            return lambda f: get(f) in options
        return lambda f: (value := get(f)) is not None and value not in options
    if op in ("eq", "ne") and isinstance(constant, str):
        if field == "action":
            return (lambda f: f.action == constant) if op == "eq" else (lambda f: f.action != constant)
        get = attrgetter(field)
        if op == "eq":
            return lambda f: get(f) == constant
        return lambda f: (value := get(f)) is not None and value != constant
    return None


def required_actions(condition: Condition) -> frozenset[str] | None:
    """The action names a condition can hold for, when it pins them down (e.g. {field: action, eq: deploy} or an
    `all` containing one); None when any action might do. Used to index rules by action."""
    if condition.field == "action":
        op, constant = condition.operator()
        if op == "eq" and isinstance(constant, str):
            return frozenset((constant,))
        if op == "in" and all(isinstance(option, str) for option in constant):
            return frozenset(constant)
        return None
    if condition.all is not None:
        pinned = [found for child in condition.all if (found := required_actions(child)) is not None]
        return frozenset.intersection(*pinned) if pinned else None
    if condition.any is not None:
        branches = [required_actions(child) for child in condition.any]
        if any(branch is None for branch in branches):
            return None
        return frozenset().union(*(branch for branch in branches if branch is not None))
    return None


class ConditionEvaluator:
    """A condition tree compiled once; `holds(facts)` evaluates it (recursive all / any / not over comparisons)."""

    __slots__ = ("condition", "fields", "holds")

    def __init__(self, condition: Condition | Mapping[str, Any]) -> None:
        self.condition = condition if isinstance(condition, Condition) else Condition.model_validate(condition)
        self.fields = frozenset(fields_used(self.condition))
        self.holds: Predicate = compile_condition(self.condition)
