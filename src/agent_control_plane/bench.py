"""The project benchmark: governed actions per second, as a ratio of what the raw database driver can do.

One governed action is `propose` (an allowed, unrestricted action with a cost) followed by `settle`,
through `ControlPlaneFacade`. The "limit" is the same SQL: the statements one propose+settle issues are
captured from the facade's engine (`before_cursor_execute`) and replayed with the bare driver (sqlite3 /
psycopg), with the same transaction boundaries, PRAGMAs, number of worker processes and session layout, into
tables of their own. So ours/limit is the share of the database's own speed the library keeps, and the replay
follows the storage layer whenever it changes.

    python -m agent_control_plane.bench [--seconds 3] [--repeats 3] [--only sqlite|postgres] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import event
from sqlalchemy.engine import make_url

from agent_control_plane.facade import ControlPlaneFacade
from agent_control_plane.store.dialect import SqliteSync

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
ACTION = "bench_action"
COST = Decimal("0.01")
POLICY: dict[str, Any] = {"default_tier": "always_approve", "actions": {ACTION: "unrestricted"}}
OURS_PREFIX = "bench_ours_"
LIMIT_PREFIX = "bench_limit_"
WARM_UP_ACTIONS = 20
Backend = Literal["sqlite", "postgres"]


class BenchError(Exception):
    """The benchmark could not run a row (a worker failed, or the captured statements cannot be replayed)."""


# capturing the statements of one governed action ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CapturedStatement:
    """One cursor execution (or the commit that ends a transaction) seen on the facade's engine."""

    statement: str
    rows: tuple[tuple[Any, ...], ...] = ()
    """Parameter values as the driver got them; one tuple per row (several only for executemany)."""
    names: tuple[str, ...] = ()
    """Bind names, parallel to each row's values."""
    named: bool = False
    """The driver takes a dict (psycopg's pyformat) rather than a positional tuple (sqlite3's qmark)."""
    returning: tuple[str, ...] = ()
    executemany: bool = False
    commit: bool = False

    @property
    def verb(self) -> str:
        return "COMMIT" if self.commit else self.statement.lstrip().split(None, 1)[0].upper()


@dataclass(frozen=True, slots=True)
class Capture:
    """The statements of one propose+settle, and the ids that appear in their parameters."""

    statements: tuple[CapturedStatement, ...]
    session_id: str
    proposal_id: str


def capture_action(cp: ControlPlaneFacade, session_id: str) -> Capture:
    """Run one propose+settle on `cp` and record every statement it sent to the driver, and each commit."""
    _governed_action(cp, session_id)  # warm: policy snapshot cached, statements compiled
    seen: list[CapturedStatement] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        compiled = getattr(context, "compiled", None)
        sets = list(parameters) if executemany else [parameters]
        named = bool(sets) and isinstance(sets[0], dict)
        if named:
            names = tuple(sets[0])
            rows = tuple(tuple(row[n] for n in names) for row in sets)
        else:
            names = tuple(getattr(compiled, "positiontup", None) or ())
            rows = tuple(tuple(row) for row in sets)
        if any(len(row) != len(names) for row in rows):
            raise BenchError(f"cannot name the parameters of {statement!r}")
        returning = getattr(compiled, "effective_returning", None) or ()
        seen.append(
            CapturedStatement(statement, rows, names, named, tuple(c.name for c in returning), executemany=executemany)
        )

    def on_commit(_conn: Any) -> None:
        seen.append(CapturedStatement("COMMIT", commit=True))

    event.listen(cp.engine, "before_cursor_execute", on_execute)
    event.listen(cp.engine, "commit", on_commit)
    try:
        proposal_id = _governed_action(cp, session_id)
    finally:
        event.remove(cp.engine, "before_cursor_execute", on_execute)
        event.remove(cp.engine, "commit", on_commit)
    return Capture(tuple(seen), session_id, proposal_id)


def _governed_action(cp: ControlPlaneFacade, session_id: str) -> str:
    decision = cp.propose(session_id, ACTION, cost=COST)
    if not decision.allowed or decision.proposal_id is None:
        raise BenchError(f"the bench action was not allowed: {decision.reason}")
    # An explicit actual cost, as a host that knows its bill passes it.
    cp.settle(decision.proposal_id, actual_cost=COST)
    return decision.proposal_id


