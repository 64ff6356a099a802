"""The hash-chained event log: gap-free seq, tamper detection, paging, best-effort buffering."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import Engine, create_engine, text

from agent_control_plane import (
    ControlPlaneFacade,
    EventLogError,
    InvalidInputError,
    SessionNotFoundError,
    StorageError,
)
from conftest import POLICY, Backend


@pytest.fixture
def raw(backend: Backend) -> Iterator[Engine]:
    """A plain engine for editing tables behind the library's back."""
    engine = create_engine(backend.url)
    yield engine
    engine.dispose()


def _session_with_events(cp: ControlPlaneFacade, count: int = 6) -> str:
    sid = cp.open_session("logged")
    for n in range(count - 1):
        cp.emit(sid, "step", {"n": n})
    return sid


def test_seq_runs_from_one_without_gaps_and_chains_hashes(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("chain")
    d = cp.propose(sid, action="read_x", cost=Decimal("0.1"))
    cp.settle(d.proposal_id)
    assert cp.emit(sid, "checkpoint", {"step": 3}, state_bearing=True) == 4
    events = cp.replay(sid)
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert [e.kind for e in events] == [
        "session.opened",
        "proposal.decided",
        "proposal.settled",
        "checkpoint",
    ]
    assert events[0].prev_hash == "0" * 64
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(events))
    assert cp.verify(sid).ok and cp.verify(sid).events_checked == 4


def test_replay_pages_with_after_seq_and_limit(cp: ControlPlaneFacade) -> None:
    sid = _session_with_events(cp, 10)
    assert [e.seq for e in cp.replay(sid, after_seq=3, limit=4)] == [4, 5, 6, 7]
    assert [e.seq for e in cp.replay(sid, after_seq=8)] == [9, 10]
    assert cp.replay(sid, after_seq=10) == []


def test_verify_detects_an_edited_payload(cp: ControlPlaneFacade, raw: Engine, table_prefix: str) -> None:
    sid = _session_with_events(cp)
    with raw.begin() as conn:
        conn.execute(
            text(f"UPDATE {table_prefix}events SET payload = :p WHERE session_id = :s AND seq = 3"),
            {"p": '{"n":999}', "s": sid},
        )
    report = cp.verify(sid)
    assert not report.ok and report.first_bad_seq == 3 and "edited" in (report.problem or "")


def test_verify_detects_a_deleted_row(cp: ControlPlaneFacade, raw: Engine, table_prefix: str) -> None:
    sid = _session_with_events(cp)
    with raw.begin() as conn:
        conn.execute(text(f"DELETE FROM {table_prefix}events WHERE session_id = :s AND seq = 4"), {"s": sid})
    report = cp.verify(sid)
    assert not report.ok and report.first_bad_seq == 4 and "missing" in (report.problem or "")


def test_verify_detects_a_truncated_tail(cp: ControlPlaneFacade, raw: Engine, table_prefix: str) -> None:
    sid = _session_with_events(cp)
    with raw.begin() as conn:
        conn.execute(text(f"DELETE FROM {table_prefix}events WHERE session_id = :s AND seq >= 5"), {"s": sid})
    report = cp.verify(sid)
    assert not report.ok and report.first_bad_seq == 5 and "has written 6" in (report.problem or "")


def test_verify_detects_reordered_rows(cp: ControlPlaneFacade, raw: Engine, table_prefix: str) -> None:
    sid = _session_with_events(cp)
    events = f"{table_prefix}events"
    with raw.begin() as conn:
        # Swap the contents of seq 2 and 3 (hashes travel with their rows, as a careless forger would do).
        conn.execute(text(f"UPDATE {events} SET seq = -2 WHERE session_id = :s AND seq = 2"), {"s": sid})
        conn.execute(text(f"UPDATE {events} SET seq = 2 WHERE session_id = :s AND seq = 3"), {"s": sid})
        conn.execute(text(f"UPDATE {events} SET seq = 3 WHERE session_id = :s AND seq = -2"), {"s": sid})
    report = cp.verify(sid)
    assert not report.ok and report.first_bad_seq == 2


def test_verify_all_covers_sessions_and_the_control_stream(cp: ControlPlaneFacade) -> None:
    first = _session_with_events(cp, 3)
    cp.kill_system(reason="drill", by="ops")
    reports = {r.session_id: r for r in cp.verify_all()}
    assert set(reports) >= {"control", first}
    assert all(r.ok for r in reports.values())
    assert reports["control"].events_checked == 1


