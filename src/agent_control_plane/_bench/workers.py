"""Worker processes: each runs one operation (ours, or its replay on the bare driver: the limit) for a set time.

Workers are spawned once and reused for every run. A run starts when every worker has warmed up and says it is
ready, so all of them measure the same wall-clock window. What a worker runs is a `WorkerJob`: the governed
action's `Job` here, the token-usage record's in `usage.py`.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any, Literal, Protocol

from agent_control_plane._bench.action import POLICY, Backend, BenchError, governed_action
from agent_control_plane._bench.replay import ReplayPlan, ReplayStep, connect_raw, replay_action
from agent_control_plane.facade import ControlPlaneFacade
from agent_control_plane.store.dialect import SqliteSync

WARM_UP_ACTIONS = 20
"""Untimed runs of the operation in each worker before the timed window (every run counts in the database)."""
Kind = Literal["ours", "limit"]


class WorkerJob(Protocol):
    """What one worker process runs in one timed window (sent to the worker, so it must pickle)."""

    @property
    def seconds(self) -> float: ...

    def prepared(self) -> AbstractContextManager[Callable[[], object]]:
        """Set up the connection(s) and return the operation, run once per call; torn down on exit."""
        ...


@dataclass(frozen=True, slots=True)
class Job:
    """A governed action: our facade, or the captured statements on the raw driver."""

    kind: Kind
    backend: Backend
    url: str
    prefix: str
    session_id: str
    synchronous: SqliteSync
    seconds: float
    plan: ReplayPlan | None = None

    def prepared(self) -> AbstractContextManager[Callable[[], object]]:
        return _prepared(self)


@dataclass(frozen=True, slots=True)
class WorkerResult:
    latencies: list[float]
    started: float
    ended: float
    error: str | None = None


def _worker_main(tasks: Queue[tuple[int, WorkerJob] | None], results: Queue[tuple[str, int, Any]], go: Event) -> None:
    while (task := tasks.get()) is not None:
        worker, job = task
        ready = False
        try:
            with job.prepared() as action:
                for _ in range(WARM_UP_ACTIONS):
                    action()
                results.put(("ready", worker, None))
                ready = True
                go.wait()
                outcome = _timed(action, job.seconds)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            if not ready:  # the others wait for everyone's ready before they start
                results.put(("ready", worker, error))
                go.wait()
            outcome = WorkerResult([], 0.0, 0.0, error)
        results.put(("done", worker, outcome))


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
            yield lambda: governed_action(cp, job.session_id)
        finally:
            cp.close()
        return
    assert job.plan is not None
    with replayed(job.backend, job.url, job.synchronous, job.plan.for_session(job.session_id)) as action:
        yield action


@contextmanager
def replayed(
    backend: Backend, url: str, synchronous: SqliteSync, steps: Sequence[ReplayStep]
) -> Iterator[Callable[[], object]]:
    """The limit's operation: `steps` on a bare driver connection, with a fresh id each run (see `replay_action`)."""
    counter = iter(range(1 << 62))
    stem = f"{uuid.uuid4().hex[:8]}-"
    connection = connect_raw(backend, url, synchronous)
    cursor = connection.cursor()
    try:
        # A fresh 36-character id per run, like a UUID, without the cost of making one.
        yield lambda: replay_action(cursor, connection.commit, steps, f"{stem}{next(counter):027d}")
    finally:
        # Finish the statement and the transaction explicitly: a sqlite3 connection closed with a live
        # statement lingers, holding the write lock, until the garbage collector finds the cursor.
        cursor.close()
        connection.rollback()
        connection.close()


class WorkerPool:
    """Spawned worker processes, reused for every run, that start each run together on one event."""

    def __init__(self, size: int) -> None:
        ctx = mp.get_context("spawn")
        self._results: Queue[tuple[str, int, Any]] = ctx.Queue()
        self._go: Event = ctx.Event()
        self._tasks: list[Queue[tuple[int, WorkerJob] | None]] = [ctx.Queue() for _ in range(size)]
        self._processes: list[SpawnProcess] = [
            ctx.Process(target=_worker_main, args=(q, self._results, self._go), daemon=True) for q in self._tasks
        ]
        for process in self._processes:
            process.start()

    def run(self, jobs: Sequence[WorkerJob], timeout: float) -> list[WorkerResult]:
        """Run `jobs` (one per worker) together; each worker's result, in the order of `jobs`."""
        if len(jobs) > len(self._tasks):
            raise BenchError(f"{len(jobs)} workers asked for, the pool has {len(self._tasks)}")
        for index, job in enumerate(jobs):
            self._tasks[index].put((index, job))
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
