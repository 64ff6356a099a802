"""Token budgets under real worker processes: no lost update of a window's totals, no reservation past a cap."""

from __future__ import annotations

import multiprocessing
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from agent_control_plane import (
    ControlPlaneFacade,
    ControlPlaneSetup,
    IdentityContext,
    ModelId,
    OrgId,
    TeamId,
    TokenBudgetConfig,
    TokenUsage,
    UserId,
)
from conftest import Backend

ACME = IdentityContext(org_id=OrgId("tenant-acme"))
RESEARCH = IdentityContext(org_id=OrgId("tenant-acme"), team_id=TeamId("research"))
CALLS = 40


def _workers(backend: Backend) -> int:
    return 8 if backend.name == "postgres" else 4


def _run(target: Any, backend: Backend, prefix: str, workers: int, *extra: Any) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    processes = [
        ctx.Process(target=target, args=(backend.url, prefix, number, barrier, results, *extra))
        for number in range(workers)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=240) for _ in processes]
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    return outcomes


def _recorder(url: str, prefix: str, number: int, barrier: Any, results: Any, session_id: str) -> None:
    identity = IdentityContext(
        org_id=OrgId("tenant-acme"), team_id=TeamId("research"), user_id=UserId(f"user-{number}")
    )
    with ControlPlaneFacade.from_database_url(url, table_prefix=prefix) as cp:
        barrier.wait()
        for call in range(CALLS):
            usage = TokenUsage(
                model_id=ModelId("m"), input_tokens=100 + number, output_tokens=call, estimated_cost_usd="0.000123"
            )
            with cp.token_budget_tracker() as tracker:
                tracker.record_usage(session_id if call % 4 == 0 else None, identity, usage)
    results.put(number)


def test_workers_recording_for_one_tenant_lose_no_update(backend: Backend, table_prefix: str) -> None:
    configs = [TokenBudgetConfig(ACME, "daily"), TokenBudgetConfig(RESEARCH, "monthly", max_tokens=10**12)]
    cp = ControlPlaneSetup(backend.url, token_budget_configs=configs, table_prefix=table_prefix).build()
    sid = cp.open_session("shared")
    workers = _workers(backend)
    _run(_recorder, backend, table_prefix, workers, sid)

    u = cp.registry.token_usage
    with cp.engine.connect() as conn:
        rows, tokens, cost = conn.execute(select(func.count(), func.sum(u.c.total_tokens), func.sum(u.c.cost))).one()
    expected_tokens = sum((100 + n) * CALLS + sum(range(CALLS)) for n in range(workers))
    assert (rows, tokens, cost) == (workers * CALLS, expected_tokens, Decimal("0.000123") * workers * CALLS)
    with cp.token_budget_tracker() as tracker:
        states = tracker.get_budget_states(RESEARCH)
        summary = tracker.usage_summary(ACME, "daily")
    # Both windows' running totals equal the sum of the ledger rows: no increment was lost.
    assert [(s.tokens_used, s.cost_used_usd) for s in states] == [(tokens, cost), (tokens, cost)]
    assert (summary.calls, summary.total_tokens) == (rows, tokens)
    events = cp.replay(sid)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(e.kind == "token_usage.recorded" for e in events) == workers * CALLS // 4
    assert cp.verify(sid).ok
    cp.close()


def _reserver(url: str, prefix: str, number: int, barrier: Any, results: Any) -> None:
    identity = IdentityContext(org_id=OrgId("tenant-acme"), team_id=TeamId("research"), user_id=UserId(f"u{number}"))
    granted = refused = 0
    with ControlPlaneFacade.from_database_url(url, table_prefix=prefix) as cp:
        barrier.wait()
        while refused < 3:
            with cp.token_budget_tracker() as tracker:
                check = tracker.check_budget(identity, estimated_tokens=100, estimated_cost_usd="0.01", reserve=True)
            if check.allowed:
                granted += 1
            else:
                assert "token budget exceeded" in check.reason, check.reason
                refused += 1
    results.put(granted)


def test_workers_reserving_at_once_are_never_admitted_past_the_tightest_cap(
    backend: Backend, table_prefix: str
) -> None:
    # The team's cap (3000 tokens) binds before the org's (5000 tokens, $100): exactly 30 reservations of 100.
    configs = [
        TokenBudgetConfig(ACME, "daily", max_tokens=5000, max_cost_usd="100"),
        TokenBudgetConfig(RESEARCH, "daily", max_tokens=3000),
    ]
    cp = ControlPlaneSetup(backend.url, token_budget_configs=configs, table_prefix=table_prefix).build()
    granted = _run(_reserver, backend, table_prefix, _workers(backend))
    assert sum(granted) == 30
    with cp.token_budget_tracker() as tracker:
        team, org = sorted(tracker.get_budget_states(RESEARCH), key=lambda s: s.config.identity.team_id or "")[::-1]
    assert (team.tokens_reserved, team.remaining_tokens) == (3000, 0)
    # Refused attempts gave back what they had reserved in the org's window: it holds exactly the 30 granted.
    assert (org.tokens_reserved, org.cost_reserved_usd) == (3000, Decimal("0.3"))
    cp.close()
