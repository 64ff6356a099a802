"""Condition trees: validation errors, semantics, and equality with a plain reference interpreter."""

from __future__ import annotations

import fnmatch
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agent_control_plane.policy.conditions import Condition, Facts, compile_condition


def holds(tree: dict[str, Any], facts: Facts) -> bool:
    return compile_condition(Condition.model_validate(tree))(facts)


def test_nested_tree_over_args_resource_and_cost() -> None:
    tree = {
        "all": [
            {"field": "action", "eq": "send_email"},
            {"any": [{"field": "args.to.domain", "in": ["evil.com", "spam.org"]}, {"field": "cost", "gt": 5}]},
            {"not": {"field": "resource", "glob": "sandbox/*"}},
        ]
    }
    facts = Facts(action="send_email", args={"to": {"domain": "evil.com"}}, resource="prod/mail", cost=Decimal("1"))
    assert holds(tree, facts)
    assert not holds(tree, Facts(action="send_email", args={"to": {"domain": "ok.com"}}, resource="prod/mail"))
    assert not holds(tree, Facts(action="send_email", args={"to": {"domain": "evil.com"}}, resource="sandbox/x"))


def test_regex_glob_contains_and_exists() -> None:
    sql = Facts(action="run_sql", args={"query": "drop  TABLE users", "tags": ["a", 2]})
    assert holds({"field": "args.query", "matches": r"(?i)drop\s+table"}, sql)
    assert holds({"field": "args.tags", "contains": 2}, sql)
    assert holds({"field": "args.query", "contains": "TABLE"}, sql)
    assert holds({"field": "args.tags.0", "eq": "a"}, sql)
    assert holds({"field": "args.missing", "exists": False}, sql)
    assert not holds({"field": "args.missing", "ne": "x"}, sql)  # a missing field satisfies no comparison
    assert holds({"field": "action", "glob": "run_*"}, sql)


def test_numbers_compare_as_numbers_and_bools_stay_bools() -> None:
    facts = Facts(action="pay", args={"amount": 1000.5, "flag": True, "text": "7"}, cost=Decimal("0.0042"))
    assert holds({"field": "args.amount", "gt": 1000}, facts)
    assert holds({"field": "cost", "lte": 0.0042}, facts)
    assert not holds({"field": "args.flag", "eq": 1}, facts)
    assert holds({"field": "args.flag", "eq": True}, facts)
    assert not holds({"field": "args.text", "eq": 7}, facts)
    assert not holds({"field": "args.text", "gt": 1}, facts)


def test_session_facts_and_time_of_day() -> None:
    facts = Facts(
        action="x",
        session_action_count=10,
        session_spent_cost=Decimal("4.5"),
        now=datetime(2026, 1, 5, 22, 30, tzinfo=UTC),
    )
    assert holds({"field": "session.action_count", "gte": 10}, facts)
    assert holds({"field": "session.spent_cost", "lt": 5}, facts)
    assert holds({"all": [{"field": "time.hour", "gte": 22}, {"field": "time.weekday", "eq": 0}]}, facts)


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"field": "action", "greater_ish": 1}, "unknown operator 'greater_ish' (expected one of eq, ne, lt"),
        ({"field": "nope", "eq": 1}, "unknown field 'nope'"),
        ({"field": "action"}, "needs exactly one operator"),
        ({"field": "action", "eq": 1, "ne": 2}, "needs exactly one operator"),
        ({"all": []}, "at least one condition"),
        ({"field": "args.q", "matches": "("}, "invalid regular expression"),
        ({"any": [{"field": "action", "eq": 1}], "not": {"field": "action", "eq": 1}}, "exactly one of"),
        ({"field": "cost", "gt": [1]}, "compares with a number or a string"),
        ("action == x", "a condition is a mapping"),
    ],
)
def test_invalid_conditions_are_refused_with_a_reason(tree: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        Condition.model_validate(tree)


# --- property: compiled closures agree with a direct, recursive reference interpreter ---------------------------

_FIELDS = ["action", "resource", "cost", "args.n", "args.s", "args.l", "args.deep.v"]
_values = st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b", "ab", "x*"]), st.booleans())


def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    field = st.sampled_from(_FIELDS)
    return st.one_of(
        st.builds(lambda f, op, v: {"field": f, op: v}, field, st.sampled_from(["eq", "ne"]), _values),
        st.builds(
            lambda f, op, v: {"field": f, op: v},
            field,
            st.sampled_from(["lt", "lte", "gt", "gte"]),
            st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b"])),
        ),
        st.builds(
            lambda f, op, v: {"field": f, op: v},
            field,
            st.sampled_from(["in", "not_in"]),
            st.lists(_values, max_size=3),
        ),
        st.builds(lambda f, v: {"field": f, "contains": v}, field, _values),
        st.builds(lambda f, v: {"field": f, "matches": v}, field, st.sampled_from(["^a", "b$", "a|x"])),
        st.builds(lambda f, v: {"field": f, "glob": v}, field, st.sampled_from(["a*", "?b", "*"])),
        st.builds(lambda f, v: {"field": f, "exists": v}, field, st.booleans()),
    )


_trees = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=8,
)
_arg_values = st.one_of(st.none(), _values, st.lists(_values, max_size=3))