# the replay plan --------------------------------------------------------------------------------------------
# Where a parameter's value comes from in each replayed action.
_PID, _PID_TEXT, _SEQ, _PREV, _HASH, _LAST_HASH = range(6)
_HEAD_PARAMS = {"seq": _SEQ, "prev_hash": _PREV, "hash": _HASH, "p_hash": _LAST_HASH}


@dataclass(frozen=True, slots=True)
class ReplayStep:
    sql: str
    rows: tuple[tuple[Any, ...], ...]
    names: tuple[str, ...] | None
    """Dict keys when the driver takes named parameters; None for positional."""
    patches: tuple[tuple[int, int, tuple[str, ...]], ...]
    """(value index, source, text parts): values that change every action."""
    payload_at: int
    """Index of the value hashed into a new event hash, -1 if none."""
    head: bool
    """RETURNING (last_seq, last_hash, …) of the session row: the head that the next events chain onto."""
    fetch: bool
    executemany: bool
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

        def swap(value: Any) -> Any:
            if value == self.session_id:
                return session_id
            if isinstance(value, str) and self.session_id in value:
                return value.replace(self.session_id, session_id)
            return value

        steps = []
        for step in self.steps:
            rows = tuple(tuple(swap(v) for v in row) for row in step.rows)
            patches = tuple((i, src, tuple(swap(p) for p in parts)) for i, src, parts in step.patches)
            static = None
            if not step.patches and not step.commit:
                built = [_params(step.names, row) for row in rows]
                static = built if step.executemany else built[0]
            steps.append(replace(step, rows=rows, patches=patches, static=static))
        return tuple(steps)


def _params(names: tuple[str, ...] | None, values: Sequence[Any]) -> Any:
    return tuple(values) if names is None else dict(zip(names, values, strict=True))


def build_plan(capture: Capture) -> ReplayPlan:
    """Turn a capture into replay steps, or say why the statements no longer fit the replay's model."""
    steps: list[ReplayStep] = []
    have_head = False
    pid = capture.proposal_id
    for st in capture.statements:
        if st.commit:
            steps.append(ReplayStep("", (), None, (), -1, False, False, False, True))
            have_head = False
            continue
        patches: list[tuple[int, int, tuple[str, ...]]] = []
        sample = st.rows[0] if st.rows else ()
        for index, value in enumerate(sample):
            name = st.names[index]
            if name in _HEAD_PARAMS:
                if not have_head:
                    raise BenchError(f"{st.statement!r} writes an event before any statement claimed a seq")
                patches.append((index, _HEAD_PARAMS[name], ()))
            elif value == pid:
                patches.append((index, _PID, ()))
            elif isinstance(value, str) and pid in value:
                patches.append((index, _PID_TEXT, tuple(value.split(pid))))
        head = st.returning[:2] == ("last_seq", "last_hash")
        have_head = have_head or head
        payload_at = st.names.index("payload") if "payload" in st.names else -1
        steps.append(
            ReplayStep(
                sql=st.statement,
                rows=st.rows or ((),),
                names=st.names if st.named else None,
                patches=tuple(patches),
                payload_at=payload_at,
                head=head,
                fetch=bool(st.returning),
                executemany=st.executemany,
                commit=False,
            )
        )
    if not any(s.head for s in steps):
        raise BenchError("no captured statement claims the session's next seq (RETURNING last_seq, last_hash)")
    return ReplayPlan(tuple(steps), capture.session_id)


