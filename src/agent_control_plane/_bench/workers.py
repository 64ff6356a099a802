"""Worker processes: each runs governed actions (ours) or their replay (the limit) for a set time, together.

Workers are spawned once and reused for every run. A run starts when every worker has warmed up and says it is
ready, so all of them measure the same wall-clock window.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any, Literal

from agent_control_plane._bench.action import POLICY, Backend, BenchError, governed_action
from agent_control_plane._bench.replay import ReplayPlan, connect_raw, replay_action
from agent_control_plane.facade import ControlPlaneFacade
from agent_control_plane.store.dialect import SqliteSync

WARM_UP_ACTIONS = 20


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
            yield lambda: governed_action(cp, job.session_id)
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
        """Run `jobs` (one per worker) together; each worker's result, in the order of `jobs`."""
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
