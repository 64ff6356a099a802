"""Concurrency leases: at most N in flight per session, agent and resource, released by settle, expiring."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta
from typing import Any

from agent_control_plane import ControlPlaneFacade, DecisionCode, ManualClock
from conftest import Backend, set_up_plane

LIMITED = {
    "default_tier": "always_approve",
    "actions": {"run_*": "unrestricted"},
    "concurrency": {"per_session": 3, "per_agent": 2, "per_resource": 1, "lease_seconds": 60},
}


def test_a_resource_takes_one_action_at_a_time_until_settled(backend: Backend, table_prefix: str) -> None:
    with set_up_plane(backend, table_prefix, LIMITED) as cp:
        sid = cp.open_session("one at a time", agent_id="a1")
        first = cp.propose(sid, action="run_job", resource="db/main")
        assert first.allowed
        busy = cp.propose(sid, action="run_job", resource="db/main")
        assert busy.code is DecisionCode.CONCURRENCY_LIMIT
        assert "1 of 1 actions already in flight for resource 'db/main'" in busy.reason
        assert cp.propose(sid, action="run_job", resource="db/other").allowed
        cp.settle(first.proposal_id)
        assert cp.propose(sid, action="run_job", resource="db/main").allowed


def test_agent_and_session_limits_count_across_resources(backend: Backend, table_prefix: str) -> None:
    with set_up_plane(backend, table_prefix, LIMITED) as cp:
        sid = cp.open_session("agent limit", agent_id="a1")
        assert [cp.propose(sid, action="run_x", resource=f"r{n}").allowed for n in range(3)] == [True, True, False]
        other_agent = cp.propose(sid, action="run_x", resource="r9", agent_id="a2")
        assert other_agent.allowed  # the session has room for a third, from another agent
        fourth = cp.propose(sid, action="run_x", resource="r10", agent_id="a3")
        assert fourth.code is DecisionCode.CONCURRENCY_LIMIT and "for session" in fourth.reason


def test_an_unsettled_lease_expires_so_a_dead_holder_never_blocks(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    with set_up_plane(backend, table_prefix, LIMITED, clock) as cp:
        sid = cp.open_session("expiry", agent_id="a1")
        assert cp.propose(sid, action="run_job", resource="db/main").allowed  # never settled: its holder "died"
        assert not cp.propose(sid, action="run_job", resource="db/main").allowed
        clock.advance(timedelta(seconds=61))
        assert cp.propose(sid, action="run_job", resource="db/main").allowed


def _grab(url: str, prefix: str, session_id: str, barrier: Any, results: Any) -> None:
    with ControlPlaneFacade.from_database_url(url, table_prefix=prefix) as cp:
        barrier.wait()
        results.put(cp.propose(session_id, action="run_job", resource="db/shared", agent_id=None).allowed)


def test_processes_racing_for_one_resource_get_one_lease(backend: Backend, table_prefix: str) -> None:
    with set_up_plane(backend, table_prefix, LIMITED) as cp:
        sessions = [cp.open_session(f"racer {n}", agent_id=f"agent-{n}") for n in range(4)]
        ctx = multiprocessing.get_context("spawn")
        barrier, results = ctx.Barrier(len(sessions)), ctx.Queue()
        processes = [
            ctx.Process(target=_grab, args=(backend.url, table_prefix, sid, barrier, results)) for sid in sessions
        ]
        for process in processes:
            process.start()
        won = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(30)
        assert sorted(won) == [False, False, False, True]
