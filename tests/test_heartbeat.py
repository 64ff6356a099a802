"""Heartbeats: a long action that says it still runs keeps its leases and is not interrupted by crash recovery."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from agent_control_plane import (
    AlreadySettledError,
    AsyncControlPlaneFacade,
    ControlPlaneFacade,
    DecisionCode,
    Heartbeat,
    ManualClock,
    ProposalNotFoundError,
)
from agent_control_plane.clock import to_micros
from agent_control_plane.store.dialect import begin
from agent_control_plane.store.migrate import head_revision
from conftest import Backend, migrate_to, set_up_plane

LONG_RUNNING = {
    "default_tier": "always_approve",
    "actions": {"run_*": "unrestricted", "delete_*": "blocked"},
    "concurrency": {"per_resource": 1, "lease_seconds": 60},
    "recovery": {"interrupted_after_seconds": 600},
}


def test_a_beating_action_outlives_recovery_and_keeps_its_lease_until_it_stops_beating(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    with set_up_plane(backend, table_prefix, LONG_RUNNING, clock) as cp:
        sid = cp.open_session("long job", max_cost=Decimal("10"))
        job = cp.propose(sid, action="run_migration", resource="db/main", cost=Decimal("2"))
        assert job.allowed and job.proposal_id is not None
        for _ in range(24):  # 20 minutes: far past both lease_seconds and interrupted_after_seconds
            clock.advance(50)
            beat = cp.heartbeat(job.proposal_id)
            assert beat.lease_expires_at == clock.now() + timedelta(seconds=60) and beat.lapsed == ()
            assert beat.interrupted_after == clock.now() + timedelta(seconds=600)
            assert beat.due_by == beat.lease_expires_at
            assert cp.recover().interrupted == []
            second = cp.propose(sid, action="run_migration", resource="db/main")
            assert second.code is DecisionCode.CONCURRENCY_LIMIT, second.reason

        clock.advance(599)  # it stops beating: its lease lapses, recovery waits interrupted_after_seconds
        assert cp.recover().interrupted == []
        assert cp.propose(sid, action="run_report", resource="db/main").allowed
        clock.advance(2)
        assert [s.proposal_id for s in cp.recover().interrupted] == [job.proposal_id]
        with pytest.raises(AlreadySettledError, match=r"already settled \(interrupted\): its claim is lost"):
            cp.heartbeat(job.proposal_id)
        assert cp.get_remaining_budget(sid)["reserved_cost"] == 0
        assert cp.verify(sid).ok


def test_heartbeats_write_no_events(backend: Backend, table_prefix: str, clock: ManualClock) -> None:
    with set_up_plane(backend, table_prefix, LONG_RUNNING, clock) as cp:
        sid = cp.open_session("quiet")
        job = cp.propose(sid, action="run_job", resource="db/main")
        assert job.proposal_id is not None
        before = cp.replay(sid)
        for _ in range(5):
            clock.advance(30)
            cp.heartbeat(job.proposal_id)
        assert cp.replay(sid) == before
        cp.settle(job.proposal_id)
        assert [e.kind for e in cp.replay(sid)] == ["session.opened", "proposal.decided", "proposal.settled"]
        assert cp.verify(sid).ok


def test_a_heartbeat_after_settle_is_refused_with_the_outcome(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    with set_up_plane(backend, table_prefix, LONG_RUNNING, clock) as cp:
        sid = cp.open_session("settled")
        done = cp.propose(sid, action="run_job", resource="db/main")
        failed = cp.propose(sid, action="run_job", resource="db/other")
        assert done.proposal_id is not None and failed.proposal_id is not None
        cp.settle(done.proposal_id)
        cp.settle(failed.proposal_id, outcome="failed")
        with pytest.raises(AlreadySettledError, match=r"already settled \(succeeded\)"):
            cp.heartbeat(done.proposal_id)
        with pytest.raises(AlreadySettledError, match=r"already settled \(failed\)"):
            cp.heartbeat(failed.proposal_id)


def test_a_heartbeat_for_an_unknown_or_refused_proposal_says_why(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    with set_up_plane(backend, table_prefix, LONG_RUNNING, clock) as cp:
        sid = cp.open_session("refused")
        with pytest.raises(ProposalNotFoundError, match="unknown proposal id 'nope': nothing to keep alive"):
            cp.heartbeat("nope")
        blocked = cp.propose(sid, action="delete_db")
        asking = cp.propose(sid, action="deploy")
        assert blocked.proposal_id is not None and asking.proposal_id is not None
        with pytest.raises(AlreadySettledError, match="was not allowed .*nothing may run for it"):
            cp.heartbeat(blocked.proposal_id)
        with pytest.raises(AlreadySettledError, match="once its ticket is approved, `resume` returns the proposal"):
            cp.heartbeat(asking.proposal_id)


def test_a_lapsed_lease_is_not_revived_by_a_late_heartbeat(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    with set_up_plane(backend, table_prefix, LONG_RUNNING, clock) as cp:
        sid = cp.open_session("late beat")
        slow = cp.propose(sid, action="run_job", resource="db/main")
        assert slow.proposal_id is not None
        clock.advance(61)  # its lease expired: another action takes the key
        other = cp.propose(sid, action="run_job", resource="db/main")
        assert other.allowed and other.proposal_id is not None
        beat = cp.heartbeat(slow.proposal_id)
        assert beat.lapsed == ("resource 'db/main'",) and beat.lease_expires_at is None
        assert beat.due_by == beat.interrupted_after  # recovery still hears it
        cp.settle(other.proposal_id)
        assert cp.propose(sid, action="run_job", resource="db/main").allowed  # the late beat holds no slot

        clock.advance(500)
        assert cp.recover().interrupted == []  # 561 s old, but it beat 500 s ago


def test_a_lease_another_worker_already_took_for_expired_is_not_renewed(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    with set_up_plane(backend, table_prefix, LONG_RUNNING, clock) as cp:
        sid = cp.open_session("clocks apart")
        slow = cp.propose(sid, action="run_job", resource="db/main")
        assert slow.proposal_id is not None
        clock.advance(50)
        ahead = ManualClock(clock.now() + timedelta(seconds=11))  # another worker whose clock runs 11 s ahead
        with ControlPlaneFacade.from_database_url(backend.url, table_prefix=table_prefix, clock=ahead) as other:
            assert other.propose(sid, action="run_job", resource="db/main").allowed  # to it, the lease expired
        beat = cp.heartbeat(slow.proposal_id)  # to us it is still live, but its key is now over its limit
        assert beat.lapsed == ("resource 'db/main'",) and beat.lease_expires_at is None


def test_without_concurrency_limits_a_heartbeat_holds_off_recovery_alone(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    policy = {**LONG_RUNNING, "concurrency": {}}
    with set_up_plane(backend, table_prefix, policy, clock) as cp:
        sid = cp.open_session("unlimited")
        job = cp.propose(sid, action="run_job")
        assert job.proposal_id is not None
        clock.advance(500)
        beat = cp.heartbeat(job.proposal_id)
        assert isinstance(beat, Heartbeat) and beat.session_id == sid and beat.beat_at == clock.now()
        assert beat.lease_expires_at is None and beat.due_by == clock.now() + timedelta(seconds=600)
        clock.advance(500)
        assert cp.recover().interrupted == []


def test_recovery_with_older_than_zero_interrupts_beating_actions_too(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    with set_up_plane(backend, table_prefix, LONG_RUNNING, clock) as cp:
        sid = cp.open_session("restart")
        job = cp.propose(sid, action="run_job", resource="db/main")
        assert job.proposal_id is not None
        clock.advance(10)
        cp.heartbeat(job.proposal_id)
        clock.advance(1)
        report = cp.recover(older_than=timedelta(0))  # nothing can still be running
        assert [s.proposal_id for s in report.interrupted] == [job.proposal_id]
        with pytest.raises(AlreadySettledError, match="interrupted"):
            cp.heartbeat(job.proposal_id)


def test_the_async_facade_heartbeats_the_same_way(backend: Backend, table_prefix: str, clock: ManualClock) -> None:
    async def scenario() -> str:
        async with AsyncControlPlaneFacade.from_database_url(
            backend.async_url, policy=LONG_RUNNING, table_prefix=table_prefix, clock=clock
        ) as acp:
            await acp.setup()
            sid = await acp.open_session("async long job")
            job = await acp.propose(sid, action="run_job", resource="db/main")
            assert job.proposal_id is not None
            for _ in range(15):
                clock.advance(50)
                beat = await acp.heartbeat(job.proposal_id)
                assert beat.lease_expires_at == clock.now() + timedelta(seconds=60)
                assert (await acp.recover()).interrupted == []
            busy = await acp.propose(sid, action="run_job", resource="db/main")
            assert busy.code is DecisionCode.CONCURRENCY_LIMIT
            clock.advance(601)
            assert [s.proposal_id for s in (await acp.recover()).interrupted] == [job.proposal_id]
            with pytest.raises(AlreadySettledError, match="interrupted"):
                await acp.heartbeat(job.proposal_id)
            with pytest.raises(ProposalNotFoundError):
                await acp.heartbeat("nope")
            return sid

    sid = asyncio.run(scenario())
    with ControlPlaneFacade.from_database_url(backend.url, table_prefix=table_prefix) as cp:
        assert cp.verify(sid).ok


def _beat_until_told(url: str, prefix: str, proposal_id: str, stop: Any, ready: Any) -> None:
    with ControlPlaneFacade.from_database_url(url, table_prefix=prefix) as cp:
        cp.heartbeat(proposal_id)
        ready.put("beating")
        while not stop.is_set():
            cp.heartbeat(proposal_id)
            time.sleep(0.05)


def test_recovery_in_another_process_never_interrupts_an_action_that_keeps_beating(
    backend: Backend, table_prefix: str
) -> None:
    policy = {**LONG_RUNNING, "recovery": {"interrupted_after_seconds": 2}}
    with set_up_plane(backend, table_prefix, policy, None) as cp:
        sid = cp.open_session("real time")
        job = cp.propose(sid, action="run_job", resource="db/main")
        assert job.proposal_id is not None
        ctx = multiprocessing.get_context("spawn")
        stop, ready = ctx.Event(), ctx.Queue()
        worker = ctx.Process(target=_beat_until_told, args=(backend.url, table_prefix, job.proposal_id, stop, ready))
        worker.start()
        assert ready.get(timeout=120) == "beating"
        until = time.monotonic() + 4  # twice interrupted_after_seconds
        while time.monotonic() < until:
            assert cp.recover().interrupted == []
            time.sleep(0.02)
        stop.set()
        worker.join(60)
        assert worker.exitcode == 0
        time.sleep(2.1)
        assert [s.proposal_id for s in cp.recover().interrupted] == [job.proposal_id]


def _recover_at(url: str, prefix: str, now: datetime, ready: Any, results: Any) -> None:
    with ControlPlaneFacade.from_database_url(url, table_prefix=prefix, clock=ManualClock(now)) as cp:
        ready.put("recovering")
        results.put([s.proposal_id for s in cp.recover().interrupted])


def test_recovery_waits_for_a_heartbeat_that_is_committing_and_then_spares_its_action(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    with set_up_plane(backend, table_prefix, LONG_RUNNING, clock) as cp:
        sid = cp.open_session("beat in flight")
        job = cp.propose(sid, action="run_job", resource="db/main")
        assert job.proposal_id is not None
        clock.advance(601)  # stale, unless the beat below counts
        p = cp.registry.proposals
        ctx = multiprocessing.get_context("spawn")
        ready, results = ctx.Queue(), ctx.Queue()
        with cp.engine.connect() as conn, conn.begin():
            begin(conn, read_only=False)  # a heartbeat's transaction, not committed yet
            conn.execute(p.update().where(p.c.id == job.proposal_id).values(heartbeat_at=to_micros(clock.now())))
            recovery = ctx.Process(target=_recover_at, args=(backend.url, table_prefix, clock.now(), ready, results))
            recovery.start()
            assert ready.get(timeout=120) == "recovering"
            time.sleep(1)  # recovery now waits on the proposal's row lock (PostgreSQL) or the write lock (SQLite)
            assert results.empty()
        assert results.get(timeout=60) == []
        recovery.join(60)
        assert recovery.exitcode == 0
        assert cp.heartbeat(job.proposal_id).lapsed == ("resource 'db/main'",)  # still open; its lease had lapsed


def test_upgrading_to_heartbeats_keeps_open_actions_and_their_age(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    cp = ControlPlaneFacade.from_database_url(backend.url, policy=LONG_RUNNING, clock=clock, table_prefix=table_prefix)
    t = cp.registry
    migrate_to(cp, "0005")
    sid = cp.open_session("before 0006")  # sessions and events have not changed since 0005
    at = to_micros(clock.now())
    with cp.engine.begin() as conn:  # what 0005 stored for two allowed actions still running, each with a lease
        for number in (1, 2):
            conn.execute(
                t.proposals.insert().values(
                    id=f"p-{number}", session_id=sid, action="run_job", resource=f"db/{number}", args="{}",
                    cost=Decimal(0), tier="unrestricted", allowed=True, code="allowed", reason="allowed",
                    status="reserved", created_at=at,
                )
            )  # fmt: skip
            conn.execute(
                t.leases.insert().values(
                    id=f"l-{number}", proposal_id=f"p-{number}", scope="resource", key=f"db/{number}",
                    expires_at=at + 60_000_000,
                )
            )  # fmt: skip
    assert cp.setup() == head_revision()
    clock.advance(50)
    assert cp.heartbeat("p-2").lease_expires_at == clock.now() + timedelta(seconds=60)
    clock.advance(30)  # past the leases' first expiry: only the renewed one still holds its key
    assert cp.propose(sid, action="run_job", resource="db/2").code is DecisionCode.CONCURRENCY_LIMIT
    assert cp.propose(sid, action="run_job", resource="db/1").allowed
    clock.advance(521)  # 601 s after both were decided; p-2 beat 551 s ago
    assert [s.proposal_id for s in cp.recover().interrupted] == ["p-1"]
    assert cp.verify(sid).ok
    cp.close()
