"""Adapter overhead: what each framework adapter adds to one tool call, over the propose + settle it makes.

Every call of every variant is one allowed, unrestricted call of a trivial tool (`run_tool` formats a string) with a
cost: proposed, run, settled. The variants, on one database per backend:

- bare: `propose` → tool → `settle` on `ControlPlaneFacade` (sync) or `AsyncControlPlaneFacade` (async), with the
  arguments, agent, cost and settlement result an adapter sends: the baseline of an adapter called without a
  framework runtime around it (ToolGate, the Claude Agent SDK's callbacks) is the bare call on the facade it uses;
- ToolGate: `check` → tool → `settle` on the sync facade, and `acheck` → tool → `asettle` on the async one;
- MCP proxy: `Client.call_tool` from an MCP client to the `GoverningProxy`'s server over the MCP SDK's in-memory
  transport, which the proxy forwards to an in-memory upstream server (async facade);
- OpenAI Agents SDK: what the SDK's runner calls for one function-tool call, in its order: the tool's
  `needs_approval(context, params, call_id)`, its tool input guardrails' `run(ToolInputGuardrailData)` and
  `agents.tool.invoke_function_tool` (the tool's `on_invoke_tool`, where the governor settles), with the SDK's own
  `RunContextWrapper`, `ToolContext`, `ResponseFunctionToolCall` and `Agent` (async facade); the model turn and the
  rest of the runner are not timed;
- Claude Agent SDK: the callbacks `ClaudeAgentOptions(**governor.options(via=...))` registers, called the way the
  SDK's control protocol calls them (`hook(input, tool_use_id, {"signal": None})`, `can_use_tool(name, input,
  ToolPermissionContext)`): PreToolUse hook → tool → PostToolUse hook, and can_use_tool → tool → PostToolUse hook
  (async facade). The CLI runs the tool, and nothing of the SDK's runs between the callbacks in this process;
- LangGraph: `GovernedToolNode` runs only inside a graph, so one call is an `invoke` (sync facade) or `ainvoke`
  (async facade) of a graph `START → tools → END` compiled with an `InMemorySaver`, on a new thread, whose input is
  an `AIMessage` with one tool call.

The MCP proxy, the OpenAI SDK's calls and the graphs run inside a framework's runtime, and a propose + settle made
inside it costs more than the bare one: the runtime's own work (a graph's checkpoint writes on a background thread
or task, the MCP session's reader and writer tasks) runs in the gaps the database calls leave, and the calls wait
for it. Any governance made inside the runtime pays that, so those adapters are compared with the same runtime
governed by hand, in the most direct way: a pass-through MCP server whose handler proposes, forwards and settles; a
plain function tool whose body proposes, runs and settles; a graph node that proposes, runs the call through a
`ToolNode` and settles, with the idempotency key `GovernedToolNode` sends (governance written by hand for LangGraph
needs it: the graph runs a node again when it resumes). The same runtime ungoverned (a pass-through MCP server, the
plain tool, the graph with LangGraph's `ToolNode`) is timed too, to show what governing inside it costs
(`in_runtime_ms`: by hand - ungoverned) and the adapter's call over the bare one (`over_bare_ms`: governed -
ungoverned - bare).

Each variant proposes in a session of its own (a budget that cannot run out; the policy sets no concurrency limit),
except the MCP proxy, which opens one itself at the MCP handshake (without a budget limit). The databases commit
without waiting for the disk (SQLite synchronous=NORMAL in WAL mode, PostgreSQL synchronous_commit=off on the bench's
own database): every variant makes the same commits, and the milliseconds of jitter of a flush would drown a
difference of a fraction of one. After a warm-up, each round makes one call of every variant, in an order rotated by
one each round and balanced so that each variant follows each other one equally often (`round_order`): drift, other
processes, the garbage collector and what one call leaves to the next hit all variants alike. A call is timed with
`time.perf_counter_ns` around the entry point only. Overhead = the median over rounds of (adapter - by hand) in the
same round for an adapter inside a runtime, of (adapter - bare) for the others, with a distribution-free 95 %
confidence interval; met or missed is the median's verdict. Afterwards every governed session's log must hold one
allowed proposal and one succeeded settlement per call, or the row fails.
"""

