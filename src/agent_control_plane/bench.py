"""The project benchmark: governed actions per second, as a ratio of what the raw database driver can do.

One governed action is `propose` (an allowed, unrestricted action with a cost) followed by `settle`,
through `ControlPlaneFacade`. The "limit" is the same SQL: the statements one propose+settle issues are
captured with the storage layer's statement trace and replayed with the bare driver (sqlite3 / psycopg), with the
same transaction boundaries, PRAGMAs, number of worker processes and session layout, into tables of their own.
So ours/limit is the share of the database's own speed the library keeps, and the replay follows the storage
layer whenever it changes.

A second table gives decision latency: microseconds per pure `PolicyEngine.decide` for generated 20- and 200-rule
policies, with the same 20 rules evaluated by Cedar (cedarpy) as the reference (see `_bench/decisions.py`).

A third table gives the approval round trip on each backend: a ticket created by a waiter process, approved in an
approver process, and the time until the waiter's `wait_for_decision` wakes (see `_bench/approvals.py`).

    python -m agent_control_plane.bench [--seconds 3] [--repeats 3] [--only sqlite|postgres|decisions|approvals]
                                        [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import make_url

from agent_control_plane._bench.action import POLICY, Backend, BenchError
from agent_control_plane._bench.approvals import (
    QUICK_ROUNDS,
    ROUNDS,
    TARGET_WAKE_P50_MS,
    ApprovalRow,
    approval_summary,
    approval_table,
    run_approvals,
)
from agent_control_plane._bench.capture import capture_action
from agent_control_plane._bench.decisions import (
    ITERATIONS,
    QUICK_ITERATIONS,
    TARGET_CEDAR_RATIO,
    TARGET_P50_US,
    DecisionRow,
    decision_summary,
    decision_table,
    run_decisions,
)
from agent_control_plane._bench.replay import ReplayPlan, build_plan, psycopg_dsn
from agent_control_plane._bench.workers import Job, WorkerPool, WorkerResult
from agent_control_plane.facade import ControlPlaneFacade
from agent_control_plane.store.dialect import SqliteSync

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
OURS_PREFIX = "bench_ours_"
LIMIT_PREFIX = "bench_limit_"


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
    admin = psycopg_dsn(server_url)
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
    verdict = "meets the target of 0.6 on every row" if worst.ratio >= 0.6 else "below the target of 0.6"
    return (
        f"minimum ours/limit ratio {worst.ratio:.2f} ({worst.spec.config}, {worst.spec.workers} workers, "
        f"{layout}); {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables (or JSON); 1 if a row failed, 0 otherwise."""
    parser = argparse.ArgumentParser(
        prog="acp bench",
        description=(
            "Measure governed actions per second (propose + settle through ControlPlaneFacade) on SQLite and "
            "PostgreSQL, against the limit: the same SQL statements replayed with the raw driver."
        ),
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each run (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row; the table shows the median (3)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"very short runs and 1 repeat, {QUICK_ITERATIONS:,} instead of {ITERATIONS:,} timed decisions "
        f"per decision-latency row, and {QUICK_ROUNDS} instead of {ROUNDS} approval round trips per backend; "
        "for tests and CI",
    )
    parser.add_argument(
        "--only",
        choices=("sqlite", "postgres", "decisions", "approvals"),
        help="sqlite / postgres: only that backend's throughput and approval round-trip rows, without the "
        "decision-latency table; decisions: only the decision-latency table; approvals: only the approval "
        "round-trip table, on both backends (default: everything)",
    )
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
    console, progress = Console(), Console(stderr=True)
    if not console.is_terminal:
        console.width = 140
    results = (
        run_rows(specs, seconds=seconds, repeats=repeats, postgres_url=args.postgres_url, console=progress)
        if specs
        else []
    )
    decisions: list[DecisionRow] = []
    if args.only in (None, "decisions"):
        with progress.status("measuring decision latency"):
            decisions = run_decisions(iterations=QUICK_ITERATIONS if args.quick else ITERATIONS)
    approvals: list[ApprovalRow] = []
    approval_backends: tuple[Backend, ...] = ("sqlite", "postgres")
    if args.only in ("sqlite", "postgres"):
        approval_backends = (args.only,)
    if args.only in (None, "sqlite", "postgres", "approvals"):
        with progress.status("measuring approval round trips"):
            approvals = run_approvals(
                approval_backends,
                rounds=QUICK_ROUNDS if args.quick else ROUNDS,
                postgres_database=lambda: _postgres_database(args.postgres_url),
            )
    if args.json:
        document: dict[str, Any] = {}
        if specs:
            worst = _minimum(results)
            document |= {
                "action": "propose + settle",
                "seconds": seconds,
                "repeats": repeats,
                "statistic": "median",
                "rows": [r.as_json() for r in results],
                "min_ratio": None if worst is None or worst.ratio is None else round(worst.ratio, 4),
            }
        if decisions:
            document["decisions"] = {
                "unit": "µs per decision",
                "targets": {f"p50_us_{rules}_rules": us for rules, us in TARGET_P50_US.items()}
                | {"ours_over_cedar": TARGET_CEDAR_RATIO},
                "rows": [row.as_json() for row in decisions],
            }
        if approvals:
            document["approvals"] = {
                "unit": "ms",
                "wake_up": "approve() returned in the approver → wait_for_decision returned allowed in the waiter",
                "round_trip": "propose returned the ticket → wait_for_decision returned allowed",
                "targets": {"postgres_wake_p50_ms": TARGET_WAKE_P50_MS},
                "rows": [row.as_json() for row in approvals],
            }
        print(json.dumps(document, indent=2))
    else:
        if specs:
            console.print(_table(results, seconds, repeats))
            console.print(_summary(results))
        if decisions:
            console.print(decision_table(decisions))
            console.print(decision_summary(decisions))
        if approvals:
            console.print(approval_table(approvals))
            console.print(approval_summary(approvals))
    problems = [r.problem for r in results] + [row.problem for row in decisions] + [row.problem for row in approvals]
    failed = any(problem is not None and not problem.startswith("unavailable") for problem in problems)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