@st.composite
def _facts(draw: st.DrawFn) -> Facts:
    args: dict[str, Any] = {}
    for key in ("n", "s", "l"):
        value = draw(_arg_values)
        if value is not None:
            args[key] = value
    if draw(st.booleans()):
        args["deep"] = {"v": draw(_values)}
    return Facts(
        action=draw(st.sampled_from(["a", "ab", "b"])),
        resource=draw(st.sampled_from([None, "a", "xb"])),
        cost=Decimal(draw(st.integers(0, 3))),
        args=args,
    )


_ABSENT = object()


def _lookup(facts: Facts, field: str) -> Any:
    if field == "action":
        return facts.action
    if field == "resource":
        return _ABSENT if facts.resource is None else facts.resource
    if field == "cost":
        return facts.cost
    value: Any = facts.args
    for part in field.split(".")[1:]:
        if not isinstance(value, dict) or part not in value:
            return _ABSENT
        value = value[part]
    return value


def _num(x: Any) -> Decimal | None:
    return None if isinstance(x, bool) or not isinstance(x, int | float | Decimal) else Decimal(str(x))


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if _num(a) is not None or _num(b) is not None:
        return _num(a) is not None and _num(a) == _num(b)
    return bool(a == b)


def reference(tree: dict[str, Any], facts: Facts) -> bool:
    if "all" in tree:
        return all(reference(t, facts) for t in tree["all"])
    if "any" in tree:
        return any(reference(t, facts) for t in tree["any"])
    if "not" in tree:
        return not reference(tree["not"], facts)
    ((op, want),) = ((k, v) for k, v in tree.items() if k != "field")
    value = _lookup(facts, tree["field"])
    if op == "exists":
        return (value is not _ABSENT) == want
    if value is _ABSENT:
        return False
    if op == "eq":
        return _eq(value, want)
    if op == "ne":
        return not _eq(value, want)
    if op in ("lt", "lte", "gt", "gte"):
        ops = {"lt": "__lt__", "lte": "__le__", "gt": "__gt__", "gte": "__ge__"}
        if _num(want) is not None:
            return _num(value) is not None and getattr(_num(value), ops[op])(_num(want))
        return isinstance(value, str) and getattr(value, ops[op])(want)
    if op == "in":
        return any(_eq(value, w) for w in want)
    if op == "not_in":
        return not any(_eq(value, w) for w in want)
    if op == "contains":
        if isinstance(value, str):
            return isinstance(want, str) and want in value
        return isinstance(value, list) and any(_eq(item, want) for item in value)
    if op == "matches":
        return isinstance(value, str) and re.search(want, value) is not None
    if op == "glob":
        return isinstance(value, str) and fnmatch.fnmatchcase(value, want)
    raise AssertionError(op)


@settings(max_examples=400)
@given(tree=_trees, facts=_facts())
def test_compiled_conditions_agree_with_the_reference_interpreter(tree: dict[str, Any], facts: Facts) -> None:
    assert holds(tree, facts) == reference(tree, facts)
