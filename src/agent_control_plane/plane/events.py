"""Host-emitted events, the best-effort buffer, replay, and hash-chain verification.

`state_bearing=True` events are written in their own transaction before `emit` returns, and a failure raises:
the caller must not go on as if the event were recorded. `state_bearing=False` events (telemetry, progress) go
into a bounded in-memory buffer that is written in batches; when the buffer is full, or a flush fails and the
failed batch no longer fits, the oldest events are dropped and counted.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection

from agent_control_plane.clock import from_micros
from agent_control_plane.errors import EventLogError, InvalidInputError, SessionNotFoundError
from agent_control_plane.plane.context import PlaneContext
from agent_control_plane.store import eventlog, sessions
from agent_control_plane.store.eventlog import EventRow, Head
from agent_control_plane.store.tables import GENESIS_HASH
from agent_control_plane.types.events import EventFrame, EventKind, VerifyReport

_HOST_KIND = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_BUILT_IN = frozenset(kind.value for kind in EventKind)


def check_host_kind(kind: object) -> str:
    """Event kinds a host emits: lower-case words with `_` or `-`, no dot (dotted names are the control plane's)."""
    if not isinstance(kind, str) or not _HOST_KIND.match(kind):
        raise InvalidInputError(
            f"event kind {kind!r} must be 1-64 lower-case letters, digits, '_' or '-', starting with a letter "
            "(dotted names such as 'proposal.decided' are reserved for the control plane)"
        )
    return kind


@dataclass(frozen=True, slots=True)
class PendingEvent:
    session_id: str
    kind: str
    payload: str
    recorded_at: int


def append_to_stream(conn: Connection, ctx: PlaneContext, session_id: str, events: list[PendingEvent]) -> int | None:
    """Claim seqs on a session's stream and append `events`; returns the last seq, or None if no such session."""
    row = sessions.claim(conn, ctx.tables, session_id, len(events), events[-1].recorded_at)
    if row is None:
        return None
    eventlog.append(
        conn,
        ctx.tables,
        session_id,
        Head(row["last_seq"], row["last_hash"]),
        [(p.kind, p.payload, p.recorded_at) for p in events],
    )
    return int(row["last_seq"])


def write(conn: Connection, ctx: PlaneContext, events: list[PendingEvent]) -> list[PendingEvent]:
    """Append buffered events to their sessions' logs, in order. Returns those whose session does not exist."""
    by_session: dict[str, list[PendingEvent]] = {}
    for pending in events:
        by_session.setdefault(pending.session_id, []).append(pending)
    orphans: list[PendingEvent] = []
    for session_id, batch in by_session.items():
        if append_to_stream(conn, ctx, session_id, batch) is None:
            orphans.extend(batch)
    return orphans


def emit_state_bearing(conn: Connection, ctx: PlaneContext, event: PendingEvent) -> int:
    """Write one event now and return its seq; raises `SessionNotFoundError` for an unknown session."""
    seq = append_to_stream(conn, ctx, event.session_id, [event])
    if seq is None:
        raise SessionNotFoundError(f"unknown session id {event.session_id!r}: event {event.kind!r} not recorded")
    return seq


@dataclass(frozen=True, slots=True)
class BufferStats:
    """The best-effort event buffer: events waiting to be written, and events dropped since start."""

    pending: int
    dropped: int
    capacity: int


class EventBuffer:
    """A bounded, thread-safe queue of best-effort events."""

    def __init__(self, capacity: int = 10_000, flush_at: int = 256) -> None:
        if capacity < 1 or flush_at < 1:
            raise ValueError("event buffer capacity and flush_at must be at least 1")
        self.capacity = capacity
        self.flush_at = min(flush_at, capacity)
        self._items: deque[PendingEvent] = deque()
        self._dropped = 0
        self._lock = threading.Lock()

    def add(self, event: PendingEvent) -> bool:
        """Queue one event; True when enough are waiting that the caller should flush."""
        with self._lock:
            self._items.append(event)
            self._trim()
            return len(self._items) >= self.flush_at

    def take(self) -> list[PendingEvent]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            return items

    def put_back(self, events: Iterable[PendingEvent]) -> None:
        """Return a batch that could not be written, ahead of anything queued since, keeping the newest if full."""
        with self._lock:
            self._items.extendleft(reversed(list(events)))
            self._trim()

    def drop(self, count: int) -> None:
        with self._lock:
            self._dropped += count

    def _trim(self) -> None:
        while len(self._items) > self.capacity:
            self._items.popleft()
            self._dropped += 1

    def stats(self) -> BufferStats:
        with self._lock:
            return BufferStats(len(self._items), self._dropped, self.capacity)


def frame(row: EventRow) -> EventFrame:
    if "." in row.kind and row.kind not in _BUILT_IN:
        raise EventLogError(
            f"session {row.session_id} seq {row.seq} has event kind {row.kind!r}, which this version of "
            "agent-control-plane does not know; upgrade the package before reading this log"
        )
    return EventFrame(
        session_id=row.session_id,
        seq=row.seq,
        kind=row.kind,
        payload=json.loads(row.payload),
        recorded_at=from_micros(row.recorded_at),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def replay(conn: Connection, ctx: PlaneContext, session_id: str, after_seq: int, limit: int | None) -> list[EventFrame]:
    if sessions.get(conn, ctx.tables, session_id) is None:
        raise SessionNotFoundError(f"unknown session id {session_id!r} (see `acp sessions list`)")
    return [frame(row) for row in eventlog.read(conn, ctx.tables, session_id, after_seq=after_seq, limit=limit)]


def verify(conn: Connection, ctx: PlaneContext, session_id: str) -> VerifyReport:
    """Recompute the chain from the rows; the first event that does not fit is reported, with what is wrong."""
    head = sessions.get(conn, ctx.tables, session_id)
    if head is None:
        raise SessionNotFoundError(f"unknown session id {session_id!r} (see `acp sessions list`)")
    expected, prev, checked = 1, GENESIS_HASH, 0

    def bad(seq: int, problem: str) -> VerifyReport:
        return VerifyReport(session_id, False, checked, seq, problem)

    for row in eventlog.iterate(conn, ctx.tables, session_id):
        if row.seq != expected:
            return bad(expected, f"seq {expected} is missing (the next stored event is seq {row.seq})")
        if row.prev_hash != prev:
            return bad(row.seq, "prev_hash does not match the previous event's hash (a row was changed or moved)")
        if eventlog.event_hash(prev, row.session_id, row.seq, row.kind, row.payload, row.recorded_at) != row.hash:
            return bad(row.seq, "the event's content does not match its hash (the row was edited)")
        prev, expected, checked = row.hash, expected + 1, checked + 1
    last = expected - 1
    if int(head["last_seq"]) != last:
        return bad(last + 1, f"the log ends at seq {last} but the session has written {head['last_seq']} events")
    if head["last_hash"] != prev:
        return bad(last, "the last event's hash does not match the session's recorded head hash")
    return VerifyReport(session_id, True, checked)


def verify_all(conn: Connection, ctx: PlaneContext) -> list[VerifyReport]:
    return [verify(conn, ctx, session_id) for session_id in sessions.stream_ids(conn, ctx.tables)]
