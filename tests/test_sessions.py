"""Session lifecycle and the policy snapshot frozen at open."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_control_plane import (
    ControlPlaneFacade,
    DecisionCode,
    ManualClock,
    PolicyError,
    SessionNotFoundError,
    SessionStateError,
    SessionStatus,
)
from conftest import Backend


def test_paused_completed_and_aborted_sessions_take_no_proposals(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("life")
    assert cp.get_session(sid).status is SessionStatus.ACTIVE
    cp.pause_session(sid, reason="lunch")
    d = cp.propose(sid, action="read_x")
    assert not d.allowed and d.code is DecisionCode.SESSION_NOT_ACTIVE and "paused" in d.reason
    cp.resume_session(sid)
    assert cp.propose(sid, action="read_x").allowed
    info = cp.close_session(sid)
    assert info.status is SessionStatus.COMPLETED
    assert "completed" in cp.propose(sid, action="read_x").reason
    other = cp.open_session("other")
    cp.abort_session(other, reason="bad plan")
    assert cp.propose(other, action="read_x").code is DecisionCode.SESSION_NOT_ACTIVE


def test_open_reservations_can_be_settled_after_close(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("closing")
    d = cp.propose(sid, action="read_x", cost="0.5")
    cp.close_session(sid)
    cp.settle(d.proposal_id, actual_cost="0.5")
    assert cp.get_remaining_budget(sid)["spent_cost"] == 0.5


def test_illegal_transitions_are_refused_and_logged_transitions_are_kept(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("strict")
    cp.close_session(sid)
    with pytest.raises(SessionStateError, match="is completed; it cannot become active"):
        cp.resume_session(sid)
    changes = [e.payload for e in cp.replay(sid) if e.kind == "session.status_changed"]
    assert changes == [{"from": "active", "to": "completed", "reason": None}]
    with pytest.raises(SessionNotFoundError):
        cp.pause_session("no-such-session")


def test_running_session_keeps_its_policy_snapshot(backend: Backend, table_prefix: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("actions:\n  deploy: unrestricted\n")
    before = ControlPlaneFacade.from_database_url(backend.url, policy=policy, table_prefix=table_prefix)
    before.setup()
    old = before.open_session("opened under the old policy")
    before.close()

    policy.write_text("actions:\n  deploy: blocked\n")
    after = ControlPlaneFacade.from_database_url(backend.url, policy=policy, table_prefix=table_prefix)
    new = after.open_session("opened under the new policy")
    assert after.propose(old, action="deploy").allowed
    assert after.propose(new, action="deploy").code is DecisionCode.POLICY_BLOCKED
    assert after.get_session(old).policy_hash != after.get_session(new).policy_hash
    after.close()


def test_list_sessions_filters_by_status_and_hides_the_control_stream(
    cp: ControlPlaneFacade, clock: ManualClock
) -> None:
    a = cp.open_session("a", agent_id="x")
    clock.advance(1)
    b = cp.open_session("b")
    cp.pause_session(b)
    assert [s.session_id for s in cp.list_sessions()] == [a, b]
    assert [s.session_id for s in cp.list_sessions(status="paused")] == [b]
    assert cp.list_sessions(limit=1)[0].name == "a"


def test_a_per_session_policy_overrides_the_default(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("strict one", policy={"default_tier": "blocked"})
    assert cp.propose(sid, action="read_x").code is DecisionCode.POLICY_BLOCKED


def test_set_policy_applies_to_new_sessions_and_refuses_an_invalid_one(cp: ControlPlaneFacade) -> None:
    running = cp.open_session("before the change")
    digest = cp.set_policy({"actions": {"read_*": "blocked"}})
    after = cp.open_session("after the change")
    assert cp.get_session(after).policy_hash == digest
    assert cp.propose(running, action="read_x").allowed
    assert cp.propose(after, action="read_x").code is DecisionCode.POLICY_BLOCKED
    with pytest.raises(PolicyError, match="unknown tier 'nope'"):
        cp.set_policy({"actions": {"read_*": "nope"}})
    assert cp.get_session(cp.open_session("still the last valid one")).policy_hash == digest
