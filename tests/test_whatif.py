"""What-if: recorded proposals decided again under a new policy, with nothing written."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent_control_plane import ActionTier, ControlPlaneFacade, ManualClock, SessionNotFoundError
from agent_control_plane.cli import app
from conftest import Backend

OLD = {"default_tier": "always_approve", "actions": {"read_*": "unrestricted", "deploy": "unrestricted"}}
NEW = {
    "default_tier": "always_approve",
    "actions": {"read_*": "unrestricted", "deploy": "blocked"},
    "rules": [
        {
            "name": "third-read-needs-a-human",
            "when": {"field": "session.action_count", "gte": 2},
            "tier": "always_approve",
        }
    ],
}


def _traffic(cp: ControlPlaneFacade, clock: ManualClock) -> tuple[str, str]:
    first = cp.open_session("first", policy=OLD)
    for action in ("read_a", "read_b", "deploy"):
        d = cp.propose(first, action=action, cost=Decimal("0.5"))
        cp.settle(d.proposal_id)
    clock.advance(timedelta(days=3))
    second = cp.open_session("second", policy=OLD)
    cp.propose(second, action="deploy")
    cp.propose(second, action="launch")  # default tier under both policies: no change
    return first, second


def test_what_if_reports_every_changed_decision_and_writes_nothing(cp: ControlPlaneFacade, clock: ManualClock) -> None:
    first, second = _traffic(cp, clock)
    before = {sid: len(cp.replay(sid)) for sid in (first, second)}
    report = cp.what_if(NEW)
    assert report.evaluated == 5
    assert {(c.proposal.session_id, c.proposal.facts.action, c.tier) for c in report.changes} == {
        (first, "deploy", ActionTier.ALWAYS_APPROVE),  # the rule sees two earlier allowed actions first
        (second, "deploy", ActionTier.BLOCKED),
    }
    assert report.transitions == {
        (ActionTier.UNRESTRICTED, ActionTier.ALWAYS_APPROVE): 1,
        (ActionTier.UNRESTRICTED, ActionTier.BLOCKED): 1,
    }
    assert {sid: len(cp.replay(sid)) for sid in (first, second)} == before
    assert all(r.ok for r in cp.verify_all())


def test_what_if_filters_by_session_and_by_age(cp: ControlPlaneFacade, clock: ManualClock) -> None:
    first, second = _traffic(cp, clock)
    assert cp.what_if(NEW, session_id=first).evaluated == 3
    recent = cp.what_if(NEW, since=timedelta(days=1))
    assert recent.evaluated == 2 and {c.proposal.session_id for c in recent.changes} == {second}
    with pytest.raises(SessionNotFoundError):
        cp.what_if(NEW, session_id="nope")


def test_acp_policy_whatif_prints_transitions(
    cp: ControlPlaneFacade, clock: ManualClock, backend: Backend, table_prefix: str, tmp_path: Path
) -> None:
    _traffic(cp, clock)
    new_file = tmp_path / "new.yaml"
    new_file.write_text(json.dumps(NEW))
    base = ["--database-url", backend.url, "--table-prefix", table_prefix, "policy", "whatif", str(new_file)]
    result = CliRunner().invoke(app, [*base, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["evaluated"] == 5
    assert report["transitions"] == {"unrestricted -> always_approve": 1, "unrestricted -> blocked": 1}
    assert {c["new"]["rule"] for c in report["changes"]} == {"third-read-needs-a-human", "deploy"}
    table = CliRunner().invoke(app, base)
    assert "5 recorded proposals decided again" in table.output and "2 would change" in table.output
    bad = CliRunner().invoke(app, [*base, "--since", "yesterday"])
    assert bad.exit_code == 2 and "expected an age such as 7d" in bad.output
