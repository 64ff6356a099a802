"""The hash-chained event log: appending events to a stream whose head was claimed, and reading them back.

Each event's hash is ``sha256(prev_hash || body)`` where ``body`` is the canonical JSON object
``{"at": µs, "kind": …, "payload": {…}, "seq": n, "session_id": …}`` (sorted keys, no spaces). The payload is
stored as that same canonical text, so anyone can recompute the chain from the rows alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from agent_control_plane.store.tables import ScopedModelRegistry


@dataclass(frozen=True, slots=True)
class Head:
    """The last (claimed) sequence number of a stream and the hash of its last written event."""

    last_seq: int
    last_hash: str


@dataclass(frozen=True, slots=True)
class EventRow:
    session_id: str
    seq: int
    kind: str
    payload: str
    recorded_at: int
    prev_hash: str
    hash: str


def event_hash(prev_hash: str, session_id: str, seq: int, kind: str, payload: str, recorded_at: int) -> str:
    body = (
        f'{{"at":{recorded_at},"kind":{json.dumps(kind, ensure_ascii=False)},"payload":{payload},'
        f'"seq":{seq},"session_id":{json.dumps(session_id, ensure_ascii=False)}}}'
    )
    return hashlib.sha256(prev_hash.encode() + body.encode()).hexdigest()


def append(
    conn: Connection,
    t: ScopedModelRegistry,
    session_id: str,
    claimed: Head,
    events: Sequence[tuple[str, str, int]],
) -> str:
    """Write `events` (kind, canonical payload text, µs timestamp) into the seqs the caller claimed.

    `claimed.last_seq` is the stream's last seq *after* the claim; the events take the numbers just below it.
    Returns the new head hash, which is stored on the stream row in the same transaction.
    """
    first = claimed.last_seq - len(events) + 1
    prev = claimed.last_hash
    rows = []
    for offset, (kind, payload, recorded_at) in enumerate(events):
        seq = first + offset
        digest = event_hash(prev, session_id, seq, kind, payload, recorded_at)
        rows.append(
            {
                "session_id": session_id,
                "seq": seq,
                "kind": kind,
                "payload": payload,
                "recorded_at": recorded_at,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    st = t.statements
    st.insert_event.run_many(conn, rows)
    st.set_head.run(conn, {"p_sid": session_id, "p_hash": prev})
    return prev


def read(
    conn: Connection, t: ScopedModelRegistry, session_id: str, *, after_seq: int = 0, limit: int | None = None
) -> list[EventRow]:
    e = t.events
    stmt = select(e).where(e.c.session_id == session_id, e.c.seq > after_seq).order_by(e.c.seq)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [EventRow(**row._mapping) for row in conn.execute(stmt)]


def iterate(conn: Connection, t: ScopedModelRegistry, session_id: str, *, page: int = 1000) -> Iterator[EventRow]:
    """Every event of a stream in seq order, read a page at a time."""
    after = 0
    while True:
        rows = read(conn, t, session_id, after_seq=after, limit=page)
        yield from rows
        if len(rows) < page:
            return
        after = rows[-1].seq


def count(conn: Connection, t: ScopedModelRegistry, session_id: str) -> int:
    e = t.events
    return int(conn.execute(select(func.count()).where(e.c.session_id == session_id)).scalar_one())
