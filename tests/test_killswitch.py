"""Kill switches: scopes, attribution, release, and visibility across processes."""

from __future__ import annotations

import multiprocessing
from decimal import Decimal

import pytest

from agent_control_plane import ControlPlaneFacade, DecisionCode, InvalidInputError, KillScope, NotFoundError
from conftest import POLICY, Backend


def test_system_kill_denies_every_session_and_names_who_engaged_it(cp: ControlPlaneFacade) -> None:
    a, b = cp.open_session("a"), cp.open_session("b")
    info = cp.kill_system(reason="incident 42", by="alice")
    for sid in (a, b):
        d = cp.propose(sid, action="read_x")
        assert not d.allowed and d.code is DecisionCode.KILLED
        assert "system" in d.reason and "alice" in d.reason and "incident 42" in d.reason
    assert cp.list_kills() == [info]
    released = cp.release_kill("system", reason="resolved", by="bob")
    assert released.released_by == "bob" and released.release_reason == "resolved"
    assert cp.propose(a, action="read_x").allowed
    assert cp.list_kills() == [] and len(cp.list_kills(engaged_only=False)) == 1


def test_session_kill_stops_only_that_session_and_is_logged_there(cp: ControlPlaneFacade) -> None:
    a, b = cp.open_session("a"), cp.open_session("b")
    cp.kill_session(a, reason="runaway", by="ops")
    assert cp.propose(a, action="read_x").code is DecisionCode.KILLED
    assert cp.propose(b, action="read_x").allowed
    kinds = [e.kind for e in cp.replay(a)]
    assert "kill.engaged" in kinds
    cp.release_kill(KillScope.SESSION, a, reason="fixed", by="ops")
    assert cp.propose(a, action="read_x").allowed
    assert [e.kind for e in cp.replay(a)][-2] == "kill.released"


def test_agent_kill_covers_proposals_by_that_agent_in_any_session(cp: ControlPlaneFacade) -> None:
    mine = cp.open_session("mine", agent_id="rogue")
    shared = cp.open_session("shared")
    cp.kill_agent("rogue", reason="misbehaving", by="ops")
    assert cp.propose(mine, action="read_x").code is DecisionCode.KILLED  # the session's own agent
    assert cp.propose(shared, action="read_x", agent_id="rogue").code is DecisionCode.KILLED
    assert cp.propose(shared, action="read_x", agent_id="helper").allowed
    # A refused tier still reports the kill first: the most urgent cause.
    assert cp.propose(shared, action="delete_x", agent_id="rogue").code is DecisionCode.KILLED


def test_engaging_twice_keeps_one_switch(cp: ControlPlaneFacade) -> None:
    first = cp.kill_system(reason="one", by="a")
    second = cp.kill_system(reason="two", by="b")
    assert second.kill_id == first.kill_id and len(cp.list_kills()) == 1
    assert cp.verify("control").ok


def test_release_without_an_engaged_switch_and_bad_targets_are_refused(cp: ControlPlaneFacade) -> None:
    with pytest.raises(NotFoundError, match="no engaged kill switch for agent x"):
        cp.release_kill("agent", "x", reason="nothing")
    with pytest.raises(InvalidInputError, match="not one of"):
        cp.release_kill("planet", reason="nope")
    with pytest.raises(InvalidInputError, match="needs the session id"):
        cp.release_kill("session", reason="nope")
    with pytest.raises(InvalidInputError, match="reason is required"):
        cp.kill_system(reason="  ")
    with pytest.raises(NotFoundError):
        cp.kill_session("no-such-session", reason="x")


def _kill_from_other_process(url: str, prefix: str) -> None:
    with ControlPlaneFacade.from_database_url(url, table_prefix=prefix) as other:
        other.kill_system(reason="engaged elsewhere", by="other-process")


def test_kill_committed_in_another_process_denies_the_next_proposal_here(
    cp: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = cp.open_session("watched", max_cost=Decimal("10"))
    assert cp.propose(sid, action="read_x").allowed
    process = multiprocessing.get_context("spawn").Process(
        target=_kill_from_other_process, args=(backend.url, table_prefix)
    )
    process.start()
    process.join(60)
    assert process.exitcode == 0
    d = cp.propose(sid, action="read_x")
    assert not d.allowed and "other-process" in d.reason and "engaged elsewhere" in d.reason


def test_policy_and_kill_switch_of_one_registry_do_not_leak_into_another(backend: Backend, table_prefix: str) -> None:
    left = ControlPlaneFacade.from_database_url(backend.url, policy=POLICY, table_prefix=f"{table_prefix}l_")
    right = ControlPlaneFacade.from_database_url(backend.url, policy=POLICY, table_prefix=f"{table_prefix}r_")
    left.setup()
    right.setup()
    left.kill_system(reason="left only", by="ops")
    sid = right.open_session("unaffected")
    assert right.propose(sid, action="read_x").allowed
    left.close()
    right.close()
