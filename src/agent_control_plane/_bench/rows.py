"""Throughput rows: an operation per second through the library (ours) next to the limit, measured alike.

A `Throughput` is one table (governed actions in `bench.py`, recorded token usage in `usage.py`); each of its
rows runs in one `WorkerPool` on a `Target`: a database with our tables and the limit's, which knows how to run
either side for a set time. Within each repeat ours and the limit run back to back, so drift hits both alike, and
the table shows the medians and ours/limit.
"""

from __future__ import annotations

import statistics
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import make_url

from agent_control_plane._bench.action import Backend, BenchError
from agent_control_plane._bench.replay import psycopg_dsn
from agent_control_plane._bench.workers import Kind, WorkerPool, WorkerResult
from agent_control_plane.store.dialect import SqliteSync

TARGET_RATIO = 0.6
"""ours/limit at or above this is shown green."""
RUN_TIMEOUT_S = 120


class Target(Protocol):
    """A database a table's rows run on: our tables, the limit's, and whatever the runs need set up."""

    def run(self, pool: WorkerPool, kind: Kind, spec: RowSpec, seconds: float) -> RunStats:
        """One timed run of `kind` with `spec`'s workers; raises `BenchError` when it cannot be measured."""
        ...

    def notes(self, spec: RowSpec) -> dict[str, Any]:
        """What the row reports beside its timings (JSON-ready), after all its runs."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Throughput:
    """One throughput table: what it counts, how its rows lay their workers out, and how its targets open."""

    name: str
    title: str
    unit: str
    """What one timed operation is, in the plural: 'actions', 'calls'."""
    layout: str
    """What the workers of a row share or each have: 'session', 'tenant'."""
    open_target: Callable[[Backend, str, SqliteSync], Target]


@dataclass(frozen=True, slots=True)
class RowSpec:
    throughput: Throughput
    backend: Backend
    synchronous: SqliteSync
    workers: int
    shared: bool

    @property
    def config(self) -> str:
        if self.backend == "sqlite":
            return f"SQLite WAL sync={self.synchronous}"
        return "PostgreSQL"

    @property
    def layout(self) -> str:
        """'shared' or 'per-worker', as the table and the JSON say it."""
        return "shared" if self.shared else "per-worker"

    def describe(self) -> str:
        noun = self.throughput.layout
        layout = f"shared {noun}" if self.shared else f"a {noun} per worker"
        return f"{self.config}, {self.workers} worker{'s' if self.workers != 1 else ''}, {layout}"


@dataclass(frozen=True, slots=True)
class RunStats:
    per_s: float
    p50_ms: float
    p99_ms: float


def run_stats(results: Sequence[WorkerResult]) -> RunStats:
    """Throughput over the common wall-clock window, and the latency percentiles of every timed operation."""
    errors = [r.error for r in results if r.error]
    if errors:
        raise BenchError(errors[0])
    latencies = sorted(x for r in results for x in r.latencies)
    wall = max(r.ended for r in results) - min(r.started for r in results)
    if not latencies or wall <= 0:
        raise BenchError("no operation completed")

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return RunStats(len(latencies) / wall, pct(0.5), pct(0.99))


@dataclass(slots=True)
class RowResult:
    spec: RowSpec
    ours: list[RunStats] = field(default_factory=list)
    limit: list[RunStats] = field(default_factory=list)
    problem: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    """The target's `notes` for this row, added to its JSON."""

    def median(self, which: Kind, attr: str) -> float:
        runs = self.ours if which == "ours" else self.limit
        return float(statistics.median(float(getattr(r, attr)) for r in runs))

    @property
    def ratio(self) -> float | None:
        if self.problem or not self.ours or not self.limit:
            return None
        limit = self.median("limit", "per_s")
        return self.median("ours", "per_s") / limit if limit else None

    def as_json(self) -> dict[str, Any]:
        spec = self.spec
        per_s = f"{spec.throughput.unit}_per_s"
        out: dict[str, Any] = {
            "backend": spec.backend,
            "config": spec.config,
            "synchronous": spec.synchronous if spec.backend == "sqlite" else None,
            "workers": spec.workers,
            f"{spec.throughput.layout}s": spec.layout,
            "status": self.problem or "ok",
        }
        if self.ratio is not None:
            for which in ("ours", "limit"):
                for attr, key in (("per_s", per_s), ("p50_ms", "p50_ms"), ("p99_ms", "p99_ms")):
                    out[f"{which}_{key}"] = round(self.median(which, attr), 3)
            out["ratio"] = round(self.ratio, 4)
            out["repeats"] = {
                f"ours_{per_s}": [round(r.per_s, 1) for r in self.ours],
                f"limit_{per_s}": [round(r.per_s, 1) for r in self.limit],
            }
        return out | self.notes


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
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


