"""The approval round-trip bench: every round is a ticket approved in another process that wakes the waiter."""

from __future__ import annotations

import json

import pytest

from agent_control_plane import ControlPlaneFacade, TicketStatus
from agent_control_plane._bench.action import COST
from agent_control_plane._bench.approvals import POLICY, QUICK_ROUNDS, WARM_UP_ROUNDS, measure_round_trips
from agent_control_plane.bench import main
from conftest import Backend


def test_every_round_trip_ends_allowed_and_settled(backend: Backend, table_prefix: str) -> None:
    samples, wall_ns = measure_round_trips(backend.url, 5, prefix=table_prefix)

    assert len(samples) == 5 and wall_ns > 0
    # The approver got each ticket id after the waiter created the ticket, and the waiter woke after both.
    assert all(created < approved and created < woken for created, approved, woken in samples)
    with ControlPlaneFacade.from_database_url(backend.url, policy=POLICY, table_prefix=table_prefix) as cp:
        (session,) = cp.list_sessions()
        budget = cp.get_remaining_budget(session.session_id)
        assert budget["action_count"] == 5 + WARM_UP_ROUNDS
        assert budget["reserved_cost"] == 0
        assert budget["spent_cost"] == COST * (5 + WARM_UP_ROUNDS)
        tickets = cp.list_tickets(session_id=session.session_id)
        assert len(tickets) == 5 + WARM_UP_ROUNDS
        assert {t.status for t in tickets} == {TicketStatus.CONSUMED}
        assert {t.decided_by for t in tickets} == {"bench-approver"}


def test_quick_approvals_run_reports_wake_up_and_round_trip_per_backend(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--only", "approvals", "--json"]) == 0

    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"approvals"}  # --only approvals: no throughput rows, no decision table
    rows = {row["backend"]: row for row in document["approvals"]["rows"]}
    assert set(rows) == {"sqlite", "postgres"}
    if rows["postgres"]["status"].startswith("unavailable"):
        del rows["postgres"]
    for row in rows.values():
        assert row["status"] == "ok", row
        assert row["rounds"] == row["allowed_rounds"] == QUICK_ROUNDS
        assert 0 < row["wake_p50_ms"] <= row["wake_p99_ms"]
        assert 0 < row["round_trip_p50_ms"] <= row["round_trip_p99_ms"]
        assert row["wake_p50_ms"] <= row["round_trip_p50_ms"]
        assert row["rounds_per_s"] > 0
    assert rows["sqlite"]["target"] is None
    if "postgres" in rows:
        assert rows["postgres"]["target"] == "p50 ≤ 5 ms"
        assert rows["postgres"]["target_met"] == (rows["postgres"]["wake_p50_ms"] <= 5.0)
    assert document["approvals"]["targets"] == {"postgres_wake_p50_ms": 5.0}
