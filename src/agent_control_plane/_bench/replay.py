"""The limit: a captured operation replayed on the bare driver, with a fresh id every time.

For a governed action, values that must change per action are patched in: the proposal id (and the payload text
that quotes it), and each event's seq, prev_hash and hash, chained onto the head that the replay's own
`RETURNING last_seq, last_hash` returned. A recorded token usage only needs a fresh ledger row id (`id_steps`).
Everything else is sent exactly as the facade sent it.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.engine import make_url

from agent_control_plane._bench.action import Backend, BenchError
from agent_control_plane._bench.capture import Capture, CapturedStatement
from agent_control_plane.store.dialect import SqliteSync
from agent_control_plane.store.eventlog import EventRow

# Where a patched value comes from in each replayed action. _PID is the run's fresh id: the proposal id of a
# governed action, the ledger row id of a recorded usage.
_PID, _PID_TEXT, _SEQ, _HEAD_HASH, _NEW_HASH = range(5)


@dataclass(frozen=True, slots=True)
class ReplayStep:
    sql: str
    values: tuple[Any, ...]
    names: tuple[str, ...] | None
    """Dict keys when the driver takes named parameters; None for positional."""
    patches: tuple[tuple[int, int, Any], ...]
    """(value index, source, argument): values that change every action. The argument is the text around the
    proposal id (_PID_TEXT) or the event's seq relative to the claimed head (_SEQ)."""
    payload_at: int
    """Index of the value hashed into a new event hash, -1 if none."""
    head: bool
    """RETURNING (last_seq, last_hash, …) of the session row: the head that the next events chain onto."""
    fetch: bool
    commit: bool
    static: Any = None
    """Prebuilt parameters when nothing changes per action."""


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """The captured statements, ready to run again with a fresh proposal id and a consistent event chain."""

    steps: tuple[ReplayStep, ...]
    session_id: str

    def for_session(self, session_id: str) -> tuple[ReplayStep, ...]:
        """The steps with `session_id` in place of the captured session's id."""
        return swapped(self.steps, {self.session_id: session_id})


_COMMIT = ReplayStep("", (), None, (), -1, head=False, fetch=False, commit=True)


