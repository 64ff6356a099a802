"""The benchmark: its capture matches the storage layer, its replay is a valid action, and it runs."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from itertools import pairwise

import pytest

from agent_control_plane import ControlPlaneFacade
from agent_control_plane._bench.action import POLICY, BenchError, governed_action
from agent_control_plane._bench.capture import Capture, CapturedStatement, capture_action
from agent_control_plane._bench.replay import build_plan, connect_raw, replay_action
from agent_control_plane.bench import main
from agent_control_plane.store.prepared import TRACE
from conftest import Backend

# Propose: reserve budget and claim a seq, the proposal row, its event, the new head hash. Settle: close the
# proposal, move the reservation to spent and claim a seq, its event, the new head hash. One transaction each.
PROPOSE = [
    "UPDATE sessions RETURNING last_seq, last_hash, agent_id",
    "INSERT proposals",
    "INSERT events",
    "UPDATE sessions",
]
SETTLE = [
    "UPDATE proposals RETURNING session_id, cost, actual_cost, agent_id, action, model_id, estimated_tokens",
    "UPDATE sessions RETURNING last_seq, last_hash",
    "INSERT events",
    "UPDATE sessions",
]


@pytest.fixture
def bench_plane(backend: Backend, table_prefix: str) -> Iterator[ControlPlaneFacade]:
    plane = ControlPlaneFacade.from_database_url(backend.url, policy=POLICY, table_prefix=table_prefix)
    plane.setup()
    yield plane
    plane.close()


def _capture(plane: ControlPlaneFacade) -> Capture:
    return capture_action(plane, plane.open_session("capture", max_cost=1000))


def _shape(statement: CapturedStatement, table_prefix: str) -> str:
    """`UPDATE sessions RETURNING …` for a statement; BEGIN and COMMIT as they are."""
    if statement.commit or statement.verb == "BEGIN":
        return statement.sql
    match = re.match(rf"\s*(?:UPDATE|INSERT INTO|DELETE FROM)\s+{table_prefix}(\w+)", statement.sql)
    assert match is not None, statement.sql
    returning = f" RETURNING {', '.join(statement.returning)}" if statement.returning else ""
    return f"{statement.verb} {match.group(1)}{returning}"


def test_captured_action_is_the_storage_layers_two_transactions(
    backend: Backend, bench_plane: ControlPlaneFacade, table_prefix: str
) -> None:
    capture = _capture(bench_plane)

    # SQLite takes the write lock up front with BEGIN IMMEDIATE, and the replay must do the same; psycopg opens
    # the transaction itself, for the facade and the replay alike.
    begin = ["BEGIN IMMEDIATE"] if backend.name == "sqlite" else []
    expected = [*begin, *PROPOSE, "COMMIT", *begin, *SETTLE, "COMMIT"]
    assert [_shape(s, table_prefix) for s in capture.statements] == expected
    assert [e.kind for e in capture.events] == ["proposal.decided", "proposal.settled"]


def test_capture_leaves_no_listener_and_no_trace_behind(bench_plane: ControlPlaneFacade) -> None:
    _capture(bench_plane)

    assert len(bench_plane.engine.pool.dispatch.checkout) == 0
    with bench_plane.engine.connect() as conn:
        assert TRACE not in conn.info
    governed_action(bench_plane, bench_plane.open_session("after", max_cost=1000))
    with bench_plane.engine.connect() as conn:
        assert TRACE not in conn.info


def test_replay_plan_chains_events_onto_the_heads_it_reads(bench_plane: ControlPlaneFacade) -> None:
    plan = build_plan(_capture(bench_plane))
    steps = [s for s in plan.steps if not s.commit and not s.sql.startswith("BEGIN")]

    assert [s.head for s in steps] == [True, False, False, False, False, True, False, False]
    events = [s for s in steps if s.payload_at >= 0]
    assert len(events) == 2
    assert all(len(s.patches) == 4 for s in events)  # seq, prev_hash, hash, proposal id in the payload
    assert steps[1].patches, "the proposal row gets a fresh id every action"
    assert all(s.patches for s in (steps[3], steps[7])), "the head hash follows the replayed chain"


def test_replay_plan_refuses_statements_that_claim_no_seq(bench_plane: ControlPlaneFacade) -> None:
    capture = _capture(bench_plane)
    without_claims = tuple(s for s in capture.statements if s.returning[:2] != ("last_seq", "last_hash"))

    with pytest.raises(BenchError, match="before any statement claimed a seq"):
        build_plan(replace(capture, statements=without_claims))


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
    settled = [e.payload["proposal_id"] for e in events if e.kind == "proposal.settled"]
    assert settled == ids
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