from __future__ import annotations

import asyncio
import gc
import math
import statistics
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table
from sqlalchemy.engine import make_url

from agent_control_plane._bench.action import Backend, BenchError
from agent_control_plane._bench.adapter_calls import (
    POLICY,
    Facade,
    Planes,
    Variant,
    Variants,
    claude_agent_sdk_calls,
    core_calls,
    expect,
    langgraph_calls,
    mcp_calls,
    openai_agents_calls,
)
from agent_control_plane._bench.replay import psycopg_dsn
from agent_control_plane.aio import AsyncControlPlaneFacade
from agent_control_plane.facade import ControlPlaneFacade
from agent_control_plane.store.dialect import SqliteSync

ROUNDS = 300
QUICK_ROUNDS = 30
WARM_UP_ROUNDS = 10
TARGET_OVERHEAD_MS = 0.2
"""What an adapter may add to one tool call, above the bare propose + settle it makes."""
PREFIX = "bench_adapters_"
SQLITE_SYNCHRONOUS: SqliteSync = "NORMAL"


# rows -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AdapterSpec:
    """One adapter's row: the variant it times, the bare call it is paired with, and whether a runtime is around."""

    name: str
    adapter: str
    call: str
    """What one timed call is."""
    facade: Facade
    build: Callable[[AsyncExitStack, Planes], Awaitable[Variants]]
    runtime: bool = False
    """The framework's runtime is timed around the adapter: the same runtime governed by hand is subtracted (and
    the same runtime ungoverned is timed, to show what governing inside it costs)."""

    @property
    def bare(self) -> str:
        return f"bare/{self.facade}"


SPECS = (
    AdapterSpec("tool_gate", "ToolGate", "check → tool → settle", "sync", core_calls),
    AdapterSpec("tool_gate_async", "ToolGate", "acheck → tool → asettle", "async", core_calls),
    AdapterSpec("mcp_proxy", "MCP proxy", "tools/call over in-memory MCP", "async", mcp_calls, runtime=True),
    AdapterSpec(
        "openai_agents", "OpenAI SDK", "needs_approval → guardrail → tool", "async", openai_agents_calls, runtime=True
    ),
    AdapterSpec("claude_hooks", "Claude SDK", "PreToolUse → tool → PostToolUse", "async", claude_agent_sdk_calls),
    AdapterSpec(
        "claude_can_use_tool", "Claude SDK", "can_use_tool → tool → PostToolUse", "async", claude_agent_sdk_calls
    ),
    AdapterSpec("langgraph", "LangGraph", "graph.invoke, GovernedToolNode", "sync", langgraph_calls, runtime=True),
    AdapterSpec(
        "langgraph_async", "LangGraph", "graph.ainvoke, GovernedToolNode", "async", langgraph_calls, runtime=True
    ),
)


def _median_ms(samples: Sequence[int]) -> float:
    return statistics.median(samples) / 1e6


def _differences(minuend: Sequence[int], *subtrahends: Sequence[int]) -> list[float]:
    """Per round, in ms: the first variant's time less the others' (samples are ns, one per round each)."""
    return [(first - sum(rest)) / 1e6 for first, *rest in zip(minuend, *subtrahends, strict=True)]


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median_ci95(values: Sequence[float]) -> tuple[float, float]:
    """A distribution-free 95 % confidence interval for the median: the order statistics n/2 ∓ 0.98·√n."""
    ordered, n = sorted(values), len(values)
    half = 0.98 * math.sqrt(n)
    low, high = math.floor(n / 2 - half), math.ceil(n / 2 + half)
    return ordered[max(low, 0)], ordered[min(high, n - 1)]