def swapped(steps: Sequence[ReplayStep], swaps: Mapping[str, str]) -> tuple[ReplayStep, ...]:
    """`steps` ready to run, with each captured id that is a key of `swaps` (alone, or in a text) replaced."""

    def swap(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        for old, new in swaps.items():
            value = value.replace(old, new)
        return value

    ready = []
    for step in steps:
        values = tuple(swap(v) for v in step.values)
        patches = tuple(
            (i, src, tuple(swap(p) for p in arg) if src == _PID_TEXT else arg) for i, src, arg in step.patches
        )
        static = None
        if not step.patches and not step.commit:
            static = values if step.names is None else dict(zip(step.names, values, strict=True))
        ready.append(replace(step, values=values, patches=patches, static=static))
    return tuple(ready)


def id_steps(statements: Sequence[CapturedStatement], fresh_id: str) -> tuple[ReplayStep, ...]:
    """Steps for statements whose only value that must change every run is one id (`fresh_id` as captured).

    Every statement that returns rows (a SELECT, or a RETURNING clause) has them fetched, as the facade does.
    """
    steps = []
    for st in statements:
        if st.commit:
            steps.append(_COMMIT)
            continue
        patches: list[tuple[int, int, Any]] = []
        for index, value in enumerate(st.values):
            if value == fresh_id:
                patches.append((index, _PID, None))
            elif isinstance(value, str) and fresh_id in value:
                patches.append((index, _PID_TEXT, tuple(value.split(fresh_id))))
        fetch = bool(st.returning) or st.verb == "SELECT"
        steps.append(ReplayStep(st.sql, st.values, st.names, tuple(patches), -1, head=False, fetch=fetch, commit=False))
    if not any(step.patches for step in steps):
        raise BenchError(f"no captured statement carries the id {fresh_id!r} that must be fresh every run")
    return tuple(steps)


def build_plan(capture: Capture) -> ReplayPlan:
    """Turn a capture into replay steps, or say why the statements no longer fit the replay's model.

    Event inserts are recognised by the stored events' own values (an insert carries the event's prev_hash
    and hash), so the plan needs no parameter names and works for positional and named paramstyles alike.
    """
    steps: list[ReplayStep] = []
    transaction: list[CapturedStatement] = []
    for st in capture.statements:
        if st.commit:
            steps.extend(_transaction_steps(transaction, capture))
            steps.append(_COMMIT)
            transaction = []
        else:
            transaction.append(st)
    if transaction:
        raise BenchError("the captured statements end inside a transaction")
    written = sorted(ev.seq for st in capture.statements for ev in _written(st, capture.events))
    logged = [ev.seq for ev in capture.events]
    if written != logged:
        raise BenchError(f"the captured statements write the events with seqs {written}, the log has {logged}")
    if not any(s.head for s in steps):
        raise BenchError("no captured statement claims the session's next seq (RETURNING last_seq, last_hash)")
    return ReplayPlan(tuple(steps), capture.session_id)


def _written(st: CapturedStatement, events: Sequence[EventRow]) -> list[EventRow]:
    """The events `st` inserts: an insert is the one statement that carries both an event's prev_hash and hash."""
    return [ev for ev in events if ev.hash in st.values and ev.prev_hash in st.values]


def _transaction_steps(statements: Sequence[CapturedStatement], capture: Capture) -> list[ReplayStep]:
    writes = [_written(st, capture.events) for st in statements]
    # The claim's RETURNING last_seq is the newest seq the transaction writes; its events take the seqs below.
    last_seq = max((ev.seq for events in writes for ev in events), default=0)
    hashes = {ev.hash for ev in capture.events}
    pid = capture.proposal_id
    steps = []
    have_head, head_hash = False, ""
    for st, events in zip(statements, writes, strict=True):
        patches: list[tuple[int, int, Any]] = []
        payload_at = -1
        if len(events) > 1:
            raise BenchError(f"{st.sql!r} writes several events in one execution")
        if events:
            if not have_head:
                raise BenchError(f"{st.sql!r} writes an event before any statement claimed a seq")
            patches, payload_at = _event_patches(st, events[0], last_seq)
            head_hash = events[0].hash
        patched = {index for index, _, _ in patches}
        for index, value in enumerate(st.values):
            if index in patched:
                continue
            if isinstance(value, str) and value in hashes:
                if value != head_hash:
                    raise BenchError(f"{st.sql!r} stores a hash that is not the newest event's")
                patches.append((index, _HEAD_HASH, None))
            elif value == pid:
                patches.append((index, _PID, None))
            elif isinstance(value, str) and pid in value:
                patches.append((index, _PID_TEXT, tuple(value.split(pid))))
        head = st.returning[:2] == ("last_seq", "last_hash")
        have_head = have_head or head
        steps.append(
            ReplayStep(
                sql=st.sql,
                values=st.values,
                names=st.names,
                patches=tuple(sorted(patches)),
                payload_at=payload_at,
                head=head,
                fetch=bool(st.returning),
                commit=False,
            )
        )
    return steps


def _event_patches(st: CapturedStatement, ev: EventRow, last_seq: int) -> tuple[list[tuple[int, int, Any]], int]:
    """The seq, prev_hash and hash of the event `st` inserts, and where its payload is."""

    def at(wanted: Any) -> int:
        found = [i for i, v in enumerate(st.values) if type(v) is type(wanted) and v == wanted]
        if len(found) != 1:
            raise BenchError(f"cannot tell which parameter of {st.sql!r} is {wanted!r} ({len(found)} candidates)")
        return found[0]

    patches = [
        (at(ev.seq), _SEQ, ev.seq - last_seq),
        (at(ev.prev_hash), _HEAD_HASH, None),
        (at(ev.hash), _NEW_HASH, None),
    ]
    return patches, at(ev.payload)


def replay_action(cursor: Any, commit: Callable[[], None], steps: Sequence[ReplayStep], pid: str) -> None:
    """One governed action's SQL on the bare driver: the loop the limit is made of, so it stays minimal."""
    seq, head_hash = 0, ""
    for step in steps:
        if step.commit:
            commit()
            continue
        params = step.static
        if params is None:
            values = list(step.values)
            hash_at = -1
            for index, source, arg in step.patches:
                if source == _PID:
                    values[index] = pid
                elif source == _PID_TEXT:
                    values[index] = pid.join(arg)
                elif source == _SEQ:
                    values[index] = seq + arg
                elif source == _HEAD_HASH:
                    values[index] = head_hash
                else:
                    hash_at = index
            if hash_at >= 0:
                # After the loop: the payload (patched above) and prev_hash go into the new hash.
                head_hash = hashlib.sha256(f"{head_hash}{values[step.payload_at]}".encode()).hexdigest()
                values[hash_at] = head_hash
            params = tuple(values) if step.names is None else dict(zip(step.names, values, strict=True))
        cursor.execute(step.sql, params)
        if step.head:
            seq, head_hash = cursor.fetchone()[:2]
        elif step.fetch:
            cursor.fetchone()


def connect_raw(backend: Backend, url: str, synchronous: SqliteSync) -> Any:
    """A bare driver connection to the database at `url`, set up as the facade's engine sets up its own."""
    if backend == "sqlite":
        return _raw_sqlite(url, synchronous)
    import psycopg

    return psycopg.connect(psycopg_dsn(url))


def _raw_sqlite(url: str, synchronous: SqliteSync) -> sqlite3.Connection:
    # The same PRAGMAs as store/dialect.py; isolation_level=None so the captured BEGIN IMMEDIATE opens each
    # transaction, as it does for the facade.
    conn = sqlite3.connect(make_url(url).database or "", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def psycopg_dsn(url: str) -> str:
    """`url` (any SQLAlchemy PostgreSQL URL) as a libpq connection string for psycopg."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
