"""Token-usage recording throughput: `record_usage` calls per second through the sync tracker, against the limit.

One call is what a host runs after each model call:

    with cp.token_budget_tracker() as tracker:
        tracker.record_usage(None, identity, usage)

for an org-level identity covered by one daily budget, with caps far above anything a run reaches (nothing is ever
exhausted). Its statements are captured from a traced call, as for the governed action: on SQLite the
`BEGIN IMMEDIATE`, then the covering-budget SELECT, the window upsert `RETURNING` its totals and the ledger INSERT,
then the commit. The limit replays them on the bare driver, in one transaction per call with a fresh ledger row
id, in tables of its own.

The capture also watches the driver itself (sqlite3's trace callback; a recording psycopg cursor) and reports each
statement the driver ran that the storage trace did not see: those are not in the limit. On PostgreSQL that is the
pool's pre-ping at checkout.

Rows: 1 and 8 worker processes on one tenant (every call adds to the same window row: the contended case), and 8
workers with a tenant each. Every run records under tenants of its own; afterwards their ledger rows must number
the calls made (warm-up included) and their windows must hold the ledger's sums.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field
from decimal import Decimal
from typing import Any, Self

from rich.table import Table
from sqlalchemy import event, func, select

from agent_control_plane._bench.action import POLICY, Backend, BenchError
from agent_control_plane._bench.capture import CapturedStatement, captured_statements, traced_transactions
from agent_control_plane._bench.replay import ReplayStep, id_steps, swapped
from agent_control_plane._bench.rows import (
    RUN_TIMEOUT_S,
    RowResult,
    RowSpec,
    RunStats,
    Throughput,
    min_ratio,
    repeats_caption,
    run_stats,
    throughput_table,
)
from agent_control_plane._bench.workers import WARM_UP_ACTIONS, Kind, WorkerPool, replayed
from agent_control_plane.facade import ControlPlaneFacade
from agent_control_plane.store.dialect import SqliteSync
from agent_control_plane.types.identity import IdentityContext, ModelId, OrgId
from agent_control_plane.types.tokens import TokenBudgetConfig, TokenUsage, UsageRecord

PREFIX = "bench_usage_"
TEMPLATE_ORG = "bench-usage-capture"
"""The tenant of the captured call; the limit's plan names each run's own tenant in its place."""
USAGE = TokenUsage(ModelId("bench-model"), input_tokens=900, output_tokens=100, estimated_cost_usd=Decimal("0.0042"))
OPERATION = "with cp.token_budget_tracker() as t: t.record_usage(None, identity, usage)"
BUDGET = "one org-level daily budget covering the identity (caps never reached)"
UNTRACED = "statements the driver ran during a call that the storage trace did not see; the limit does not run them"
PING_STATEMENTS = frozenset({";", "SELECT 1"})
"""What the connection pool's pre-ping sends at checkout (SQLAlchemy's psycopg dialect: ';'), outside the trace."""


def budget_for(org_id: str) -> TokenBudgetConfig:
    return TokenBudgetConfig(IdentityContext(org_id=OrgId(org_id)), max_tokens=10**15, max_cost_usd=10**6)


def record(cp: ControlPlaneFacade, identity: IdentityContext) -> UsageRecord:
    """The measured call: one recorded usage, on a tracker transaction of its own."""
    with cp.token_budget_tracker() as tracker:
        return tracker.record_usage(None, identity, USAGE)


@dataclass(frozen=True, slots=True)
class UsageJob:
    """One worker's calls: through our tracker, or (with `steps`) the captured statements on the raw driver."""

    backend: Backend
    url: str
    prefix: str
    org_id: str
    synchronous: SqliteSync
    seconds: float
    steps: tuple[ReplayStep, ...] | None = None

    @contextmanager
    def prepared(self) -> Iterator[Callable[[], object]]:
        if self.steps is not None:
            with replayed(self.backend, self.url, self.synchronous, self.steps) as replay:
                yield replay
            return
        identity = IdentityContext(org_id=OrgId(self.org_id))
        with ControlPlaneFacade.from_database_url(
            self.url, policy=POLICY, table_prefix=self.prefix, sqlite_synchronous=self.synchronous
        ) as cp:
            yield lambda: record(cp, identity)


# the capture ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class UsageCapture:
    """The statements of one recorded usage, the ids in them, and what the driver ran beyond them."""

    statements: tuple[CapturedStatement, ...]
    usage_id: str
    budget_id: str
    untraced: tuple[str, ...]
    """Statements the driver ran during the call that the storage trace did not see (so the limit lacks them)."""

    def steps_for(self, org_id: str) -> tuple[ReplayStep, ...]:
        """The limit's statements for a call of `org_id`, covered by its own budget."""
        swaps = {TEMPLATE_ORG: org_id, self.budget_id: budget_for(org_id).budget_id}
        return swapped(id_steps(self.statements, self.usage_id), swaps)