@dataclass(slots=True)
class AdapterRow:
    """One line of the adapter table: an adapter's tool call on one backend, paired with the bare call."""

    spec: AdapterSpec
    backend: Backend
    calls: int = 0
    bare_ms: float = 0.0
    ungoverned_ms: float | None = None
    by_hand_ms: float | None = None
    governed_ms: float = 0.0
    overhead_ms: float = 0.0
    overhead_p25_ms: float = 0.0
    overhead_p75_ms: float = 0.0
    overhead_ci95_ms: tuple[float, float] = (0.0, 0.0)
    """How far off the median overhead may be: its 95 % confidence interval."""
    in_runtime_ms: float | None = None
    """What governing by hand adds to the framework's runtime: median over rounds of (by hand - ungoverned)."""
    over_bare_ms: float | None = None
    """The adapter's call less the ungoverned runtime and the bare call: median of (governed - ungoverned - bare)."""
    proposed: int = 0
    """Allowed proposals in the adapter's session, warm-up included, as its event log holds them."""
    settled: int = 0
    problem: str | None = None

    @property
    def config(self) -> str:
        return _config(self.backend)

    @property
    def target_met(self) -> bool | None:
        return None if self.problem is not None else self.overhead_ms <= TARGET_OVERHEAD_MS

    def record(self, adapter: Variant, bare: Variant, runtime: tuple[Variant, Variant] | None) -> None:
        """The medians, and the overhead: in each round, adapter - by hand (in a runtime), or adapter - bare.

        `runtime` is the (ungoverned, by hand) pair of variants of a row whose adapter runs inside a framework.
        """
        self.calls = len(adapter.samples)
        self.bare_ms = _median_ms(bare.samples)
        self.governed_ms = _median_ms(adapter.samples)
        if runtime is None:
            overheads = _differences(adapter.samples, bare.samples)
        else:
            ungoverned, by_hand = runtime
            overheads = _differences(adapter.samples, by_hand.samples)
            self.ungoverned_ms, self.by_hand_ms = _median_ms(ungoverned.samples), _median_ms(by_hand.samples)
            self.in_runtime_ms = statistics.median(_differences(by_hand.samples, ungoverned.samples))
            over_bare = _differences(adapter.samples, ungoverned.samples, bare.samples)
            self.over_bare_ms = statistics.median(over_bare)
        self.overhead_ms = statistics.median(overheads)
        self.overhead_p25_ms, self.overhead_p75_ms = _pct(overheads, 0.25), _pct(overheads, 0.75)
        self.overhead_ci95_ms = median_ci95(overheads)

    def as_json(self) -> dict[str, Any]:
        spec = self.spec
        out: dict[str, Any] = {
            "backend": self.backend,
            "name": spec.name,
            "adapter": spec.adapter,
            "call": spec.call,
            "facade": spec.facade,
            "status": self.problem or "ok",
        }
        if self.problem is None:
            out |= {
                "calls": self.calls,
                "proposed": self.proposed,
                "settled": self.settled,
                "bare_ms": round(self.bare_ms, 4),
                "ungoverned_ms": _rounded(self.ungoverned_ms),
                "by_hand_ms": _rounded(self.by_hand_ms),
                "governed_ms": round(self.governed_ms, 4),
                "overhead_ms": round(self.overhead_ms, 4),
                "overhead_p25_ms": round(self.overhead_p25_ms, 4),
                "overhead_p75_ms": round(self.overhead_p75_ms, 4),
                "overhead_ci95_ms": [round(x, 4) for x in self.overhead_ci95_ms],
                "in_runtime_ms": _rounded(self.in_runtime_ms),
                "over_bare_ms": _rounded(self.over_bare_ms),
            }
        return out | {"target_met": self.target_met}


def _rounded(ms: float | None) -> float | None:
    return None if ms is None else round(ms, 4)


@dataclass(slots=True)
class AdapterRun:
    """One backend's rows, and the session each governed variant proposed in, by variant name."""

    rows: list[AdapterRow]
    sessions: dict[str, str]