def replay_action(cursor: Any, commit: Callable[[], None], steps: Sequence[ReplayStep], pid: str) -> None:
    """One governed action's SQL on the bare driver: the loop the limit is made of, so it stays minimal."""
    seq, prev, last = 0, "", ""
    for step in steps:
        if step.commit:
            commit()
            continue
        if step.static is not None:
            params = step.static
        else:
            built = []
            count = len(step.rows)
            for k, base in enumerate(step.rows):
                values = list(base)
                hash_at = -1
                for index, source, parts in step.patches:
                    if source == _PID:
                        values[index] = pid
                    elif source == _PID_TEXT:
                        values[index] = pid.join(parts)
                    elif source == _SEQ:
                        values[index] = seq - count + 1 + k
                    elif source == _PREV:
                        values[index] = prev
                    elif source == _LAST_HASH:
                        values[index] = last
                    else:
                        hash_at = index
                if hash_at >= 0:
                    payload = values[step.payload_at] if step.payload_at >= 0 else ""
                    last = prev = hashlib.sha256(f"{prev}{payload}".encode()).hexdigest()
                    values[hash_at] = last
                built.append(tuple(values) if step.names is None else dict(zip(step.names, values, strict=True)))
            params = built if step.executemany else built[0]
        if step.executemany:
            cursor.executemany(step.sql, params)
        else:
            cursor.execute(step.sql, params)
        if step.head:
            seq, prev = cursor.fetchone()[:2]
        elif step.fetch:
            cursor.fetchone()


# worker processes -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Job:
    """What one worker process runs: our facade, or the captured statements on the raw driver."""

    kind: Literal["ours", "limit"]
    backend: Backend
    url: str
    prefix: str
    session_id: str
    synchronous: SqliteSync
    seconds: float
    worker: int
    plan: ReplayPlan | None = None


@dataclass(frozen=True, slots=True)
class WorkerResult:
    latencies: list[float]
    started: float
    ended: float
    error: str | None = None


def _worker_main(tasks: Queue[Job | None], results: Queue[tuple[str, int, Any]], go: Event) -> None:
    while (job := tasks.get()) is not None:
        ready = False
        try:
            with _prepared(job) as action:
                for _ in range(WARM_UP_ACTIONS):
                    action()
                results.put(("ready", job.worker, None))
                ready = True
                go.wait()
                outcome = _timed(action, job.seconds)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            if not ready:  # the others wait for everyone's ready before they start
                results.put(("ready", job.worker, error))
                go.wait()
            outcome = WorkerResult([], 0.0, 0.0, error)
        results.put(("done", job.worker, outcome))


def _timed(action: Callable[[], object], seconds: float) -> WorkerResult:
    clock = time.perf_counter  # CLOCK_MONOTONIC: comparable between processes on one machine
    latencies: list[float] = []
    started = clock()
    deadline = started + seconds
    now = started
    while now < deadline:
        before = now
        action()
        now = clock()
        latencies.append(now - before)
    return WorkerResult(latencies, started, now)


@contextmanager
def _prepared(job: Job) -> Iterator[Callable[[], object]]:
    if job.kind == "ours":
        cp = ControlPlaneFacade.from_database_url(
            job.url, policy=POLICY, table_prefix=job.prefix, sqlite_synchronous=job.synchronous
        )
        try:
            yield lambda: _governed_action(cp, job.session_id)
        finally:
            cp.close()
        return
    assert job.plan is not None
    steps = job.plan.for_session(job.session_id)
    counter = iter(range(1 << 62))
    stem = f"{uuid.uuid4().hex[:8]}-"
    connection = connect_raw(job.backend, job.url, job.synchronous)
    cursor = connection.cursor()
    try:
        # A fresh 36-character proposal id per action, like a UUID, without the cost of making one.
        yield lambda: replay_action(cursor, connection.commit, steps, f"{stem}{next(counter):027d}")
    finally:
        # Finish the statement and the transaction explicitly: a sqlite3 connection closed with a live
        # statement lingers, holding the write lock, until the garbage collector finds the cursor.
        cursor.close()
        connection.rollback()
        connection.close()


def connect_raw(backend: Backend, url: str, synchronous: SqliteSync) -> Any:
    """A bare driver connection to the database at `url`, set up as the facade's engine sets up its own."""
    if backend == "sqlite":
        return _raw_sqlite(url, synchronous)
    import psycopg

    return psycopg.connect(_psycopg_dsn(url))


