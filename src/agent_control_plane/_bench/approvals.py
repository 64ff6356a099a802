"""Approval round trip: a ticket is created, approved in another process, and the waiting agent wakes.

Two spawned processes share one database, each with its own `ControlPlaneFacade`. Every round the waiter proposes
an `always_approve` action (a ticket), hands the ticket id to the approver over a pipe and calls
`wait_for_decision`; the approver calls `approve` the moment the id arrives. Two latencies per round:

- wake-up: from `approve()` returning in the approver (its transaction committed) to `wait_for_decision`
  returning allowed in the waiter: how long a decided ticket takes to reach the agent;
- round trip: from `propose` returning the ticket to `wait_for_decision` returning allowed.

Only the public facade API is used, so the numbers follow whatever `wait_for_decision` does to block (polling, or
a notification). Each allowed proposal is settled, outside the timed span, so the session's budget stays clean.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from rich.table import Table

from agent_control_plane._bench.action import COST, Backend, BenchError
from agent_control_plane.facade import ControlPlaneFacade

ROUNDS = 200
QUICK_ROUNDS = 20
WARM_UP_ROUNDS = 5
TARGET_WAKE_P50_MS = 5.0
"""The PostgreSQL target for the wake-up latency's p50."""
WAIT_TIMEOUT_S = 10.0
ACTION = "bench_approval"
POLICY: dict[str, Any] = {"default_tier": "always_approve"}
PREFIX = "bench_approvals_"
AGENT, APPROVER = "bench-agent", "bench-approver"

Sample = tuple[int, int, int]
"""(ticket created, approve() returned, waiter woke), `time.monotonic_ns()` in the process that saw each."""


# the two processes ------------------------------------------------------------------------------------------
def _now_ns() -> int:
    # CLOCK_MONOTONIC is one system-wide clock on Linux (and the monotonic clocks of macOS and Windows are
    # system-wide too), so readings taken in the waiter and in the approver can be subtracted. Not
    # perf_counter_ns: Python promises nothing about it across processes.
    return time.monotonic_ns()


def _approver_main(url: str, prefix: str, tickets: Connection) -> None:
    """Approve each ticket id as it arrives; answer with the time `approve()` returned, or an error text."""
    try:
        with ControlPlaneFacade.from_database_url(url, policy=POLICY, table_prefix=prefix) as cp:
            while (ticket_id := tickets.recv()) is not None:
                cp.approve(ticket_id, approver=APPROVER)
                tickets.send(_now_ns())
    except EOFError:
        return
    except Exception as exc:
        with suppress(OSError):  # the waiter may be gone already
            tickets.send(f"the approver failed: {type(exc).__name__}: {exc}".splitlines()[0])


def _waiter_main(
    url: str, prefix: str, session_id: str, rounds: int, approver: Connection, results: Queue[Any]
) -> None:
    """Run the warm-up and the timed rounds; put ("ok", samples, wall ns) or ("error", text) on `results`."""
    try:
        with ControlPlaneFacade.from_database_url(url, policy=POLICY, table_prefix=prefix) as cp:
            for n in range(WARM_UP_ROUNDS):
                _round(cp, session_id, approver, -1 - n)
            started = _now_ns()
            samples = [_round(cp, session_id, approver, n) for n in range(rounds)]
            wall = _now_ns() - started
        results.put(("ok", samples, wall))
    except Exception as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}".splitlines()[0]))
    finally:
        with suppress(OSError):  # the approver may be gone already
            approver.send(None)


def _round(cp: ControlPlaneFacade, session_id: str, approver: Connection, n: int) -> Sample:
    # Distinct args each round: the exact same call would wait on the same ticket.
    asked = cp.propose(session_id, ACTION, args={"round": n}, cost=COST)
    if asked.ticket_id is None:
        raise BenchError(f"round {n}: expected a ticket, got {asked.code.value}: {asked.reason}")
    created = _now_ns()
    approver.send(asked.ticket_id)
    decided = cp.wait_for_decision(asked.ticket_id, timeout=WAIT_TIMEOUT_S)
    woken = _now_ns()
    approved = approver.recv() if approver.poll(WAIT_TIMEOUT_S) else None
    if isinstance(approved, str):
        raise BenchError(approved)
    if not decided.allowed:
        raise BenchError(f"round {n} ended {decided.code.value}, not allowed: {decided.reason}")
    if approved is None:
        raise BenchError(f"round {n}: the approver did not answer within {WAIT_TIMEOUT_S:g} s")
    cp.settle(decided.proposal_id, actual_cost=COST)
    return created, approved, woken


