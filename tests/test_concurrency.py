"""Concurrency claims proven with real worker processes: no overspend, exact counts, a gap-free chained log."""

from __future__ import annotations

import multiprocessing
from decimal import Decimal
from typing import Any

import pytest

from agent_control_plane import ControlPlaneFacade, DecisionCode
from conftest import POLICY, Backend

PRICE = Decimal("0.05")


def _worker(url: str, prefix: str, session_id: str, barrier: Any, results: Any, key_prefix: str | None) -> None:
    allowed = denied = 0
    with ControlPlaneFacade.from_database_url(url, policy=POLICY, table_prefix=prefix) as cp:
        barrier.wait()
        number = 0
        while True:
            number += 1
            key = None if key_prefix is None else f"{key_prefix}-{number % 40}"
            d = cp.propose(session_id, action="read_x", cost=PRICE, idempotency_key=key)
            if d.replayed:
                # An earlier proposal under this key (any worker's): not settled yet, or settled and refused.
                assert d.allowed or d.code is DecisionCode.ALREADY_SETTLED, d.reason
            elif d.allowed:
                allowed += 1
                cp.settle(d.proposal_id, actual_cost=PRICE)
            else:
                assert d.code in (DecisionCode.COST_BUDGET_EXCEEDED, DecisionCode.ACTION_COUNT_EXCEEDED), d.reason
                denied += 1
                if denied >= 3:
                    break
            if key_prefix is not None and number >= 80:
                break
    results.put((allowed, denied))


def _race(backend: Backend, prefix: str, session_id: str, workers: int, key_prefix: str | None = None) -> int:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    processes = [
        ctx.Process(target=_worker, args=(backend.url, prefix, session_id, barrier, results, key_prefix))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    counts = [results.get(timeout=180) for _ in processes]
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    return sum(allowed for allowed, _ in counts)


def _workers(backend: Backend) -> int:
    return 8 if backend.name == "postgres" else 4


def test_workers_racing_on_one_cost_budget_never_overspend(
    cp: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = cp.open_session("shared budget", max_cost=Decimal("3.00"))
    allowed = _race(backend, table_prefix, sid, _workers(backend))
    assert allowed == 60  # 3.00 / 0.05, exactly
    budget = cp.get_remaining_budget(sid)
    assert budget["spent_cost"] == Decimal("3.00") and budget["reserved_cost"] == 0
    events = cp.replay(sid)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(e.kind == "proposal.settled" for e in events) == 60
    assert cp.verify(sid).ok


def test_workers_racing_on_one_action_count_get_exactly_the_limit(
    cp: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = cp.open_session("counted", max_action_count=45)
    assert _race(backend, table_prefix, sid, _workers(backend)) == 45
    assert cp.get_remaining_budget(sid)["remaining_count"] == 0
    assert cp.verify(sid).ok


def test_workers_retrying_with_shared_idempotency_keys_reserve_each_key_once(
    cp: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = cp.open_session("idempotent", max_cost=Decimal("100"))
    _race(backend, table_prefix, sid, _workers(backend), key_prefix="job")
    budget = cp.get_remaining_budget(sid)
    assert budget["action_count"] == 40  # forty distinct keys, however many workers retried them
    assert budget["spent_cost"] == 40 * PRICE
    assert cp.verify(sid).ok


@pytest.mark.parametrize("workers", [2])
def test_concurrent_emitters_keep_the_chain_linear(
    cp: ControlPlaneFacade, backend: Backend, table_prefix: str, workers: int
) -> None:
    sid = cp.open_session("emitters")
    ctx = multiprocessing.get_context("spawn")
    processes = [ctx.Process(target=_emit_many, args=(backend.url, table_prefix, sid, 50)) for _ in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    report = cp.verify(sid)
    assert report.ok and report.events_checked == 1 + workers * 50


def _emit_many(url: str, prefix: str, session_id: str, count: int) -> None:
    with ControlPlaneFacade.from_database_url(url, table_prefix=prefix) as cp:
        for n in range(count):
            cp.emit(session_id, "tick", {"n": n})


def test_verify_while_another_process_appends_never_reports_a_false_break(
    cp: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = cp.open_session("busy log")
    process = multiprocessing.get_context("spawn").Process(
        target=_emit_many, args=(backend.url, table_prefix, sid, 300)
    )
    process.start()
    reports = []
    while process.is_alive():
        reports.append(cp.verify(sid))
    process.join(60)
    assert process.exitcode == 0
    assert reports and all(report.ok for report in reports), [r for r in reports if not r.ok][:1]
    assert cp.verify(sid).events_checked == 301