@dataclass(slots=True)
class _DriverLog:
    """Every statement the drivers of an engine run while `on`, as the driver got it."""

    on: bool = False
    statements: list[str] = field(default_factory=list)

    def add(self, sql: str) -> None:
        if self.on:
            self.statements.append(sql)

    def attach(self, dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.set_trace_callback(self.add)
        else:
            dbapi_connection.cursor_factory = _watching_cursor(self)


def _watching_cursor(log: _DriverLog) -> type[Any]:
    import psycopg

    class WatchingCursor(psycopg.Cursor[Any]):
        def execute(self, query: Any, params: Any = None, **options: Any) -> Self:
            log.add(query if isinstance(query, str) else repr(query))
            return super().execute(query, params, **options)

        def executemany(self, query: Any, params_seq: Any, **options: Any) -> None:
            log.add(query if isinstance(query, str) else repr(query))
            super().executemany(query, params_seq, **options)

    return WatchingCursor


def capture_usage(backend: Backend, url: str, prefix: str, synchronous: SqliteSync) -> UsageCapture:
    """Record one usage of `TEMPLATE_ORG` in the tables of `prefix`, with its statements traced and watched.

    The facade is the capture's own, watched from its first connection on, and closed afterwards: nothing of the
    capture stays on any engine a run uses.
    """
    log = _DriverLog()
    identity = IdentityContext(org_id=OrgId(TEMPLATE_ORG))
    with ControlPlaneFacade.from_database_url(
        url, policy=POLICY, table_prefix=prefix, sqlite_synchronous=synchronous
    ) as cp:
        event.listen(cp.engine, "connect", log.attach)
        cp.engine.dispose()  # any connection made before the listener is gone
        cp.set_token_budget(budget_for(TEMPLATE_ORG))
        record(cp, identity)  # warm: statements compiled, the window row exists
        log.on = True
        with traced_transactions(cp.engine) as transactions:
            recorded = record(cp, identity)
        log.on = False
    if len(transactions) != 1:
        raise BenchError(f"record_usage ran in {len(transactions)} transactions; the replay expects one")
    statements = captured_statements(transactions)
    untraced = _untraced(log.statements, statements)
    return UsageCapture(statements, recorded.usage_id, budget_for(TEMPLATE_ORG).budget_id, untraced)


def _untraced(seen: Sequence[str], statements: Sequence[CapturedStatement]) -> tuple[str, ...]:
    """The statements in `seen` (the driver's, in order) that are not the traced `statements`, in order.

    sqlite3 reports statements with their parameters filled in, so a traced `?` matches any value. A COMMIT the
    driver ran is the commit that ends the traced transaction.
    """
    traced = [st.sql for st in statements if not st.commit]
    left: list[str] = []
    at = 0
    for sql in seen:
        if at < len(traced) and re.fullmatch(re.escape(traced[at]).replace(r"\?", ".*?"), sql, re.DOTALL):
            at += 1
        elif sql.strip().upper() != "COMMIT":
            left.append(sql)
    if at < len(traced):
        raise BenchError(f"the trace holds {traced[at]!r}, which the driver did not run in that order")
    return tuple(left)


# the ledger check -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LedgerTally:
    """The calls a side made, and what its ledger and budget windows hold for the tenants of those calls."""

    calls: int = 0
    ledger_rows: int = 0
    ledger_tokens: int = 0
    window_tokens: int = 0
    ledger_cost: Decimal = Decimal(0)
    window_cost: Decimal = Decimal(0)

    def __add__(self, other: LedgerTally) -> LedgerTally:
        return LedgerTally(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    @property
    def problem(self) -> str | None:
        if self.ledger_rows != self.calls or self.ledger_tokens != self.calls * USAGE.tokens:
            return f"the ledger holds {self.ledger_rows} rows and {self.ledger_tokens} tokens for {self.calls} calls"
        if (self.window_tokens, self.window_cost) != (self.ledger_tokens, self.ledger_cost):
            return (
                f"the budget windows hold {self.window_tokens} tokens and ${self.window_cost}, the ledger "
                f"{self.ledger_tokens} tokens and ${self.ledger_cost}"
            )
        return None

    def as_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "ledger_rows": self.ledger_rows,
            "ledger_tokens": self.ledger_tokens,
            "window_tokens": self.window_tokens,
            "ledger_cost_usd": str(self.ledger_cost),
            "window_cost_usd": str(self.window_cost),
        }


def tally(cp: ControlPlaneFacade, org_ids: Sequence[str], calls: int) -> LedgerTally:
    """What `cp`'s ledger and windows hold for `org_ids` (every window of their budgets, should a day roll over)."""
    usage, windows = cp.registry.token_usage, cp.registry.token_windows
    budget_ids = [budget_for(org).budget_id for org in org_ids]
    with cp.engine.connect() as conn:
        rows, tokens, cost = conn.execute(
            select(func.count(), func.coalesce(func.sum(usage.c.total_tokens), 0), func.sum(usage.c.cost)).where(
                usage.c.org_id.in_(org_ids)
            )
        ).one()
        window_tokens, window_cost = conn.execute(
            select(func.coalesce(func.sum(windows.c.tokens_used), 0), func.sum(windows.c.cost_used)).where(
                windows.c.budget_id.in_(budget_ids)
            )
        ).one()
    zero = Decimal(0)
    return LedgerTally(calls, int(rows), int(tokens), int(window_tokens), cost or zero, window_cost or zero)


# the target -------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class UsageTarget:
    """One database: our tracker's tables and the limit's, and the captured call the limit replays."""

    backend: Backend
    url: str
    synchronous: SqliteSync
    planes: dict[Kind, ControlPlaneFacade]
    capture: UsageCapture
    tallies: dict[tuple[RowSpec, Kind], LedgerTally] = field(default_factory=dict)

    @classmethod
    def open(cls, backend: Backend, url: str, synchronous: SqliteSync, *, prefix: str = PREFIX) -> UsageTarget:
        """Set up the tables of `prefix` + 'ours_' and + 'limit_' at `url`, and capture a call in the limit's."""
        planes: dict[Kind, ControlPlaneFacade] = {}
        for kind in ("ours", "limit"):
            planes[kind] = ControlPlaneFacade.from_database_url(
                url, policy=POLICY, table_prefix=f"{prefix}{kind}_", sqlite_synchronous=synchronous
            )
            planes[kind].setup()
        capture = capture_usage(backend, url, f"{prefix}limit_", synchronous)
        return cls(backend, url, synchronous, planes, capture)

    def run(self, pool: WorkerPool, kind: Kind, spec: RowSpec, seconds: float) -> RunStats:
        cp = self.planes[kind]
        tenants = [f"bench-{kind}-{uuid.uuid4().hex[:12]}" for _ in range(1 if spec.shared else spec.workers)]
        for org in tenants:
            cp.create_token_budget(budget_for(org))
        jobs = [
            UsageJob(
                self.backend,
                self.url,
                cp.registry.table_prefix,
                org,
                self.synchronous,
                seconds,
                self.capture.steps_for(org) if kind == "limit" else None,
            )
            for org in (tenants * spec.workers if spec.shared else tenants)
        ]
        results = pool.run(jobs, timeout=RUN_TIMEOUT_S)
        stats = run_stats(results)
        counted = tally(cp, tenants, sum(len(r.latencies) for r in results) + WARM_UP_ACTIONS * len(jobs))
        if counted.problem is not None:
            raise BenchError(f"{kind}: {counted.problem}")
        self.tallies[spec, kind] = self.tallies.get((spec, kind), LedgerTally()) + counted
        return stats

    def notes(self, spec: RowSpec) -> dict[str, Any]:
        ledger = {kind: self.tallies.get((spec, kind), LedgerTally()).as_json() for kind in ("ours", "limit")}
        return {"ledger": ledger, "untraced_statements": list(self.capture.untraced)}

    def close(self) -> None:
        for cp in self.planes.values():
            cp.close()


USAGE_TABLE = Throughput("usage", "Token usage recorded per second (record_usage)", "calls", "tenant", UsageTarget.open)
USAGE_ROWS = tuple(
    RowSpec(USAGE_TABLE, backend, "FULL", workers, shared)
    for backend in ("sqlite", "postgres")
    for workers, shared in ((1, True), (8, True), (8, False))
)


# output -----------------------------------------------------------------------------------------------------
def usage_table(results: Sequence[RowResult], seconds: float, repeats: int) -> Table:
    caption = (
        f"{repeats_caption(seconds, repeats)}; one call = {OPERATION}, {BUDGET}; tenants: one for all workers (one "
        "contended window row) or one per worker; limit = the same SQL statements replayed with the raw driver "
        "(sqlite3 / psycopg), same transaction and processes, a fresh ledger id per call"
    )
    untraced = {r.spec.config: r.notes["untraced_statements"] for r in results if r.notes.get("untraced_statements")}
    if untraced:

        def why(sql: str) -> str:
            return "the connection pool's pre-ping at checkout" if sql.strip() in PING_STATEMENTS else "not traced"

        listed = "; ".join(
            f"{config}: " + ", ".join(f"{sql!r} ({why(sql)})" for sql in statements)
            for config, statements in untraced.items()
        )
        caption += f". Run by the driver outside the storage trace, so not in the limit: {listed}"
    return throughput_table(results, title=USAGE_TABLE.title, caption=caption)


def usage_json(results: Sequence[RowResult], seconds: float, repeats: int) -> dict[str, Any]:
    return {
        "operation": OPERATION,
        "budget": BUDGET,
        "seconds": seconds,
        "repeats": repeats,
        "statistic": "median",
        "rows": [r.as_json() for r in results],
        "min_ratio": min_ratio(results),
        "untraced_statements": UNTRACED,
    }
