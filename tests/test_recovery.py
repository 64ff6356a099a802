"""Crash recovery: nothing lost, nothing executed twice, budgets, leases and the chain consistent."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from typer.testing import CliRunner

from agent_control_plane import AlreadySettledError, ControlPlaneFacade, DecisionCode, ManualClock, Outcome
from agent_control_plane.cli import app
from conftest import Backend, set_up_plane

RECOVERING = {
    "default_tier": "always_approve",
    "actions": {"run_*": "unrestricted"},
    "concurrency": {"per_resource": 1, "lease_seconds": 3600},
    "recovery": {"interrupted_after_seconds": 600},
}


def test_stale_unsettled_actions_are_settled_as_interrupted_once(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    with set_up_plane(backend, table_prefix, RECOVERING, clock) as cp:
        sid = cp.open_session("crashy", max_cost=Decimal("10"))
        stale = cp.propose(sid, action="run_job", resource="db/main", cost=Decimal("2"))
        clock.advance(timedelta(seconds=601))
        fresh = cp.propose(sid, action="run_job", resource="db/other", cost=Decimal("1"))
        assert stale.allowed and fresh.allowed
        report = cp.recover()
        assert [s.proposal_id for s in report.interrupted] == [stale.proposal_id]
        assert report.interrupted[0].outcome is Outcome.INTERRUPTED and report.interrupted[0].actual_cost == 0
        budget = cp.get_remaining_budget(sid)
        assert budget["reserved_cost"] == Decimal("1") and budget["spent_cost"] == 0
        assert cp.propose(sid, action="run_job", resource="db/main").allowed  # its lease was released
        with pytest.raises(AlreadySettledError, match="interrupted"):
            cp.settle(stale.proposal_id)
        assert cp.recover().interrupted == []
        settled = [e.payload for e in cp.replay(sid) if e.kind == "proposal.settled"]
        assert settled[0]["outcome"] == "interrupted" and settled[0]["result"]["by"] == "crash recovery"
        assert cp.verify(sid).ok


def test_a_retry_of_an_interrupted_proposal_is_refused_not_run_again(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    with set_up_plane(backend, table_prefix, RECOVERING, clock) as cp:
        sid = cp.open_session("retried after a crash", max_cost=Decimal("10"))
        first = cp.propose(sid, action="run_job", resource="db/main", cost=Decimal("2"), idempotency_key="job-1")
        assert first.allowed
        clock.advance(timedelta(seconds=601))
        assert [s.proposal_id for s in cp.recover().interrupted] == [first.proposal_id]
        again = cp.propose(sid, action="run_job", resource="db/main", cost=Decimal("2"), idempotency_key="job-1")
        assert not again.allowed and again.replayed and again.code is DecisionCode.ALREADY_SETTLED
        assert again.proposal_id == first.proposal_id and "settled as interrupted" in again.reason
        assert cp.get_remaining_budget(sid)["reserved_cost"] == 0  # nothing reserved for the retry
        fresh = cp.propose(sid, action="run_job", resource="db/main", cost=Decimal("2"), idempotency_key="job-2")
        assert fresh.allowed and not fresh.replayed  # running it again is a new, explicit proposal


def test_policy_may_charge_interrupted_actions(backend: Backend, table_prefix: str, clock: ManualClock) -> None:
    policy = {**RECOVERING, "recovery": {"interrupted_after_seconds": 1, "charge_interrupted": True}}
    with set_up_plane(backend, table_prefix, policy, clock) as cp:
        sid = cp.open_session("charged")
        cp.propose(sid, action="run_job", cost=Decimal("0.75"))
        clock.advance(2)
        assert cp.recover().interrupted[0].actual_cost == Decimal("0.75")
        assert cp.get_remaining_budget(sid)["spent_cost"] == Decimal("0.75")


def _propose_then_die(url: str, prefix: str, session_id: str, ready: Any) -> None:
    cp = ControlPlaneFacade.from_database_url(url, table_prefix=prefix)
    d = cp.propose(session_id, action="run_job", resource="db/main", cost=Decimal("3"))
    ready.put(d.proposal_id if d.allowed else None)
    ready.close()
    ready.join_thread()  # the queue's feeder thread must deliver before the process dies
    os.kill(os.getpid(), signal.SIGKILL)  # between propose and settle


def _wait_for_ticket(url: str, prefix: str, ticket_id: str, ready: Any) -> None:
    cp = ControlPlaneFacade.from_database_url(url, table_prefix=prefix)
    ready.put("waiting")
    ready.close()
    ready.join_thread()
    cp.wait_for_decision(ticket_id, timeout=600)


def test_sigkilled_workers_leave_nothing_stuck_and_nothing_runs_twice(backend: Backend, table_prefix: str) -> None:
    with set_up_plane(backend, table_prefix, RECOVERING) as cp:
        sid = cp.open_session("killed workers", agent_id="worker", max_cost=Decimal("10"))
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Queue()
        dying = ctx.Process(target=_propose_then_die, args=(backend.url, table_prefix, sid, ready))
        dying.start()
        proposal_id = ready.get(timeout=120)
        dying.join(60)
        assert proposal_id is not None and dying.exitcode == -signal.SIGKILL

        asked = cp.propose(sid, action="deploy", cost=Decimal("1"))
        assert asked.ticket_id is not None
        waiter = ctx.Process(target=_wait_for_ticket, args=(backend.url, table_prefix, asked.ticket_id, ready))
        waiter.start()
        assert ready.get(timeout=120) == "waiting"
        time.sleep(0.5)
        os.kill(waiter.pid or 0, signal.SIGKILL)  # while waiting on the ticket
        waiter.join(60)

        blocked = cp.propose(sid, action="run_job", resource="db/main")
        assert blocked.code is DecisionCode.CONCURRENCY_LIMIT  # the dead worker still holds the lease
        report = cp.recover(older_than=timedelta(0))
        assert [s.proposal_id for s in report.interrupted] == [proposal_id]
        budget = cp.get_remaining_budget(sid)
        assert budget["reserved_cost"] == 0 and budget["spent_cost"] == 0
        assert cp.propose(sid, action="run_job", resource="db/main").allowed

        # The dead waiter's ticket is still there: a human approves, and another process picks the outcome up once.
        cp.approve(asked.ticket_id, approver="alice")
        assert cp.resume(asked.ticket_id).allowed
        assert cp.resume(asked.ticket_id).code is DecisionCode.ALREADY_CONSUMED
        assert cp.verify(sid).ok and all(r.ok for r in cp.verify_all())


def test_acp_recover_reports_what_it_did(backend: Backend, table_prefix: str) -> None:
    with set_up_plane(backend, table_prefix, RECOVERING) as cp:
        sid = cp.open_session("cli")
        d = cp.propose(sid, action="run_job", cost=Decimal("0.5"))
    base = ["--database-url", backend.url, "--table-prefix", table_prefix, "recover"]
    result = CliRunner().invoke(app, [*base, "--older-than", "0s"])
    assert result.exit_code == 0, result.output
    assert "1 interrupted action(s) settled (0.5 released)" in result.output and d.proposal_id in result.output
    bad = CliRunner().invoke(app, [*base, "--older-than", "soon"])
    assert bad.exit_code == 2 and "expected a duration" in bad.output


def test_crash_recovery_and_timeout_escalation_return_the_result_or_an_awaitable_by_facade(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    # Their types follow the facade too (`CrashRecovery(cp).run()` is a RecoveryReport for mypy, and awaiting
    # `CrashRecovery(acp).run()` gives one), so callers need no cast.
    import asyncio
    import inspect

    from agent_control_plane import AsyncControlPlaneFacade, CrashRecovery, RecoveryReport, TimeoutEscalation

    with set_up_plane(backend, table_prefix, RECOVERING, clock) as cp:
        sid = cp.open_session("jobs")
        cp.propose(sid, action="run_job")
        asked = cp.propose(sid, action="deploy")
        clock.advance(timedelta(hours=2))
        assert asked.ticket_id is not None
        assert TimeoutEscalation(cp).run() == {asked.ticket_id: "expired"}
        report = CrashRecovery(cp).run()
        assert isinstance(report, RecoveryReport) and len(report.interrupted) == 1
        assert CrashRecovery(cp, older_than=timedelta(0)).run().interrupted == []  # nothing is left open

    async def from_async() -> tuple[RecoveryReport, dict[str, str]]:
        async with AsyncControlPlaneFacade.from_database_url(
            backend.async_url, policy=RECOVERING, table_prefix=table_prefix, clock=clock
        ) as acp:
            async_sid = await acp.open_session("async jobs")
            await acp.propose(async_sid, action="run_job")
            waiting = await acp.propose(async_sid, action="deploy")
            clock.advance(timedelta(hours=2))
            expiring = TimeoutEscalation(acp).run()
            recovering = CrashRecovery(acp).run()
            assert inspect.isawaitable(expiring) and inspect.isawaitable(recovering)
            outcomes = await expiring
            assert outcomes == {waiting.ticket_id: "expired"}
            return await recovering, outcomes

    report, outcomes = asyncio.run(from_async())
    assert isinstance(report, RecoveryReport) and len(report.interrupted) == 1 and len(outcomes) == 1