def measure_row(
    target: Target,
    result: RowResult,
    pool: WorkerPool,
    *,
    seconds: float,
    repeats: int,
    on_run: Callable[[str], None] = lambda _: None,
) -> None:
    """Run `result`'s row `repeats` times, ours then the limit each time; a failure ends the row as its problem.

    `on_run` hears about every run as it starts, and once more (with "") after each.
    """
    spec = result.spec
    for repeat in range(repeats):
        for kind in ("ours", "limit"):
            if result.problem is None:
                on_run(f"{spec.throughput.title}: {spec.describe()}: {kind} #{repeat + 1}")
                try:
                    (result.ours if kind == "ours" else result.limit).append(target.run(pool, kind, spec, seconds))
                except Exception as exc:
                    result.problem = f"error: {exc}"
            on_run("")
    if result.problem is None:
        result.notes = target.notes(spec)


def run_rows(
    specs: Sequence[RowSpec], *, seconds: float, repeats: int, postgres_url: str, console: Console
) -> list[RowResult]:
    """Measure every row, in one pool of workers; each throughput table opens one target per backend config."""
    results = [RowResult(spec) for spec in specs]
    pool = WorkerPool(max(spec.workers for spec in specs))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with ExitStack() as stack, Progress(*columns, console=console, transient=True) as progress:
        stack.callback(pool.close)
        task = progress.add_task("starting workers", total=len(specs) * repeats * 2)

        def on_run(description: str) -> None:
            if description:
                progress.update(task, description=description)
            else:
                progress.advance(task)

        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="acp-bench-")))
        targets: dict[tuple[str, Backend, SqliteSync], Target | str] = {}
        for result in results:
            spec = result.spec
            key = (spec.throughput.name, spec.backend, spec.synchronous)
            if key not in targets:
                targets[key] = _open_target(stack, spec, tmp, postgres_url)
            target = targets[key]
            if isinstance(target, str):
                result.problem = target
                progress.advance(task, repeats * 2)
                continue
            measure_row(target, result, pool, seconds=seconds, repeats=repeats, on_run=on_run)
    return results


def _open_target(stack: ExitStack, spec: RowSpec, tmp: Path, postgres_url: str) -> Target | str:
    if spec.backend == "sqlite":
        url = f"sqlite:///{tmp / f'bench-{spec.throughput.name}-{spec.synchronous.lower()}.db'}"
    else:
        try:
            url = stack.enter_context(postgres_database(postgres_url))
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return f"unavailable: {reason}"
    target = spec.throughput.open_target(spec.backend, url, spec.synchronous)
    stack.callback(target.close)
    return target


# output -----------------------------------------------------------------------------------------------------
def throughput_table(results: Sequence[RowResult], *, title: str, caption: str) -> Table:
    """The rows of one throughput table: ours, its latency, the limit and ours/limit."""
    unit = results[0].spec.throughput.unit if results else "operations"
    layout = f"{results[0].spec.throughput.layout}s" if results else "layout"
    table = Table(title=title, caption=caption)
    for name, justify in (
        ("backend / config", "left"),
        ("workers", "right"),
        (layout, "left"),
        (f"ours {unit}/s", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        (f"limit {unit}/s", "right"),
        ("limit p50 ms", "right"),
        ("ours/limit", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in results:
        head = [r.spec.config, str(r.spec.workers), r.spec.layout]
        if r.ratio is None:
            table.add_row(*head, f"[yellow]{r.problem or 'no result'}[/]", "", "", "", "", "")
            continue
        style = "green" if r.ratio >= TARGET_RATIO else "red"
        table.add_row(
            *head,
            f"{r.median('ours', 'per_s'):,.0f}",
            f"{r.median('ours', 'p50_ms'):.2f}",
            f"{r.median('ours', 'p99_ms'):.2f}",
            f"{r.median('limit', 'per_s'):,.0f}",
            f"{r.median('limit', 'p50_ms'):.2f}",
            f"[{style}]{r.ratio:.2f}[/]",
        )
    return table


def repeats_caption(seconds: float, repeats: int) -> str:
    return f"median of {repeats} repeat{'s' if repeats != 1 else ''} of {seconds:g} s each"


def minimum(results: Sequence[RowResult]) -> RowResult | None:
    """The measured row with the lowest ours/limit, if any row was measured."""
    measured = [r for r in results if r.ratio is not None]
    return min(measured, key=lambda r: r.ratio or 0.0) if measured else None


def min_ratio(results: Sequence[RowResult]) -> float | None:
    worst = minimum(results)
    return None if worst is None or worst.ratio is None else round(worst.ratio, 4)


def summary(results: Sequence[RowResult], *, target: float | None = TARGET_RATIO) -> str:
    """One line: the row with the lowest ours/limit, and (with a `target`) whether every row meets it."""
    worst = minimum(results)
    if worst is None or worst.ratio is None:
        return "no row was measured"
    line = f"minimum ours/limit ratio {worst.ratio:.2f} ({worst.spec.describe()})"
    if target is None:
        return line
    verdict = (
        f"meets the target of {target:g} on every row" if worst.ratio >= target else f"below the target of {target:g}"
    )
    return f"{line}; {verdict}"