def _raw_sqlite(url: str, synchronous: SqliteSync) -> sqlite3.Connection:
    # The same PRAGMAs as store/dialect.py; isolation_level=None so the captured BEGIN IMMEDIATE opens each
    # transaction, as it does for the facade.
    conn = sqlite3.connect(make_url(url).database or "", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _psycopg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class WorkerPool:
    """Spawned worker processes, reused for every run, that start each run together on one event."""

    def __init__(self, size: int) -> None:
        ctx = mp.get_context("spawn")
        self._results: Queue[tuple[str, int, Any]] = ctx.Queue()
        self._go: Event = ctx.Event()
        self._tasks: list[Queue[Job | None]] = [ctx.Queue() for _ in range(size)]
        self._processes: list[SpawnProcess] = [
            ctx.Process(target=_worker_main, args=(q, self._results, self._go), daemon=True) for q in self._tasks
        ]
        for process in self._processes:
            process.start()

    def run(self, jobs: Sequence[Job], timeout: float) -> list[WorkerResult]:
        if len(jobs) > len(self._tasks):
            raise BenchError(f"{len(jobs)} workers asked for, the pool has {len(self._tasks)}")
        for index, job in enumerate(jobs):
            self._tasks[index].put(replace(job, worker=index))
        try:
            for _ in jobs:
                self._receive("ready", timeout)
            self._go.set()
            done: dict[int, WorkerResult] = {}
            for _ in jobs:
                worker, outcome = self._receive("done", timeout + 30)
                done[worker] = outcome
        finally:
            self._go.clear()
        return [done[i] for i in range(len(jobs))]

    def _receive(self, expected: str, timeout: float) -> tuple[int, Any]:
        try:
            kind, worker, payload = self._results.get(timeout=timeout)
        except Exception:
            raise BenchError(f"a worker process sent nothing for {timeout:.0f} s") from None
        if kind != expected:
            raise BenchError(f"worker {worker} sent {kind!r}, expected {expected!r}")
        return worker, payload

    def close(self) -> None:
        for q in self._tasks:
            q.put(None)
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()


# rows -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RowSpec:
    backend: Backend
    synchronous: SqliteSync
    workers: int
    shared: bool

    @property
    def config(self) -> str:
        if self.backend == "sqlite":
            return f"SQLite WAL sync={self.synchronous}"
        return "PostgreSQL"


ROWS = (
    *(
        RowSpec("sqlite", sync, workers, shared)
        for sync in ("FULL", "NORMAL")
        for workers, shared in ((1, False), (4, True), (4, False))
    ),
    RowSpec("postgres", "FULL", 1, False),
    RowSpec("postgres", "FULL", 8, False),
    RowSpec("postgres", "FULL", 8, True),
)


@dataclass(frozen=True, slots=True)
class RunStats:
    actions_per_s: float
    p50_ms: float
    p99_ms: float


@dataclass(slots=True)
class RowResult:
    spec: RowSpec
    ours: list[RunStats] = field(default_factory=list)
    limit: list[RunStats] = field(default_factory=list)
    problem: str | None = None

    def median(self, which: Literal["ours", "limit"], attr: str) -> float:
        runs = self.ours if which == "ours" else self.limit
        return float(statistics.median(float(getattr(r, attr)) for r in runs))

    @property
    def ratio(self) -> float | None:
        if self.problem or not self.ours or not self.limit:
            return None
        limit = self.median("limit", "actions_per_s")
        return self.median("ours", "actions_per_s") / limit if limit else None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": self.spec.backend,
            "config": self.spec.config,
            "synchronous": self.spec.synchronous if self.spec.backend == "sqlite" else None,
            "workers": self.spec.workers,
            "sessions": "shared" if self.spec.shared else "per-worker",
            "status": self.problem or "ok",
        }
        if self.ratio is not None:
            for which in ("ours", "limit"):
                for attr in ("actions_per_s", "p50_ms", "p99_ms"):
                    out[f"{which}_{attr}"] = round(self.median(which, attr), 3)
            out["ratio"] = round(self.ratio, 4)
            out["repeats"] = {
                "ours_actions_per_s": [round(r.actions_per_s, 1) for r in self.ours],
                "limit_actions_per_s": [round(r.actions_per_s, 1) for r in self.limit],
            }
        return out


