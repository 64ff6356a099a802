"""The benchmark: its capture matches the storage layer, its replay is a valid action, and it runs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from itertools import pairwise

import pytest

from agent_control_plane import ControlPlaneFacade
from agent_control_plane.bench import Capture, build_plan, capture_action, connect_raw, main, replay_action
from conftest import Backend

# One propose (reserve, proposal row, event, head hash), then one settle (close the proposal, budget, event,
# head hash).
ACTION_SHAPE = ["UPDATE", "INSERT", "INSERT", "UPDATE", "UPDATE", "UPDATE", "INSERT", "UPDATE"]


@pytest.fixture
def bench_plane(backend: Backend, table_prefix: str) -> Iterator[ControlPlaneFacade]:
    from agent_control_plane.bench import POLICY

    plane = ControlPlaneFacade.from_database_url(backend.url, policy=POLICY, table_prefix=table_prefix)
    plane.setup()
    yield plane
    plane.close()


def _capture(plane: ControlPlaneFacade) -> Capture:
    return capture_action(plane, plane.open_session("capture", max_cost=1000))


def test_captured_action_is_two_transactions_of_the_expected_statements(
    backend: Backend, bench_plane: ControlPlaneFacade
) -> None:
    capture = _capture(bench_plane)
    verbs = [s.verb for s in capture.statements]

    assert [v for v in verbs if v not in ("BEGIN", "COMMIT")] == ACTION_SHAPE
    assert verbs.count("COMMIT") == 2
    assert verbs[-1] == "COMMIT"
    if backend.name == "sqlite":
        # Each transaction takes the write lock up front, and the replay must do the same.
        begins = [s.statement for s in capture.statements if s.verb == "BEGIN"]
        assert begins == ["BEGIN IMMEDIATE", "BEGIN IMMEDIATE"]
        assert verbs[0] == "BEGIN"
        assert verbs[verbs.index("COMMIT") + 1] == "BEGIN"
    else:
        assert "BEGIN" not in verbs  # psycopg opens the transaction itself, for the facade and the replay alike
    assert all(not s.executemany for s in capture.statements)


def test_replay_plan_chains_events_onto_the_heads_it_reads(bench_plane: ControlPlaneFacade) -> None:
    plan = build_plan(_capture(bench_plane))
    steps = [s for s in plan.steps if not s.commit and not s.sql.startswith("BEGIN")]

    assert [s.head for s in steps] == [True, False, False, False, False, True, False, False]
    events = [s for s in steps if s.payload_at >= 0]
    assert len(events) == 2
    assert all(len(s.patches) >= 4 for s in events)  # seq, prev_hash, hash, proposal id in the payload
    assert steps[1].patches, "the proposal row gets a fresh id every action"


def test_replayed_actions_leave_a_gap_free_log_and_a_consistent_budget(
    backend: Backend, bench_plane: ControlPlaneFacade
) -> None:
    plan = build_plan(_capture(bench_plane))
    session_id = bench_plane.open_session("replayed", max_cost=1000)
    steps = plan.for_session(session_id)
    connection = connect_raw(backend.name, backend.url, "FULL")
    cursor = connection.cursor()
    ids = [str(uuid.uuid4()) for _ in range(5)]
    try:
        for pid in ids:
            replay_action(cursor, connection.commit, steps, pid)
    finally:
        cursor.close()
        connection.close()

    events = bench_plane.replay(session_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert all(later.prev_hash == earlier.hash for earlier, later in pairwise(events))
    decided = [e.payload["proposal_id"] for e in events if e.kind == "proposal.decided"]
    assert decided == ids
    budget = bench_plane.get_remaining_budget(session_id)
    assert budget["action_count"] == 5
    assert budget["reserved_cost"] == 0


def test_quick_sqlite_run_reports_both_synchronous_modes_against_the_limit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--quick", "--only", "sqlite", "--json"]) == 0

    document = json.loads(capsys.readouterr().out)
    rows = document["rows"]
    assert {r["synchronous"] for r in rows} == {"FULL", "NORMAL"}
    assert {(r["workers"], r["sessions"]) for r in rows} >= {(1, "per-worker"), (4, "shared")}
    for row in rows:
        assert row["status"] == "ok", row
        assert row["ours_actions_per_s"] > 0
        assert row["limit_actions_per_s"] > 0
        assert row["ratio"] > 0
        assert 0 < row["ours_p50_ms"] <= row["ours_p99_ms"]
    assert document["min_ratio"] == min(r["ratio"] for r in rows)