# one row ------------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class ApprovalRow:
    """One line of the approval table: the round trip on one backend."""

    backend: Backend
    rounds: int = 0
    wake_p50_ms: float = 0.0
    wake_p99_ms: float = 0.0
    round_trip_p50_ms: float = 0.0
    round_trip_p99_ms: float = 0.0
    rounds_per_s: float = 0.0
    problem: str | None = None

    @property
    def config(self) -> str:
        return "SQLite WAL sync=FULL" if self.backend == "sqlite" else "PostgreSQL"

    @property
    def target(self) -> str:
        return f"p50 ≤ {TARGET_WAKE_P50_MS:g} ms" if self.backend == "postgres" else ""

    @property
    def target_met(self) -> bool | None:
        if not self.target or self.problem is not None:
            return None
        return self.wake_p50_ms <= TARGET_WAKE_P50_MS

    def record(self, samples: Sequence[Sample], wall_ns: int) -> None:
        """Percentiles of the wake-up and round-trip latencies of `samples`, every one of which ended allowed."""

        def pct(values: list[float], q: float) -> float:
            return values[min(len(values) - 1, int(q * len(values)))]

        # A wake-up sample may come out a little negative in principle: the waiter can see the approval committed
        # before `approve()` has returned in the approver.
        wake = sorted((woken - approved) / 1e6 for _, approved, woken in samples)
        trip = sorted((woken - created) / 1e6 for created, _, woken in samples)
        self.rounds = len(samples)
        self.wake_p50_ms, self.wake_p99_ms = statistics.median(wake), pct(wake, 0.99)
        self.round_trip_p50_ms, self.round_trip_p99_ms = statistics.median(trip), pct(trip, 0.99)
        self.rounds_per_s = len(samples) / (wall_ns / 1e9) if wall_ns > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": self.backend, "config": self.config, "status": self.problem or "ok"}
        if self.problem is None:
            out |= {
                "rounds": self.rounds,
                "allowed_rounds": self.rounds,
                "wake_p50_ms": round(self.wake_p50_ms, 3),
                "wake_p99_ms": round(self.wake_p99_ms, 3),
                "round_trip_p50_ms": round(self.round_trip_p50_ms, 3),
                "round_trip_p99_ms": round(self.round_trip_p99_ms, 3),
                "rounds_per_s": round(self.rounds_per_s, 1),
            }
        return out | {"target": self.target or None, "target_met": self.target_met}


def measure_round_trips(url: str, rounds: int, *, prefix: str = PREFIX) -> tuple[list[Sample], int]:
    """Run `rounds` timed approval round trips on the database at `url`; the samples and the wall time in ns.

    Every round ended allowed and was settled (a round that did not raises `BenchError`), after `WARM_UP_ROUNDS`
    untimed ones, all in one new session of the tables named by `prefix`.
    """
    with ControlPlaneFacade.from_database_url(url, policy=POLICY, table_prefix=prefix) as cp:
        cp.setup()
        session_id = cp.open_session("bench approvals", agent_id=AGENT, max_cost=10**8)
    ctx = mp.get_context("spawn")
    results: Queue[Any] = ctx.Queue()
    waiter_end, approver_end = ctx.Pipe()
    waiter = ctx.Process(target=_waiter_main, args=(url, prefix, session_id, rounds, waiter_end, results), daemon=True)
    processes = [ctx.Process(target=_approver_main, args=(url, prefix, approver_end), daemon=True), waiter]
    for process in processes:
        process.start()
    # Only the children hold the pipe's ends now, so either one sees EOF if the other dies.
    waiter_end.close()
    approver_end.close()
    try:
        outcome = _outcome(waiter, results, timeout=60 + (rounds + WARM_UP_ROUNDS) * (WAIT_TIMEOUT_S + 1))
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
    if outcome[0] != "ok":
        raise BenchError(outcome[1])
    return outcome[1], outcome[2]


