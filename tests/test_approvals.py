"""Approval tickets: bound to the exact call, decided once, consumed once, waited on across processes."""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from agent_control_plane import (
    ActionTier,
    ControlPlaneFacade,
    DecisionCode,
    GrantScope,
    IdentityContext,
    InvalidInputError,
    ManualClock,
    OrgId,
    SessionStateError,
    TicketNotFoundError,
    TicketStatus,
    UserId,
)
from agent_control_plane.clock import to_micros
from agent_control_plane.store import eventlog
from agent_control_plane.store import sessions as session_rows
from agent_control_plane.store.migrate import head_revision
from agent_control_plane.types.values import canonical_json
from conftest import POLICY, Backend, migrate_to

ACME = IdentityContext(org_id=OrgId("acme"))
GLOBEX = IdentityContext(org_id=OrgId("globex"))

ESCALATING = {
    **POLICY,
    "approvals": {
        "timeout_seconds": 600,
        "on_timeout": "escalate",
        "escalate_to": "sre-leads",
        "escalation_timeout_seconds": 300,
    },
}


def test_a_call_that_needs_a_human_gets_one_ticket_bound_to_that_call(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("approvals", agent_id="bot")
    first = cp.propose(sid, action="launch", args={"n": 1}, cost=Decimal("0.5"))
    assert first.tier is ActionTier.ALWAYS_APPROVE and not first.allowed and first.ticket_id is not None
    assert first.code is DecisionCode.APPROVAL_REQUIRED and first.ticket_id in first.reason
    again = cp.propose(sid, action="launch", args={"n": 1}, cost=Decimal("0.5"))
    assert again.ticket_id == first.ticket_id  # the same call waits on the same ticket
    other = cp.propose(sid, action="launch", args={"n": 2}, cost=Decimal("0.5"))
    assert other.ticket_id != first.ticket_id
    ticket = cp.get_ticket(first.ticket_id)
    assert (ticket.status, ticket.action, ticket.args, ticket.agent_id) == (
        TicketStatus.PENDING,
        "launch",
        {"n": 1},
        "bot",
    )
    assert ticket.deadline is not None and len(ticket.digest) == 64
    assert {t.ticket_id for t in cp.list_tickets(status="pending")} == {first.ticket_id, other.ticket_id}


def test_approved_ticket_is_consumed_once_by_resume(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("resume", agent_id="bot", max_cost=Decimal("5"))
    asked = cp.propose(sid, action="launch", cost=Decimal("2"))
    assert asked.ticket_id is not None
    approved = cp.approve(asked.ticket_id, approver="alice", comment="go ahead")
    assert approved.status is TicketStatus.APPROVED and approved.decided_by == "alice"
    d = cp.resume(asked.ticket_id)
    assert d.allowed and d.ticket_id == asked.ticket_id and "approved by alice" in d.reason
    assert cp.get_remaining_budget(sid)["reserved_cost"] == Decimal("2")
    cp.settle(d.proposal_id, actual_cost=Decimal("1.5"))
    second = cp.resume(asked.ticket_id)
    assert not second.allowed and second.code is DecisionCode.ALREADY_CONSUMED and "already consumed" in second.reason
    assert cp.get_ticket(asked.ticket_id).consumed_by == d.proposal_id
    kinds = [e.kind for e in cp.replay(sid)]
    assert "approval.granted" in kinds and kinds.count("proposal.decided") == 2
    assert cp.verify(sid).ok


def test_re_proposing_the_exact_approved_call_runs_it_and_one_byte_of_difference_does_not(
    cp: ControlPlaneFacade,
) -> None:
    sid = cp.open_session("exact", agent_id="bot")
    asked = cp.propose(sid, action="launch", args={"target": "mars"})
    assert asked.ticket_id is not None
    cp.approve(asked.ticket_id, approver="alice")
    assert not cp.propose(sid, action="launch", args={"target": "mars "}).allowed  # one byte more
    d = cp.propose(sid, action="launch", args={"target": "mars"})
    assert d.allowed and d.ticket_id == asked.ticket_id
    assert cp.propose(sid, action="launch", args={"target": "mars"}).code is DecisionCode.APPROVAL_REQUIRED


def test_approving_a_dry_run_does_not_authorize_the_same_call_live(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("rehearsal", agent_id="bot")
    asked = cp.propose(sid, action="launch", args={"target": "mars"}, dry_run=True)
    assert asked.ticket_id is not None
    cp.approve(asked.ticket_id, approver="alice")
    live = cp.propose(sid, action="launch", args={"target": "mars"})
    assert not live.allowed and live.code is DecisionCode.APPROVAL_REQUIRED and live.ticket_id != asked.ticket_id
    rehearsal = cp.propose(sid, action="launch", args={"target": "mars"}, dry_run=True)
    assert rehearsal.allowed and rehearsal.ticket_id == asked.ticket_id


def test_an_approval_for_one_org_does_not_authorize_the_same_call_for_another(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("tenants", agent_id="bot")
    asked = cp.propose(sid, action="launch", args={"n": 1}, identity=ACME)
    assert asked.ticket_id is not None
    cp.approve(asked.ticket_id, approver="alice")
    for other in (GLOBEX, None):
        d = cp.propose(sid, action="launch", args={"n": 1}, identity=other)
        assert d.code is DecisionCode.APPROVAL_REQUIRED and d.ticket_id != asked.ticket_id
    d = cp.propose(sid, action="launch", args={"n": 1}, identity=ACME)
    assert d.allowed and d.ticket_id == asked.ticket_id


def test_an_approval_is_bound_to_the_token_estimate_it_was_given_for(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("estimates", agent_id="bot")
    asked = cp.propose(sid, action="summarize", estimated_tokens=100)
    assert asked.ticket_id is not None
    cp.approve(asked.ticket_id, approver="alice")
    assert cp.propose(sid, action="summarize", estimated_tokens=100_000).code is DecisionCode.APPROVAL_REQUIRED
    assert cp.propose(sid, action="summarize", estimated_tokens=100).allowed


def test_a_plain_live_calls_ticket_keeps_the_digest_it_always_had(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("digests", agent_id="bot")
    asked = cp.propose(sid, action="launch", args={"n": 1}, resource="repo/app", cost=Decimal("0.50"))
    assert asked.ticket_id is not None
    head = f'["{sid}","bot","launch","repo/app","0.5"]'
    assert cp.get_ticket(asked.ticket_id).digest == hashlib.sha256(f'{head}\n{{"n":1}}'.encode()).hexdigest()


def test_a_resumed_dry_run_is_executed_and_recorded_as_a_dry_run(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("resumed rehearsal", agent_id="bot")
    asked = cp.propose(sid, action="launch", dry_run=True, identity=ACME)
    assert asked.ticket_id is not None
    cp.approve(asked.ticket_id, approver="alice")
    d = cp.resume(asked.ticket_id)
    assert d.allowed
    decided = [e.payload for e in cp.replay(sid) if e.kind == "proposal.decided"]
    assert decided[-1]["proposal_id"] == d.proposal_id
    assert decided[-1]["mode"] == "dry_run" and decided[-1]["identity"]["org_id"] == "acme"


def test_denial_reaches_the_agent_and_tickets_are_decided_once(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("deny", agent_id="bot")
    asked = cp.propose(sid, action="launch")
    assert asked.ticket_id is not None
    with pytest.raises(InvalidInputError, match="cannot approve or deny its own call"):
        cp.approve(asked.ticket_id, approver="bot")
    cp.deny(asked.ticket_id, approver="alice", reason="not during the freeze")
    d = cp.resume(asked.ticket_id)
    assert d.code is DecisionCode.APPROVAL_DENIED and d.reason == "denied by alice: not during the freeze"
    with pytest.raises(SessionStateError, match="already denied by alice"):
        cp.approve(asked.ticket_id, approver="bob")
    with pytest.raises(TicketNotFoundError):
        cp.resume("no-such-ticket")


def test_a_denied_call_asked_again_gets_the_humans_answer_not_a_new_ticket(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("asks twice", agent_id="bot")
    asked = cp.propose(sid, action="launch", args={"target": "moon"})
    assert asked.ticket_id is not None
    cp.deny(asked.ticket_id, approver="alice", reason="not during the freeze")
    again = cp.propose(sid, action="launch", args={"target": "moon"})
    assert not again.allowed and again.code is DecisionCode.APPROVAL_DENIED
    assert again.ticket_id == asked.ticket_id
    assert again.reason == (
        f"denied: alice already denied this exact call (ticket {asked.ticket_id}): not during the freeze"
    )
    other = cp.propose(sid, action="launch", args={"target": "mars"})  # another call is another question
    assert other.code is DecisionCode.APPROVAL_REQUIRED and other.ticket_id != asked.ticket_id
    elsewhere = cp.open_session("another session", agent_id="bot")
    assert cp.propose(elsewhere, action="launch", args={"target": "moon"}).code is DecisionCode.APPROVAL_REQUIRED
    assert len(cp.list_tickets(session_id=sid)) == 2


def test_approve_for_session_grants_the_action_within_its_scope(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("grants", agent_id="bot")
    asked = cp.propose(sid, action="launch", resource="staging/web")
    assert asked.ticket_id is not None
    cp.approve_for_session(asked.ticket_id, approver="alice", scope=GrantScope(resource="staging/*", max_uses=2))
    assert cp.resume(asked.ticket_id).allowed  # the ticket's own call
    uses = [cp.propose(sid, action="launch", resource=f"staging/{n}") for n in range(3)]
    assert [d.allowed for d in uses] == [True, True, False]
    assert uses[0].reason.startswith("approved for this session by alice (grant ")
    assert cp.propose(sid, action="launch", resource="prod/web").code is DecisionCode.APPROVAL_REQUIRED
    assert cp.propose(sid, action="other_thing", resource="staging/x").code is DecisionCode.APPROVAL_REQUIRED


def test_a_session_grant_given_on_a_dry_run_covers_dry_runs_only(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("rehearsal grants", agent_id="bot")
    asked = cp.propose(sid, action="launch", resource="staging/web", dry_run=True)
    assert asked.ticket_id is not None
    cp.approve_for_session(asked.ticket_id, approver="alice", scope=GrantScope(resource="staging/*"))
    assert cp.propose(sid, action="launch", resource="staging/db", dry_run=True).allowed
    live = cp.propose(sid, action="launch", resource="staging/db")
    assert not live.allowed and live.code is DecisionCode.APPROVAL_REQUIRED
    granted = [e.payload["grant"] for e in cp.replay(sid) if e.kind == "approval.granted"]
    assert granted[-1]["mode"] == "dry_run"


def test_a_session_grant_given_on_a_live_call_also_covers_its_dry_runs(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("live grants", agent_id="bot")
    asked = cp.propose(sid, action="launch", resource="staging/web")
    assert asked.ticket_id is not None
    cp.approve_for_session(asked.ticket_id, approver="alice", scope=GrantScope(resource="staging/*"))
    assert cp.propose(sid, action="launch", resource="staging/db", dry_run=True).allowed
    assert cp.propose(sid, action="launch", resource="staging/db").allowed


def test_a_session_grant_covers_only_the_identity_of_the_call_it_was_given_on(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("tenant grants", agent_id="bot")
    asked = cp.propose(sid, action="launch", identity=ACME)
    assert asked.ticket_id is not None
    cp.approve_for_session(asked.ticket_id, approver="alice")
    assert cp.propose(sid, action="launch", args={"n": 2}, identity=ACME).allowed
    a_user_of_acme = IdentityContext(org_id=OrgId("acme"), user_id=UserId("mallory"))
    for other in (GLOBEX, a_user_of_acme, None):
        assert cp.propose(sid, action="launch", args={"n": 2}, identity=other).code is DecisionCode.APPROVAL_REQUIRED


def test_budget_and_kill_switches_still_apply_to_an_approved_call(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("limits", agent_id="bot", max_cost=Decimal("1"))
    asked = cp.propose(sid, action="launch", cost=Decimal("2"))
    assert asked.ticket_id is not None
    cp.approve(asked.ticket_id, approver="alice")
    over = cp.resume(asked.ticket_id)
    assert over.code is DecisionCode.COST_BUDGET_EXCEEDED
    assert cp.get_ticket(asked.ticket_id).status is TicketStatus.APPROVED  # not consumed by a refusal
    cp.kill_session(sid, reason="stop", by="ops")
    assert cp.resume(asked.ticket_id).code is DecisionCode.KILLED


def test_overdue_tickets_escalate_once_then_expire(backend: Backend, table_prefix: str, clock: ManualClock) -> None:
    with ControlPlaneFacade.from_database_url(
        backend.url, policy=ESCALATING, clock=clock, table_prefix=table_prefix
    ) as cp:
        cp.setup()
        sid = cp.open_session("slow humans", agent_id="bot")
        asked = cp.propose(sid, action="launch")
        assert asked.ticket_id is not None
        clock.advance(timedelta(seconds=601))
        assert cp.expire_tickets() == {asked.ticket_id: "escalated"}
        ticket = cp.get_ticket(asked.ticket_id)
        assert ticket.status is TicketStatus.PENDING and ticket.approver_group == "sre-leads"
        assert "escalated to sre-leads" in cp.resume(asked.ticket_id).reason
        clock.advance(timedelta(seconds=301))
        d = cp.resume(asked.ticket_id)  # time-outs are applied on every read too
        assert d.code is DecisionCode.APPROVAL_EXPIRED
        with pytest.raises(SessionStateError, match="already expired"):
            cp.approve(asked.ticket_id, approver="alice")
        kinds = [e.kind for e in cp.replay(sid)]
        assert kinds[-2:] == ["approval.escalated", "approval.expired"]


def _wait(url: str, prefix: str, ticket_id: str, results: Any) -> None:
    with ControlPlaneFacade.from_database_url(url, table_prefix=prefix) as cp:
        started = time.monotonic()
        d = cp.wait_for_decision(ticket_id, timeout=60)
        results.put((d.allowed, d.code.value, d.proposal_id, time.monotonic() - started))


@pytest.fixture
def live_cp(backend: Backend, table_prefix: str) -> Any:
    """A control plane on the system clock, like the worker processes it shares the database with."""
    plane = ControlPlaneFacade.from_database_url(backend.url, policy=POLICY, table_prefix=table_prefix)
    plane.setup()
    yield plane
    plane.close()


def _spawn_waiter(backend: Backend, prefix: str, ticket_id: str) -> tuple[Any, Any]:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    process = ctx.Process(target=_wait, args=(backend.url, prefix, ticket_id, results))
    process.start()
    return process, results


def test_a_waiter_in_another_process_wakes_on_approval(
    live_cp: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = live_cp.open_session("waiting", agent_id="bot")
    asked = live_cp.propose(sid, action="launch", cost=Decimal("0.1"))
    assert asked.ticket_id is not None
    process, results = _spawn_waiter(backend, table_prefix, asked.ticket_id)
    time.sleep(1.5)
    live_cp.approve(asked.ticket_id, approver="alice")
    allowed, code, proposal_id, _ = results.get(timeout=60)
    process.join(30)
    assert allowed and code == "allowed"
    live_cp.settle(proposal_id)  # the waiter's reservation is settled here: any process may settle it
    assert live_cp.resume(asked.ticket_id).code is DecisionCode.ALREADY_CONSUMED


def test_a_kill_switch_wakes_a_waiter(live_cp: ControlPlaneFacade, backend: Backend, table_prefix: str) -> None:
    sid = live_cp.open_session("killed while waiting", agent_id="bot")
    asked = live_cp.propose(sid, action="launch")
    assert asked.ticket_id is not None
    process, results = _spawn_waiter(backend, table_prefix, asked.ticket_id)
    time.sleep(1.5)
    engaged = time.monotonic()
    live_cp.kill_agent("bot", reason="misbehaving", by="ops")
    allowed, code, _, _ = results.get(timeout=60)
    process.join(30)
    assert not allowed and code == "killed"
    assert time.monotonic() - engaged < 5


def test_ending_a_session_withdraws_its_waiting_tickets_and_wakes_their_waiter(
    live_cp: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = live_cp.open_session("closed while waiting", agent_id="bot")
    waited = live_cp.propose(sid, action="launch", args={"n": 1})
    decided = live_cp.propose(sid, action="launch", args={"n": 2})
    assert waited.ticket_id is not None and decided.ticket_id is not None
    live_cp.deny(decided.ticket_id, approver="alice", reason="no")
    process, results = _spawn_waiter(backend, table_prefix, waited.ticket_id)
    time.sleep(1.5)
    closed = time.monotonic()
    live_cp.close_session(sid, reason="the agent finished")
    allowed, code, _, _ = results.get(timeout=60)
    process.join(30)
    assert not allowed and code == "approval_expired"
    assert time.monotonic() - closed < 5
    ticket = live_cp.get_ticket(waited.ticket_id)
    assert ticket.status is TicketStatus.EXPIRED
    assert live_cp.get_ticket(decided.ticket_id).status is TicketStatus.DENIED  # a decided ticket stays as it was
    assert live_cp.list_tickets(status=TicketStatus.PENDING, session_id=sid) == []
    reason = live_cp.resume(waited.ticket_id).reason
    assert reason == f"ticket {waited.ticket_id} expired before anyone decided (session {sid} is completed)"
    with pytest.raises(SessionStateError, match="already expired"):
        live_cp.approve(waited.ticket_id, approver="alice")
    events = live_cp.replay(sid)
    assert [e.kind for e in events][-2:] == ["session.status_changed", "approval.expired"]
    assert events[-1].payload["reason"] == f"session {sid} is completed"
    assert live_cp.verify(sid).ok


def _resume(url: str, prefix: str, ticket_id: str, barrier: Any, results: Any) -> None:
    with ControlPlaneFacade.from_database_url(url, table_prefix=prefix) as cp:
        barrier.wait()
        d = cp.resume(ticket_id)
        results.put((d.allowed, d.code.value))


def test_workers_racing_to_execute_one_approved_call_consume_it_once(
    live_cp: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = live_cp.open_session("race", agent_id="bot", max_cost=Decimal("10"))
    asked = live_cp.propose(sid, action="launch", cost=Decimal("1"))
    assert asked.ticket_id is not None
    live_cp.approve(asked.ticket_id, approver="alice")
    workers = 8 if backend.name == "postgres" else 4
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    processes = [
        ctx.Process(target=_resume, args=(backend.url, table_prefix, asked.ticket_id, barrier, results))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
    assert sorted(outcomes) == [(False, "already_consumed")] * (workers - 1) + [(True, "allowed")]
    assert live_cp.get_remaining_budget(sid)["reserved_cost"] == Decimal("1")
    assert live_cp.verify(sid).ok


def _wait_and_time(url: str, prefix: str, ticket_id: str, asynchronous: bool, results: Any) -> None:
    import asyncio

    from agent_control_plane import AsyncControlPlaneFacade

    if asynchronous:

        async def wait() -> bool:
            async with AsyncControlPlaneFacade.from_database_url(url, table_prefix=prefix) as acp:
                return (await acp.wait_for_decision(ticket_id, timeout=30)).allowed

        allowed = asyncio.run(wait())
    else:
        with ControlPlaneFacade.from_database_url(url, table_prefix=prefix) as cp:
            allowed = cp.wait_for_decision(ticket_id, timeout=30).allowed
    results.put((allowed, time.monotonic()))  # CLOCK_MONOTONIC is system-wide on Linux: comparable across processes


@pytest.mark.parametrize("url_kind", ["psycopg", "asyncpg", "psycopg-async"])
def test_postgres_waiters_wake_on_notify_not_on_the_next_poll(
    postgres_database: str, table_prefix: str, url_kind: str
) -> None:
    url = (
        postgres_database.replace("postgresql+psycopg://", "postgresql+asyncpg://")
        if url_kind == "asyncpg"
        else (postgres_database)
    )
    with ControlPlaneFacade.from_database_url(postgres_database, policy=POLICY, table_prefix=table_prefix) as cp:
        cp.setup()
        sid = cp.open_session("notified", agent_id="bot")
        ctx = multiprocessing.get_context("spawn")
        latencies = []
        for round_number in range(3):
            asked = cp.propose(sid, action="launch", args={"round": round_number})
            assert asked.ticket_id is not None
            results = ctx.Queue()
            process = ctx.Process(
                target=_wait_and_time, args=(url, table_prefix, asked.ticket_id, url_kind != "psycopg", results)
            )
            process.start()
            time.sleep(2.0)  # long enough for polling to have backed off to its slowest interval
            cp.approve(asked.ticket_id, approver="alice")
            approved_at = time.monotonic()
            allowed, woke_at = results.get(timeout=60)
            process.join(30)
            assert allowed
            latencies.append(woke_at - approved_at)
        # Polling alone would wake 125 ms after the approval on average (250 ms intervals by then).
        assert sorted(latencies)[1] < 0.06, latencies


def test_a_retried_proposal_with_its_idempotency_key_gets_its_ticket_back(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("retries", agent_id="bot")
    first = cp.propose(sid, action="launch", args={"n": 1}, idempotency_key="job-1")
    again = cp.propose(sid, action="launch", args={"n": 1}, idempotency_key="job-1")
    assert again.replayed and again.ticket_id == first.ticket_id is not None


def test_a_resume_repeated_with_its_idempotency_key_gets_the_same_execution_until_it_settles(
    cp: ControlPlaneFacade,
) -> None:
    sid = cp.open_session("resume retries", agent_id="bot", max_cost=Decimal("5"))
    asked = cp.propose(sid, action="launch", args={"n": 1}, cost=Decimal("2"), idempotency_key="job-1")
    assert asked.ticket_id is not None
    assert cp.resume(asked.ticket_id, idempotency_key="job-1/run").code is DecisionCode.APPROVAL_REQUIRED
    cp.approve(asked.ticket_id, approver="alice")

    run = cp.resume(asked.ticket_id, idempotency_key="job-1/run")
    again = cp.resume(asked.ticket_id, idempotency_key="job-1/run")  # e.g. its answer was lost on the way back

    assert run.allowed and not run.replayed
    assert again.allowed and again.replayed and again.proposal_id == run.proposal_id
    assert again.ticket_id == asked.ticket_id
    assert cp.get_remaining_budget(sid)["reserved_cost"] == Decimal("2")  # reserved once
    assert cp.resume(asked.ticket_id).code is DecisionCode.ALREADY_CONSUMED  # without the key: someone else
    cp.settle(run.proposal_id)
    settled = cp.resume(asked.ticket_id, idempotency_key="job-1/run")
    assert not settled.allowed and settled.code is DecisionCode.ALREADY_SETTLED
    with pytest.raises(InvalidInputError, match="names the proposal that asked for ticket"):
        cp.resume(asked.ticket_id, idempotency_key="job-1")
    assert [e.kind for e in cp.replay(sid)].count("proposal.decided") == 2
    assert cp.verify(sid).ok


def test_upgrading_keeps_an_earlier_dry_run_approval_and_its_grant_bound_to_that_call(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    cp = ControlPlaneFacade.from_database_url(backend.url, policy=POLICY, clock=clock, table_prefix=table_prefix)
    t = cp.registry
    migrate_to(cp, "0004")
    sid = cp.open_session("before 0005", agent_id="bot")  # sessions and events have not changed since 0004
    at = to_micros(clock.now())
    call = {"session_id": sid, "agent_id": "bot", "action": "launch", "resource": "staging/web", "args": "{}"}
    with cp.engine.begin() as conn:  # what 0004 stored for a dry run that asked for approval, approved for session
        state = session_rows.claim(conn, t, sid, 1, at)
        assert state is not None
        decided = {"proposal_id": "p-1", "action": "launch", "mode": "dry_run", "allowed": False, "ticket_id": "k-1"}
        head = eventlog.Head(state["last_seq"], state["last_hash"])
        eventlog.append(conn, t, sid, head, [("proposal.decided", canonical_json(decided), at)])
        conn.execute(
            t.proposals.insert().values(
                id="p-1", **call, cost=Decimal(0), tier="always_approve", allowed=False, code="approval_required",
                reason="needs approval", status="denied", created_at=at, org_id="acme",
            )
        )  # fmt: skip
        conn.execute(
            t.tickets.insert().values(
                id="k-1", **call, proposal_id="p-1", digest="0" * 64, cost=Decimal(0), reason="needs approval",
                status="approved", decided_by="alice", decided_at=at, created_at=at,
            )
        )  # fmt: skip
        conn.execute(
            t.grants.insert().values(
                id="g-1", session_id=sid, ticket_id="k-1", action="launch", resource="staging/*", uses=0,
                granted_by="alice", created_at=at,
            )
        )  # fmt: skip
    assert cp.setup() == head_revision()
    assert cp.propose(sid, action="launch", resource="staging/db", dry_run=True, identity=ACME).allowed
    live = cp.propose(sid, action="launch", resource="staging/db", identity=ACME)
    other = cp.propose(sid, action="launch", resource="staging/db", dry_run=True)
    assert live.code is DecisionCode.APPROVAL_REQUIRED and other.code is DecisionCode.APPROVAL_REQUIRED
    resumed = cp.resume("k-1")
    assert resumed.allowed and cp.replay(sid)[-1].payload["mode"] == "dry_run"
    assert cp.replay(sid)[-1].payload["identity"]["org_id"] == "acme"
    assert cp.verify(sid).ok
    cp.close()