# measuring --------------------------------------------------------------------------------------------------
def round_order(r: int, k: int) -> list[int]:
    """The order of the `k` variants in round `r`: a Williams design, rotated by one each round.

    The base order 0, 1, k-1, 2, k-2, … with every index shifted by r (mod k) puts each variant right after each
    other variant once every k rounds (for an odd k, every 2k rounds, the second k mirrored), and in each place once.
    A plain rotation of one order keeps each variant's predecessor the same in all rounds but one in k, and what a
    call inherits from the one before it (a thread pool winding down, garbage to collect, colder caches) then biases
    one variant against another: over 100 rounds on SQLite, two identical sync bare variants differed by 0.14 ms
    that way, and by 0.01 to 0.02 ms in this order.
    """
    base, low, high = [0], 1, k - 1
    while len(base) < k:
        base.append(low)
        low += 1
        if len(base) < k:
            base.append(high)
            high -= 1
    if k % 2 and (r // k) % 2:
        base.reverse()
    return [(i + r) % k for i in base]


async def _rounds(variants: Sequence[Variant], rounds: int, on_progress: Callable[[str], None]) -> None:
    """The warm-up, then `rounds` timed rounds of one call per variant, in the order `round_order` gives.

    A variant whose call fails takes no further part (its rows report the failure); the call number is the round's.
    """
    for r in range(WARM_UP_ROUNDS + rounds):
        if r == WARM_UP_ROUNDS:
            gc.collect()
        for variant in (variants[i] for i in round_order(r, len(variants))):
            if variant.problem is not None:
                continue
            try:
                elapsed = await variant.timer(r)
            except Exception as exc:
                variant.problem = f"error: call {r} of {variant.name} failed: {_first_line(exc)}"
                continue
            if r >= WARM_UP_ROUNDS:
                variant.samples.append(elapsed)
        if r >= WARM_UP_ROUNDS and (r + 1 - WARM_UP_ROUNDS) % 10 == 0:
            on_progress(f"round {r + 1 - WARM_UP_ROUNDS}/{rounds}")


def _logged(cp: ControlPlaneFacade, variant: Variant, calls: int) -> tuple[int, int]:
    """(allowed proposals, succeeded settlements) in the variant's log, which must be `calls` each."""
    if variant.session_id is None:
        raise BenchError(f"{variant.name} proposed in no session")
    proposed = settled = 0
    for frame in cp.replay(variant.session_id):
        if frame.kind == "proposal.decided":
            expect(f"{variant.name}: a decision's code", frame.payload.get("code"), "allowed")
            proposed += 1
        elif frame.kind == "proposal.settled":
            expect(f"{variant.name}: a settlement's outcome", frame.payload.get("outcome"), "succeeded")
            settled += 1
    if (proposed, settled) != (calls, calls):
        raise BenchError(f"{variant.name} made {calls} calls, but its log has {proposed} proposed, {settled} settled")
    return proposed, settled


async def _measure(
    backend: Backend, url: str, rounds: int, prefix: str, on_progress: Callable[[str], None]
) -> AdapterRun:
    rows = [AdapterRow(spec, backend) for spec in SPECS]
    options: dict[str, Any] = {"policy": POLICY, "table_prefix": prefix, "sqlite_synchronous": SQLITE_SYNCHRONOUS}
    async with AsyncExitStack() as stack:
        sync = ControlPlaneFacade.from_database_url(url, **options)
        stack.callback(sync.close)
        sync.setup()
        aio = AsyncControlPlaneFacade.from_database_url(url, **options)
        stack.push_async_callback(aio.close)  # after the MCP clients: the proxy closes its session when they leave
        planes = Planes(sync, aio)
        variants: Variants = {}
        unbuilt: dict[str, str] = {}
        for build in dict.fromkeys(spec.build for spec in SPECS):
            try:
                variants |= await build(stack, planes)
            except ImportError as exc:  # the framework is not installed
                unbuilt[build.__name__] = f"unavailable: {_first_line(exc)}"
            except Exception as exc:
                unbuilt[build.__name__] = f"error: {_first_line(exc)}"
        await _rounds(list(variants.values()), rounds, on_progress)
        logged: dict[str, tuple[int, int]] = {}
        for variant in variants.values():
            if variant.governed and variant.problem is None:
                try:
                    logged[variant.name] = _logged(sync, variant, WARM_UP_ROUNDS + rounds)
                except BenchError as exc:
                    variant.problem = f"error: {exc}"
        for row in rows:
            spec = row.spec
            if spec.build.__name__ in unbuilt:
                row.problem = unbuilt[spec.build.__name__]
                continue
            adapter, bare = variants[spec.name], variants[spec.bare]
            runtime = None
            if spec.runtime:
                runtime = variants[f"{spec.name}/ungoverned"], variants[f"{spec.name}/by_hand"]
            row.problem = next((v.problem for v in (adapter, bare, *(runtime or ())) if v.problem), None)
            if row.problem is None:
                row.record(adapter, bare, runtime)
                row.proposed, row.settled = logged[spec.name]
        sessions = {v.name: v.session_id for v in variants.values() if v.session_id is not None}
    return AdapterRun(rows, sessions)


def measure_adapters(
    backend: Backend,
    url: str,
    rounds: int,
    *,
    prefix: str = PREFIX,
    on_progress: Callable[[str], None] = lambda _: None,
) -> AdapterRun:
    """Time `rounds` rounds of every variant (after `WARM_UP_ROUNDS` untimed ones) on the database at `url`.

    A row whose variants failed, or whose sessions' logs do not hold one allowed proposal and one succeeded
    settlement per call, has its `problem` set; a framework that is not installed leaves its rows unavailable. The
    database's settings are left as they are (`run_adapters` turns off PostgreSQL's commit waits on its own one).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, not {rounds}")
    return asyncio.run(_measure(backend, url, rounds, prefix, on_progress))


def _without_commit_waits(url: str) -> None:
    """Let connections to the bench's own PostgreSQL database commit without waiting for the WAL flush."""
    import psycopg

    with psycopg.connect(psycopg_dsn(url), autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'ALTER DATABASE "{make_url(url).database}" SET synchronous_commit = off')


@contextmanager
def _sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="acp-bench-adapters-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'adapters.db'}"


def run_adapters(
    backends: Sequence[Backend],
    *,
    rounds: int,
    postgres_database: Callable[[], AbstractContextManager[str]],
    on_progress: Callable[[str], None] = lambda _: None,
) -> list[AdapterRow]:
    """Every adapter's row on each backend; `postgres_database` gives a fresh PostgreSQL database URL and drops it."""
    rows: list[AdapterRow] = []
    for backend in backends:

        def progress(text: str, config: str = _config(backend)) -> None:
            on_progress(f"{config}: {text}")

        with ExitStack() as stack:
            try:
                url = stack.enter_context(_sqlite_database() if backend == "sqlite" else postgres_database())
            except Exception as exc:
                rows += [AdapterRow(spec, backend, problem=f"unavailable: {_first_line(exc)}") for spec in SPECS]
                continue
            try:
                if backend == "postgres":
                    _without_commit_waits(url)
                run = measure_adapters(backend, url, rounds, on_progress=progress)
            except Exception as exc:
                rows += [AdapterRow(spec, backend, problem=f"error: {_first_line(exc)}") for spec in SPECS]
                continue
            rows += run.rows
    return rows


def _config(backend: Backend) -> str:
    return "SQLite" if backend == "sqlite" else "PostgreSQL"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# output -----------------------------------------------------------------------------------------------------
def adapters_json(rows: Sequence[AdapterRow], rounds: int) -> dict[str, Any]:
    """The adapter table as JSON: what was measured, the target, and the rows."""
    return {
        "unit": "ms per tool call",
        "statistic": "median",
        "rounds": rounds,
        "warm_up_rounds": WARM_UP_ROUNDS,
        "bare": "propose → tool → settle on the facade the adapter uses (sync or async)",
        "by_hand": "the adapter's framework runtime with the tool proposed and settled by hand around it",
        "overhead": "median over rounds, in the same round, of (adapter - by hand) inside a framework runtime, "
        "else of (adapter - bare)",
        "in_runtime": "median over rounds of (by hand - ungoverned runtime): what governing inside the runtime costs",
        "over_bare": "median over rounds of (adapter - ungoverned runtime - bare)",
        "commits": "without waiting for the disk: SQLite synchronous=NORMAL (WAL), PostgreSQL synchronous_commit=off",
        "targets": {"overhead_ms": TARGET_OVERHEAD_MS},
        "rows": [row.as_json() for row in rows],
    }


def adapter_table(rows: Sequence[AdapterRow]) -> Table:
    """The adapter table: per backend and adapter, the bare call, the adapter's call and the paired overhead."""
    calls = max((row.calls for row in rows), default=0)
    table = Table(
        title="Adapter overhead per tool call, ms (over the same propose → tool → settle, paired in each round)",
        caption=(
            f"{calls:,} timed rounds per backend after {WARM_UP_ROUNDS} warm-up rounds; a round makes one call of "
            "every variant, in a rotated order balanced for which call follows which, each an allowed call of a "
            "trivial tool with a cost, in a session of its own. bare = propose → tool → settle on the facade the "
            "adapter uses: ControlPlaneFacade (sync) or AsyncControlPlaneFacade (async). "
            "ungoverned = the adapter's framework runtime, the tool not governed: a pass-through MCP server; the "
            "OpenAI SDK's calls on a plain tool; the graph with LangGraph's ToolNode. by hand = the same runtime with "
            "propose and settle written around the tool (in the MCP server's handler, the tool's body, a graph node "
            "proposing with GovernedToolNode's idempotency key). governed = the adapter's call. "
            "overhead = median over rounds of (governed - by hand) in the same round, or of (governed - bare) where "
            "there is no runtime, judged against the target; 95% CI = its confidence interval (order statistics; "
            "the JSON also has the differences' p25 and p75, what governing costs inside the runtime, by hand - "
            "ungoverned, and governed - ungoverned - bare). "
            "MCP: Client.call_tool over the SDK's in-memory transport, forwarded to an in-memory upstream. "
            "OpenAI: the tool's needs_approval, its tool input guardrails and invoke_function_tool, as the runner "
            "calls them. Claude: the callbacks ClaudeAgentOptions registers, called as the SDK's control protocol "
            "does. LangGraph: one (a)invoke of START → tools → END with an InMemorySaver, a new thread per call. "
            "Commits do not wait for the disk (SQLite synchronous=NORMAL, PostgreSQL synchronous_commit=off): all "
            "variants make the same commits."
        ),
    )
    target = f"≤ {TARGET_OVERHEAD_MS:g} ms"
    for name, justify in (
        ("backend", "left"),
        ("adapter", "left"),
        ("one call", "left"),
        ("facade", "left"),
        ("bare", "right"),
        ("ungoverned", "right"),
        ("by hand", "right"),
        ("governed", "right"),
        ("overhead", "right"),
        ("95% CI", "right"),
        (target, "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        spec = row.spec
        head = [row.config, spec.adapter, spec.call, spec.facade]
        if row.problem is not None:
            # The cause is in the summary line, which no narrow column cuts short.
            table.add_row(*head, f"[yellow]{row.problem.split(':')[0]}[/]", *[""] * 6)
            continue
        table.add_row(
            *head,
            f"{row.bare_ms:.3f}",
            "—" if row.ungoverned_ms is None else f"{row.ungoverned_ms:.3f}",
            "—" if row.by_hand_ms is None else f"{row.by_hand_ms:.3f}",
            f"{row.governed_ms:.3f}",
            f"{row.overhead_ms:.3f}",
            "{:.2f}..{:.2f}".format(*row.overhead_ci95_ms),
            "[green]met[/]" if row.target_met else "[red]missed[/]",
        )
    return table


def adapter_summary(rows: Sequence[AdapterRow]) -> str:
    """One line: each measured adapter's overhead and whether it met the target."""
    measured = [row for row in rows if row.problem is None]
    unmeasured = "; ".join(f"{row.config} {row.spec.name}: {row.problem}" for row in rows if row.problem is not None)
    if not measured:
        return "adapter overhead: nothing was measured" + (f" ({unmeasured})" if unmeasured else "")
    met = sum(1 for row in measured if row.target_met)
    parts = [
        f"{row.config} {row.spec.name} {row.overhead_ms:.3f} ms {'met' if row.target_met else 'missed'}"
        for row in measured
    ]
    head = f"adapter overhead (target ≤ {TARGET_OVERHEAD_MS:g} ms per call): met by {met} of {len(measured)} rows"
    return f"{head}: " + "; ".join(parts) + (f". Not measured: {unmeasured}" if unmeasured else "")
