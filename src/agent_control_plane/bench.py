"""The project benchmark: governed actions per second, as a ratio of what the raw database driver can do.

One governed action is `propose` (an allowed, unrestricted action with a cost) followed by `settle`,
through `ControlPlaneFacade`. The "limit" is the same SQL: the statements one propose+settle issues are
captured with the storage layer's statement trace and replayed with the bare driver (sqlite3 / psycopg), with the
same transaction boundaries, PRAGMAs, number of worker processes and session layout, into tables of their own.
So ours/limit is the share of the database's own speed the library keeps, and the replay follows the storage
layer whenever it changes.

A second throughput table does the same for recorded token usage: `record_usage` calls per second through the
sync tracker, with the workers on one tenant or a tenant each, against the replay of the statements of one call
(see `_bench/usage.py`).

A third table gives decision latency: microseconds per pure `PolicyEngine.decide` for generated 20- and 200-rule
policies, with the same 20 rules evaluated by Cedar (cedarpy) as the reference (see `_bench/decisions.py`).

A fourth table gives the approval round trip on each backend: a ticket created by a waiter process, approved in an
approver process, and the time until the waiter's `wait_for_decision` wakes (see `_bench/approvals.py`).

A fifth table gives the overhead of each framework adapter per tool call on each backend: the adapter's own entry
point for one allowed call (ToolGate; the MCP proxy; the OpenAI Agents SDK's function-tool calls; the Claude Agent
SDK's callbacks; a LangGraph graph with `GovernedToolNode`) against a bare propose → tool → settle on the facade the
adapter uses, interleaved round by round; where a framework's runtime has to be timed around the adapter, the same
runtime with the tool ungoverned is subtracted too. The overhead is the median of the per-round differences (see
`_bench/adapters.py`).

    python -m agent_control_plane.bench [--seconds 3] [--repeats 3]
                                        [--only sqlite|postgres|usage|decisions|approvals|adapters] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from agent_control_plane._bench.action import POLICY, Backend
from agent_control_plane._bench.adapters import QUICK_ROUNDS as QUICK_ADAPTER_ROUNDS
from agent_control_plane._bench.adapters import ROUNDS as ADAPTER_ROUNDS
from agent_control_plane._bench.adapters import (
    AdapterRow,
    adapter_summary,
    adapter_table,
    adapters_json,
    run_adapters,
)
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
from agent_control_plane._bench.replay import ReplayPlan, build_plan
from agent_control_plane._bench.rows import (
    RUN_TIMEOUT_S,
    RowResult,
    RowSpec,
    RunStats,
    Throughput,
    min_ratio,
    postgres_database,
    repeats_caption,
    run_rows,
    run_stats,
    summary,
    throughput_table,
)
from agent_control_plane._bench.usage import USAGE_ROWS, USAGE_TABLE, usage_json, usage_table
from agent_control_plane._bench.workers import Job, Kind, WorkerPool
from agent_control_plane.facade import ControlPlaneFacade
from agent_control_plane.store.dialect import SqliteSync

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
OURS_PREFIX = "bench_ours_"
LIMIT_PREFIX = "bench_limit_"


# the governed action's rows ----------------------------------------------------------------------------------
@dataclass(slots=True)
class ActionTarget:
    """One database the rows of a backend configuration run on, with our tables and the limit's tables."""

    backend: Backend
    url: str
    synchronous: SqliteSync
    ours: ControlPlaneFacade
    limit: ControlPlaneFacade
    plan: ReplayPlan

    @classmethod
    def open(cls, backend: Backend, url: str, synchronous: SqliteSync) -> ActionTarget:
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

    def sessions(self, kind: Kind, spec: RowSpec) -> list[str]:
        cp = self.ours if kind == "ours" else self.limit
        if spec.shared:
            return [cp.open_session("bench shared", max_cost=10**8)] * spec.workers
        return [cp.open_session(f"bench worker {i}", max_cost=10**8) for i in range(spec.workers)]

    def run(self, pool: WorkerPool, kind: Kind, spec: RowSpec, seconds: float) -> RunStats:
        prefix = OURS_PREFIX if kind == "ours" else LIMIT_PREFIX
        plan = self.plan if kind == "limit" else None
        jobs = [
            Job(kind, self.backend, self.url, prefix, sid, self.synchronous, seconds, plan)
            for sid in self.sessions(kind, spec)
        ]
        return run_stats(pool.run(jobs, timeout=RUN_TIMEOUT_S))

    def notes(self, spec: RowSpec) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self.ours.close()
        self.limit.close()


ACTIONS = Throughput(
    "actions", "Governed actions per second (propose + settle)", "actions", "session", ActionTarget.open
)
ROWS = (
    *(
        RowSpec(ACTIONS, "sqlite", sync, workers, shared)
        for sync in ("FULL", "NORMAL")
        for workers, shared in ((1, False), (4, True), (4, False))
    ),
    RowSpec(ACTIONS, "postgres", "FULL", 1, False),
    RowSpec(ACTIONS, "postgres", "FULL", 8, False),
    RowSpec(ACTIONS, "postgres", "FULL", 8, True),
)


