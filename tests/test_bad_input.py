"""Bad input is refused whole, with a typed error that says what was wrong, and nothing is written."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from agent_control_plane import ControlPlaneFacade, InvalidInputError, PolicyError


@pytest.mark.parametrize(
    ("cost", "message"),
    [
        (Decimal("-1"), "must not be negative"),
        (float("nan"), "finite"),
        (Decimal("NaN"), "finite"),
        (float("inf"), "finite"),
        ("abc", "not a number"),
        (True, "not a bool"),
        (Decimal("0.0000000001"), "more than 9 decimal places"),
        ([1], "must be a Decimal"),
    ],
)
def test_bad_costs_are_refused_and_nothing_is_written(cp: ControlPlaneFacade, cost: Any, message: str) -> None:
    sid = cp.open_session("costs")
    with pytest.raises(InvalidInputError, match=message):
        cp.propose(sid, action="read_x", cost=cost)
    assert len(cp.replay(sid)) == 1
    assert cp.get_remaining_budget(sid)["action_count"] == 0


def test_float_costs_are_taken_as_written(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("floats")
    d = cp.propose(sid, action="read_x", cost=0.1)
    assert cp.settle(d.proposal_id).actual_cost == Decimal("0.1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"when": object()}, "not JSON-serialisable"),
        ({"x": float("nan")}, "not valid JSON"),
        ({1: "non-string key"}, None),
        (["not", "a", "dict"], "must be a JSON object"),
        ({"blob": "x" * 70_000}, "over the limit of 65536 bytes"),
    ],
)
def test_bad_payloads_are_refused(cp: ControlPlaneFacade, args: Any, message: str | None) -> None:
    sid = cp.open_session("payloads")
    if message is None:
        # JSON turns non-string keys into strings; that is accepted, the same way json.dumps does.
        cp.propose(sid, action="read_x", args=args)
        return
    with pytest.raises(InvalidInputError, match=message):
        cp.propose(sid, action="read_x", args=args)
    with pytest.raises(InvalidInputError, match=message.split(" ")[0]):
        cp.emit(sid, "note", args)
    assert len(cp.replay(sid)) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_cost": Decimal("-5")},
        {"max_action_count": -1},
        {"max_action_count": 1.5},
        {"agent_id": ""},
    ],
)
def test_bad_session_limits_are_refused(cp: ControlPlaneFacade, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        cp.open_session("bad", **kwargs)
    assert cp.list_sessions() == []


def test_bad_names_and_outcomes_are_refused(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("names")
    with pytest.raises(InvalidInputError, match="action must be non-empty"):
        cp.propose(sid, action=" read_x")
    with pytest.raises(InvalidInputError, match="action must be one line"):
        cp.propose(sid, action="read\nx")
    d = cp.propose(sid, action="read_x")
    with pytest.raises(InvalidInputError, match="outcome 'maybe' is not one of succeeded, failed"):
        cp.settle(d.proposal_id, outcome="maybe")
    assert cp.settle(d.proposal_id).outcome == "succeeded"


def test_invalid_policy_is_refused_before_anything_connects() -> None:
    with pytest.raises(PolicyError, match="unknown tier 'allow'"):
        ControlPlaneFacade.from_database_url("sqlite://", policy={"actions": {"x": "allow"}})
    with pytest.raises(ValueError, match="table_prefix"):
        ControlPlaneFacade.from_database_url("sqlite://", table_prefix="Bad-Prefix")