def _stats(results: Sequence[WorkerResult]) -> RunStats:
    errors = [r.error for r in results if r.error]
    if errors:
        raise BenchError(errors[0])
    latencies = sorted(x for r in results for x in r.latencies)
    wall = max(r.ended for r in results) - min(r.started for r in results)
    if not latencies or wall <= 0:
        raise BenchError("no action completed")

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return RunStats(len(latencies) / wall, pct(0.5), pct(0.99))


@dataclass(slots=True)
class Target:
    """One database the rows of a backend configuration run on, with our tables and the limit's tables."""

    backend: Backend
    url: str
    synchronous: SqliteSync
    ours: ControlPlaneFacade
    limit: ControlPlaneFacade
    plan: ReplayPlan

    @classmethod
    def open(cls, backend: Backend, url: str, synchronous: SqliteSync) -> Target:
        planes = []
        for prefix in (OURS_PREFIX, LIMIT_PREFIX):
            cp = ControlPlaneFacade.from_database_url(
                url, policy=POLICY, table_prefix=prefix, sqlite_synchronous=synchronous
            )
            cp.setup()
            planes.append(cp)
        limit = planes[1]
        capture = capture_action(limit, limit.open_session("bench capture", max_cost=10**8))
        return cls(backend, url, synchronous, planes[0], limit, build_plan(capture))

    def sessions(self, kind: Literal["ours", "limit"], spec: RowSpec) -> list[str]:
        cp = self.ours if kind == "ours" else self.limit
        if spec.shared:
            return [cp.open_session("bench shared", max_cost=10**8)] * spec.workers
        return [cp.open_session(f"bench worker {i}", max_cost=10**8) for i in range(spec.workers)]

    def jobs(self, kind: Literal["ours", "limit"], spec: RowSpec, seconds: float) -> list[Job]:
        prefix = OURS_PREFIX if kind == "ours" else LIMIT_PREFIX
        plan = self.plan if kind == "limit" else None
        return [
            Job(kind, self.backend, self.url, prefix, sid, self.synchronous, seconds, i, plan)
            for i, sid in enumerate(self.sessions(kind, spec))
        ]

    def close(self) -> None:
        self.ours.close()
        self.limit.close()


@contextmanager
def _postgres_database(server_url: str) -> Iterator[str]:
    """A database of the bench's own on the server, dropped afterwards."""
    import psycopg

    name = f"acp_bench_{uuid.uuid4().hex[:12]}"
    admin = _psycopg_dsn(server_url)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            make_url(server_url)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_rows(
    specs: Sequence[RowSpec], *, seconds: float, repeats: int, postgres_url: str, console: Console
) -> list[RowResult]:
    """Measure every row, interleaving ours and the limit within each repeat so drift hits both alike."""
    results = [RowResult(spec) for spec in specs]
    pool = WorkerPool(max(spec.workers for spec in specs))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with ExitStack() as stack, Progress(*columns, console=console, transient=True) as progress:
        stack.callback(pool.close)
        task = progress.add_task("starting workers", total=len(specs) * repeats * 2)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="acp-bench-")))
        targets: dict[tuple[Backend, SqliteSync], Target | str] = {}
        for result in results:
            spec = result.spec
            key = (spec.backend, spec.synchronous)
            if key not in targets:
                targets[key] = _open_target(stack, spec, tmp, postgres_url)
            target = targets[key]
            if isinstance(target, str):
                result.problem = target
                progress.advance(task, repeats * 2)
                continue
            layout = "shared session" if spec.shared else "own sessions"
            for repeat in range(repeats):
                for kind in ("ours", "limit"):
                    progress.update(
                        task,
                        description=f"{spec.config}, {spec.workers} workers, {layout}: {kind} #{repeat + 1}",
                    )
                    if result.problem is None:
                        try:
                            stats = _stats(pool.run(target.jobs(kind, spec, seconds), timeout=120))
                            (result.ours if kind == "ours" else result.limit).append(stats)
                        except Exception as exc:
                            result.problem = f"error: {exc}"
                    progress.advance(task)
    return results


def _open_target(stack: ExitStack, spec: RowSpec, tmp: Path, postgres_url: str) -> Target | str:
    if spec.backend == "sqlite":
        url = f"sqlite:///{tmp / f'bench-{spec.synchronous.lower()}.db'}"
    else:
        try:
            url = stack.enter_context(_postgres_database(postgres_url))
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return f"unavailable: {reason}"
    target = Target.open(spec.backend, url, spec.synchronous)
    stack.callback(target.close)
    return target