def _action_table(results: Sequence[RowResult], seconds: float, repeats: int) -> Table:
    caption = (
        f"{repeats_caption(seconds, repeats)}; limit = the same SQL statements replayed with the raw driver "
        "(sqlite3 / psycopg), same transactions, processes and sessions"
    )
    return throughput_table(results, title=ACTIONS.title, caption=caption)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables (or JSON); 1 if a row failed, 0 otherwise."""
    parser = argparse.ArgumentParser(
        prog="acp bench",
        description=(
            "Measure governed actions per second (propose + settle through ControlPlaneFacade) and recorded token "
            "usage per second (record_usage through the sync tracker) on SQLite and PostgreSQL, each against the "
            "limit: the same SQL statements replayed with the raw driver; decision latency against Cedar; the "
            "approval round trip; and each framework adapter's overhead per tool call over the propose + settle it "
            "makes (inside a framework's runtime, over the same runtime with propose and settle written by hand)."
        ),
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each run (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row; the table shows the median (3)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"very short runs and 1 repeat, {QUICK_ITERATIONS:,} instead of {ITERATIONS:,} timed decisions "
        f"per decision-latency row, {QUICK_ROUNDS} instead of {ROUNDS} approval round trips per backend, and "
        f"{QUICK_ADAPTER_ROUNDS} instead of {ADAPTER_ROUNDS} adapter-overhead rounds per backend; for tests and CI",
    )
    parser.add_argument(
        "--only",
        choices=("sqlite", "postgres", "usage", "decisions", "approvals", "adapters"),
        help="sqlite / postgres: only that backend's throughput (governed actions and token usage), approval "
        "round-trip and adapter-overhead rows, without the decision-latency table; usage: only the token-usage "
        "throughput table, on both backends; decisions: only the decision-latency table; approvals: only the "
        "approval round-trip table, on both backends; adapters: only the adapter-overhead table, on both "
        "backends (default: everything)",
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
    only = args.only
    specs = [
        s
        for s in (*ROWS, *USAGE_ROWS)
        if only is None or s.backend == only or (only == "usage" and s.throughput is USAGE_TABLE)
    ]
    console, progress = Console(), Console(stderr=True)
    if not console.is_terminal:
        console.width = 140
    results = (
        run_rows(specs, seconds=seconds, repeats=repeats, postgres_url=args.postgres_url, console=progress)
        if specs
        else []
    )
    actions = [r for r in results if r.spec.throughput is ACTIONS]
    usage = [r for r in results if r.spec.throughput is USAGE_TABLE]
    decisions: list[DecisionRow] = []
    if only in (None, "decisions"):
        with progress.status("measuring decision latency"):
            decisions = run_decisions(iterations=QUICK_ITERATIONS if args.quick else ITERATIONS)
    approvals: list[ApprovalRow] = []
    backends: tuple[Backend, ...] = ("sqlite", "postgres")
    if only in ("sqlite", "postgres"):
        backends = (only,)
    if only in (None, "sqlite", "postgres", "approvals"):
        with progress.status("measuring approval round trips"):
            approvals = run_approvals(
                backends,
                rounds=QUICK_ROUNDS if args.quick else ROUNDS,
                postgres_database=lambda: postgres_database(args.postgres_url),
            )
    adapters: list[AdapterRow] = []
    adapter_rounds = QUICK_ADAPTER_ROUNDS if args.quick else ADAPTER_ROUNDS
    if only in (None, "sqlite", "postgres", "adapters"):
        with progress.status("measuring adapter overhead") as status:
            adapters = run_adapters(
                backends,
                rounds=adapter_rounds,
                postgres_database=lambda: postgres_database(args.postgres_url),
                on_progress=lambda text: status.update(f"measuring adapter overhead: {text}"),
            )
    if args.json:
        document: dict[str, Any] = {}
        if any(s.throughput is ACTIONS for s in specs):
            document |= {
                "action": "propose + settle",
                "seconds": seconds,
                "repeats": repeats,
                "statistic": "median",
                "rows": [r.as_json() for r in actions],
                "min_ratio": min_ratio(actions),
            }
        if any(s.throughput is USAGE_TABLE for s in specs):
            document["usage"] = usage_json(usage, seconds, repeats)
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
        if adapters:
            document["adapters"] = adapters_json(adapters, adapter_rounds)
        print(json.dumps(document, indent=2))
    else:
        if actions:
            console.print(_action_table(actions, seconds, repeats))
            console.print(summary(actions))
        if usage:
            console.print(usage_table(usage, seconds, repeats))
            console.print(f"token usage: {summary(usage, target=None)}")
        if decisions:
            console.print(decision_table(decisions))
            console.print(decision_summary(decisions))
        if approvals:
            console.print(approval_table(approvals))
            console.print(approval_summary(approvals))
        if adapters:
            console.print(adapter_table(adapters))
            console.print(adapter_summary(adapters))
    problems = [r.problem for r in results] + [row.problem for row in decisions] + [row.problem for row in approvals]
    problems += [row.problem for row in adapters]
    failed = any(problem is not None and not problem.startswith("unavailable") for problem in problems)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