def _outcome(waiter: BaseProcess, results: Queue[Any], *, timeout: float) -> Any:
    """What the waiter reported; a waiter that died without a word is an error at once, not after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return results.get(timeout=1.0)
        except queue.Empty:
            if not waiter.is_alive():
                with suppress(queue.Empty):
                    return results.get(timeout=1.0)  # it may have reported just before it exited
                raise BenchError(f"the waiter process exited with code {waiter.exitcode} without a result") from None
            if time.monotonic() > deadline:
                raise BenchError(f"the waiter process sent nothing for {timeout:.0f} s") from None


@contextmanager
def _sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="acp-bench-approvals-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'approvals.db'}"


def run_approvals(
    backends: Sequence[Backend], *, rounds: int, postgres_database: Callable[[], AbstractContextManager[str]]
) -> list[ApprovalRow]:
    """One row per backend; `postgres_database` gives a fresh PostgreSQL database URL and drops it afterwards."""
    rows = []
    for backend in backends:
        row = ApprovalRow(backend)
        rows.append(row)
        with ExitStack() as stack:
            try:
                url = stack.enter_context(_sqlite_database() if backend == "sqlite" else postgres_database())
            except Exception as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                row.problem = f"unavailable: {reason}"
                continue
            try:
                row.record(*measure_round_trips(url, rounds))
            except Exception as exc:
                row.problem = f"error: {exc}"
    return rows


# output -----------------------------------------------------------------------------------------------------
def approval_table(rows: Sequence[ApprovalRow]) -> Table:
    """The approval table, with the PostgreSQL target next to its measurement."""
    rounds = max((row.rounds for row in rows), default=0)
    table = Table(
        title="Approval round trip (propose → approve in another process → wait_for_decision wakes)",
        caption=(
            f"{rounds:,} timed rounds per row after {WARM_UP_ROUNDS} warm-up rounds, each a new always_approve "
            "ticket; a waiter and an approver process, each with its own ControlPlaneFacade on the same database. "
            "wake-up = approve() returned in the approver → wait_for_decision returned allowed in the waiter; "
            "round trip = propose returned the ticket → wait_for_decision returned allowed (time.monotonic_ns, "
            "one system-wide clock); rounds/s includes propose and settle."
        ),
    )
    for name, justify in (
        ("backend / config", "left"),
        ("rounds", "right"),
        ("wake-up p50 ms", "right"),
        ("wake-up p99 ms", "right"),
        ("round trip p50 ms", "right"),
        ("round trip p99 ms", "right"),
        ("rounds/s", "right"),
        ("target", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        if row.problem is not None:
            table.add_row(row.config, "", f"[yellow]{row.problem}[/]", "", "", "", "", row.target)
            continue
        mark = "" if row.target_met is None else (" [green]met[/]" if row.target_met else " [red]missed[/]")
        table.add_row(
            row.config,
            f"{row.rounds:,}",
            f"{row.wake_p50_ms:.2f}",
            f"{row.wake_p99_ms:.2f}",
            f"{row.round_trip_p50_ms:.2f}",
            f"{row.round_trip_p99_ms:.2f}",
            f"{row.rounds_per_s:,.0f}",
            f"{row.target}{mark}" if row.target else "",
        )
    return table


def approval_summary(rows: Sequence[ApprovalRow]) -> str:
    """One line: the wake-up p50 of each measured row, and the target's verdict."""
    measured = [row for row in rows if row.problem is None]
    if not measured:
        return "approval round trip: nothing was measured"
    parts = []
    for row in measured:
        verdict = "" if row.target_met is None else f" (target {row.target}: {'met' if row.target_met else 'missed'})"
        parts.append(f"{row.config} wake-up p50 {row.wake_p50_ms:.2f} ms{verdict}")
    return "approval round trip: " + "; ".join(parts)