# output -----------------------------------------------------------------------------------------------------
def _table(results: Sequence[RowResult], seconds: float, repeats: int) -> Table:
    table = Table(
        title="Governed actions per second (propose + settle)",
        caption=(
            f"median of {repeats} repeat{'s' if repeats != 1 else ''} of {seconds:g} s each; limit = the "
            "same SQL statements replayed with the raw driver (sqlite3 / psycopg), same transactions, "
            "processes and sessions"
        ),
    )
    for name, justify in (
        ("backend / config", "left"),
        ("workers", "right"),
        ("sessions", "left"),
        ("ours actions/s", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("limit actions/s", "right"),
        ("ours/limit", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in results:
        head = [r.spec.config, str(r.spec.workers), "shared" if r.spec.shared else "per-worker"]
        if r.ratio is None:
            table.add_row(*head, f"[yellow]{r.problem or 'no result'}[/]", "", "", "", "")
            continue
        style = "green" if r.ratio >= 0.6 else "red"
        table.add_row(
            *head,
            f"{r.median('ours', 'actions_per_s'):,.0f}",
            f"{r.median('ours', 'p50_ms'):.2f}",
            f"{r.median('ours', 'p99_ms'):.2f}",
            f"{r.median('limit', 'actions_per_s'):,.0f}",
            f"[{style}]{r.ratio:.2f}[/]",
        )
    return table


def _minimum(results: Sequence[RowResult]) -> RowResult | None:
    measured = [r for r in results if r.ratio is not None]
    return min(measured, key=lambda r: r.ratio or 0.0) if measured else None


def _summary(results: Sequence[RowResult]) -> str:
    worst = _minimum(results)
    if worst is None or worst.ratio is None:
        return "no row was measured"
    layout = "shared session" if worst.spec.shared else "per-worker sessions"
    verdict = "meets" if worst.ratio >= 0.6 else "misses"
    return (
        f"minimum ours/limit ratio {worst.ratio:.2f} ({worst.spec.config}, {worst.spec.workers} workers, "
        f"{layout}); {verdict} the target of 0.6 on every row"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table (or JSON); 1 if a row failed, 0 otherwise."""
    parser = argparse.ArgumentParser(
        prog="acp bench",
        description=(
            "Measure governed actions per second (propose + settle through ControlPlaneFacade) on SQLite and "
            "PostgreSQL, against the limit: the same SQL statements replayed with the raw driver."
        ),
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each run (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row; the table shows the median (3)")
    parser.add_argument("--quick", action="store_true", help="very short runs and 1 repeat, for tests and CI")
    parser.add_argument("--only", choices=("sqlite", "postgres"), help="run only this backend's rows")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("ACP_TEST_POSTGRES_URL", DEFAULT_POSTGRES),
        help="PostgreSQL server URL; the bench creates and drops its own database there "
        "(default: $ACP_TEST_POSTGRES_URL or %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of the table")
    args = parser.parse_args(argv)
    seconds, repeats = (0.3, 1) if args.quick else (args.seconds, args.repeats)
    if seconds <= 0 or repeats < 1:
        parser.error("--seconds must be positive and --repeats at least 1")
    specs = [s for s in ROWS if args.only is None or s.backend == args.only]
    console = Console()
    if not console.is_terminal:
        console.width = 140
    results = run_rows(
        specs, seconds=seconds, repeats=repeats, postgres_url=args.postgres_url, console=Console(stderr=True)
    )
    worst = _minimum(results)
    if args.json:
        document = {
            "action": "propose + settle",
            "seconds": seconds,
            "repeats": repeats,
            "statistic": "median",
            "rows": [r.as_json() for r in results],
            "min_ratio": None if worst is None or worst.ratio is None else round(worst.ratio, 4),
        }
        print(json.dumps(document, indent=2))
    else:
        console.print(_table(results, seconds, repeats))
        console.print(_summary(results))
    failed = any(r.problem is not None and not r.problem.startswith("unavailable") for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