def test_best_effort_events_are_buffered_then_flushed_in_order(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("telemetry")
    for n in range(5):
        assert cp.emit(sid, "progress", {"n": n}, state_bearing=False) is None
    assert cp.event_buffer_stats().pending == 5
    assert len(cp.replay(sid)) == 1
    assert cp.flush_events() == 5
    assert [e.payload.get("n") for e in cp.replay(sid)[1:]] == [0, 1, 2, 3, 4]
    assert cp.verify(sid).ok
    assert cp.event_buffer_stats().pending == 0


def test_buffer_flushes_at_its_threshold_and_on_close(backend: Backend, table_prefix: str) -> None:
    cp = ControlPlaneFacade.from_database_url(
        backend.url, policy=POLICY, table_prefix=table_prefix, event_buffer_capacity=3
    )
    cp.setup()
    sid = cp.open_session("small buffer")
    for n in range(3):  # the third reaches the buffer's size and writes the batch
        cp.emit(sid, "progress", {"n": n}, state_bearing=False)
    assert cp.event_buffer_stats().pending == 0
    cp.emit(sid, "progress", {"n": 3}, state_bearing=False)
    cp.emit(sid, "progress", {"n": 4}, state_bearing=False)
    cp.close()  # writes what is left
    with ControlPlaneFacade.from_database_url(backend.url, table_prefix=table_prefix) as reader:
        assert [e.payload["n"] for e in reader.replay(sid)[1:]] == [0, 1, 2, 3, 4]


def test_failed_flush_keeps_events_and_drops_the_oldest_on_overflow() -> None:
    cp = ControlPlaneFacade.from_database_url("sqlite:////nonexistent-dir/x.db", event_buffer_capacity=4)
    for n in range(3):
        cp.emit("some-session", "progress", {"n": n}, state_bearing=False)
    with pytest.raises(StorageError, match="flush_events failed"):
        cp.flush_events()
    assert cp.event_buffer_stats().pending == 3
    cp.emit("some-session", "progress", {"n": 3}, state_bearing=False)  # fourth: flush fails, quietly
    cp.emit("some-session", "progress", {"n": 4}, state_bearing=False)
    stats = cp.event_buffer_stats()
    assert stats.pending == 4 and stats.dropped == 1


def test_state_bearing_write_that_fails_raises(cp: ControlPlaneFacade) -> None:
    with pytest.raises(SessionNotFoundError, match="not recorded"):
        cp.emit("missing-session", "checkpoint", {"a": 1}, state_bearing=True)
    broken = ControlPlaneFacade.from_database_url("sqlite:////nonexistent-dir/x.db")
    with pytest.raises(StorageError, match="emit failed"):
        broken.emit("s", "checkpoint", {}, state_bearing=True)


def test_events_for_unknown_sessions_are_dropped_on_flush_and_counted(cp: ControlPlaneFacade) -> None:
    cp.emit("ghost", "progress", {}, state_bearing=False)
    assert cp.flush_events() == 0
    assert cp.event_buffer_stats().dropped == 1


@pytest.mark.parametrize("kind", ["proposal.decided", "Checkpoint", "", "has space", "x" * 65])
def test_reserved_or_malformed_event_kinds_are_refused(cp: ControlPlaneFacade, kind: str) -> None:
    sid = cp.open_session("kinds")
    with pytest.raises(InvalidInputError, match="event kind"):
        cp.emit(sid, kind, {})
    assert len(cp.replay(sid)) == 1


def test_unknown_event_kind_in_the_log_fails_closed(cp: ControlPlaneFacade, raw: Engine, table_prefix: str) -> None:
    sid = _session_with_events(cp, 3)
    with raw.begin() as conn:
        conn.execute(
            text(f"UPDATE {table_prefix}events SET kind = 'lease.granted' WHERE session_id = :s AND seq = 2"),
            {"s": sid},
        )
    with pytest.raises(EventLogError, match="'lease.granted'.*upgrade"):
        cp.replay(sid)


def test_replay_of_unknown_session_raises(cp: ControlPlaneFacade) -> None:
    with pytest.raises(SessionNotFoundError):
        cp.replay("nope")
    with pytest.raises(SessionNotFoundError):
        cp.verify("nope")
