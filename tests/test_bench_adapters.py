"""The adapter-overhead bench: every adapter's calls really go through the control plane, paired with bare ones."""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
from collections import Counter
from itertools import pairwise
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from agent_control_plane import ControlPlaneFacade, SessionStatus, bench
from agent_control_plane._bench.action import COST
from agent_control_plane._bench.adapter_calls import AGENT, POLICY, TOOL, Variant
from agent_control_plane._bench.adapters import (
    QUICK_ROUNDS,
    SPECS,
    WARM_UP_ROUNDS,
    AdapterRow,
    adapter_summary,
    adapter_table,
    measure_adapters,
    median_ci95,
    round_order,
)
from conftest import Backend

ADAPTERS = {
    "tool_gate",
    "tool_gate_async",
    "mcp_proxy",
    "openai_agents",
    "claude_hooks",
    "claude_can_use_tool",
    "langgraph",
    "langgraph_async",
}
WITH_RUNTIME = {"mcp_proxy", "openai_agents", "langgraph", "langgraph_async"}
"""The adapters timed inside their framework's runtime, compared with the same runtime governed by hand."""
BY_HAND = {f"{name}/by_hand" for name in WITH_RUNTIME}


def _variant(name: str, *ms: float) -> Variant:
    async def never(n: int) -> int:
        raise AssertionError("not called")

    return Variant(name, never, samples=[round(x * 1e6) for x in ms])


def test_overhead_is_the_median_of_each_rounds_difference_not_a_difference_of_medians() -> None:
    row = AdapterRow(SPECS[2], "sqlite")
    adapter = _variant("mcp_proxy", 3, 10, 4, 11, 5)
    ungoverned = _variant("mcp_proxy/ungoverned", 1, 1, 1, 1, 1)
    by_hand = _variant("mcp_proxy/by_hand", 2, 1, 9, 3, 8)
    bare = _variant("bare/async", 1, 2, 1, 2, 1)

    row.record(adapter, bare, (ungoverned, by_hand))

    # Per round, governed - by hand: 1, 9, -5, 8, -3; the medians alone would say 5 - 3 = 2.
    assert row.overhead_ms == pytest.approx(1)
    assert (row.overhead_p25_ms, row.overhead_p75_ms) == pytest.approx((-3, 8))
    assert row.overhead_ci95_ms == pytest.approx((-5, 9))  # five rounds say little: all of them
    assert (row.bare_ms, row.ungoverned_ms, row.by_hand_ms, row.governed_ms) == pytest.approx((1, 1, 3, 5))
    assert row.in_runtime_ms == pytest.approx(2)  # by hand - ungoverned: 1, 0, 8, 2, 7
    assert row.over_bare_ms == pytest.approx(3)  # governed - ungoverned - bare: 1, 7, 2, 8, 3
    assert row.calls == 5 and row.target_met is False


def test_without_a_runtime_the_overhead_is_over_the_bare_call() -> None:
    row = AdapterRow(SPECS[0], "sqlite")

    row.record(_variant("tool_gate", 3, 10, 4, 11, 5), _variant("bare/sync", 1, 2, 1, 2, 1), None)

    assert row.overhead_ms == pytest.approx(4)  # 2, 8, 3, 9, 4
    assert (row.ungoverned_ms, row.by_hand_ms, row.in_runtime_ms, row.over_bare_ms) == (None, None, None, None)


@given(st.integers(1, 30))
def test_each_variant_follows_each_other_and_takes_each_place_equally_often(k: int) -> None:
    cycle = k if k % 2 == 0 else 2 * k
    follows: Counter[tuple[int, int]] = Counter()
    places: Counter[tuple[int, int]] = Counter()
    for r in range(cycle):
        order = round_order(r, k)
        assert sorted(order) == list(range(k))
        follows.update(pairwise(order))
        places.update((variant, place) for place, variant in enumerate(order))
    assert len(follows) == k * (k - 1) and len(set(follows.values())) <= 1
    assert len(places) == k * k and set(places.values()) == {cycle // k}


@given(st.lists(st.floats(-10, 10), min_size=1, max_size=400))
def test_the_confidence_interval_of_the_median_is_two_of_the_differences_around_it(values: list[float]) -> None:
    low, high = median_ci95(values)
    assert low in values and high in values
    assert low <= statistics.median(values) <= high


def test_the_confidence_interval_of_a_full_run_spans_the_ranks_the_normal_approximation_gives() -> None:
    # 300 rounds: ranks 150 ∓ 0.98·√300 = 133 and 167 (from 0), about 11 % of the differences.
    assert median_ci95([float(n) for n in range(300)]) == (133.0, 167.0)


def _frames(cp: ControlPlaneFacade, session_id: str, kind: str) -> list[dict[str, Any]]:
    return [frame.payload for frame in cp.replay(session_id) if frame.kind == kind]


def test_every_variant_proposes_and_settles_each_of_its_calls_in_a_session_of_its_own(
    backend: Backend, table_prefix: str
) -> None:
    rounds = 3
    name: Literal["sqlite", "postgres"] = "sqlite" if backend.name == "sqlite" else "postgres"
    run = measure_adapters(name, backend.url, rounds, prefix=table_prefix)

    assert {row.spec.name for row in run.rows} == ADAPTERS and len(run.rows) == len(ADAPTERS)
    calls = WARM_UP_ROUNDS + rounds
    for row in run.rows:
        assert row.problem is None, row
        assert row.calls == rounds and (row.proposed, row.settled) == (calls, calls)
        assert (row.ungoverned_ms is not None) == (row.spec.name in WITH_RUNTIME)
        assert (row.by_hand_ms is not None) == (row.in_runtime_ms is not None) == (row.spec.name in WITH_RUNTIME)
        assert row.bare_ms > 0 and row.governed_ms > 0
        assert all(math.isfinite(x) for x in (row.overhead_ms, row.overhead_p25_ms, row.overhead_p75_ms))
    assert set(run.sessions) == ADAPTERS | BY_HAND | {"bare/sync", "bare/async"}
    assert len(set(run.sessions.values())) == len(run.sessions)  # a session each: no log counts another's calls

    with ControlPlaneFacade.from_database_url(backend.url, policy=POLICY, table_prefix=table_prefix) as cp:
        for name, session_id in run.sessions.items():
            decided = _frames(cp, session_id, "proposal.decided")
            settled = _frames(cp, session_id, "proposal.settled")
            assert [(d["action"], d["code"], d["agent_id"], d["cost"]) for d in decided] == [
                (TOOL, "allowed", AGENT, str(COST))
            ] * calls, name
            assert [d["args"] for d in decided] == [{"n": n} for n in range(calls)], name
            assert [(s["outcome"], s["result"]) for s in settled] == [
                ("succeeded", {"output": f"ok {n}"}) for n in range(calls)
            ], name
            budget = cp.get_remaining_budget(session_id)
            assert (budget["spent_cost"], budget["reserved_cost"]) == (COST * calls, 0), name
            assert cp.verify(session_id).ok, name
        # The proxy opened its session at the MCP handshake and closed it when the client disconnected.
        assert cp.get_session(run.sessions["mcp_proxy"]).status is SessionStatus.COMPLETED

    summary = adapter_summary(run.rows)
    assert summary.startswith("adapter overhead (target ≤ 0.2 ms per call): met by ")
    for row in run.rows:
        verdict = "met" if row.target_met else "missed"
        assert f"{row.config} {row.spec.name} {row.overhead_ms:.3f} ms {verdict}" in summary
    console = Console(record=True, width=200)
    console.print(adapter_table(run.rows))
    text = console.export_text()
    assert len(re.findall(r"\b(met|missed)\b", text)) == len(run.rows)
    assert f"{rounds} timed rounds per backend after {WARM_UP_ROUNDS} warm-up rounds" in text


def test_quick_adapters_run_reports_every_adapter_on_sqlite_and_postgresql(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--quick", "--only", "adapters", "--json"]) == 0

    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"adapters"}  # --only adapters: no other table
    adapters = document["adapters"]
    assert adapters["rounds"] == QUICK_ROUNDS and adapters["warm_up_rounds"] == WARM_UP_ROUNDS
    assert adapters["targets"] == {"overhead_ms": 0.2}
    rows = {(row["backend"], row["name"]): row for row in adapters["rows"]}
    assert set(rows) == {(backend, name) for backend in ("sqlite", "postgres") for name in ADAPTERS}
    for key, row in rows.items():
        assert row["status"] == "ok", row  # PostgreSQL too: it must be there, not "unavailable"
        assert row["calls"] == QUICK_ROUNDS, key
        assert row["proposed"] == row["settled"] == QUICK_ROUNDS + WARM_UP_ROUNDS, key
        assert row["bare_ms"] > 0 and row["governed_ms"] > 0, key
        assert (row["ungoverned_ms"] is not None) == (key[1] in WITH_RUNTIME), key
        assert (row["by_hand_ms"] is not None) == (row["over_bare_ms"] is not None) == (key[1] in WITH_RUNTIME), key
        assert all(math.isfinite(row[k]) for k in ("overhead_ms", "overhead_p25_ms", "overhead_p75_ms")), key
        assert row["overhead_p25_ms"] <= row["overhead_ms"] <= row["overhead_p75_ms"], key
        low, high = row["overhead_ci95_ms"]
        assert low <= row["overhead_ms"] <= high, key
        assert isinstance(row["target_met"], bool), key
        if abs(row["overhead_ms"] - 0.2) > 1e-3:  # away from the rounding of the JSON
            assert row["target_met"] == (row["overhead_ms"] <= 0.2), key


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_framework_that_is_not_installed_leaves_only_its_rows_unavailable(
    backend: Backend, table_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "claude_agent_sdk", None)  # as if the package were not installed

    run = measure_adapters("sqlite", backend.url, 1, prefix=table_prefix)

    problems = {row.spec.name: row.problem for row in run.rows}
    claude = {"claude_hooks", "claude_can_use_tool"}
    assert all((problems[name] or "").startswith("unavailable: ") for name in claude), problems
    assert all(problems[name] is None for name in ADAPTERS - claude), problems
    assert "claude_hooks" not in run.sessions
    assert re.search(r": met by \d of 6 rows: ", adapter_summary(run.rows))  # the unavailable rows are not judged


def test_the_bench_prints_the_table_and_summary_and_fails_only_on_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def canned(problem: str | None) -> Any:
        def run_adapters(backends: Any, **_: Any) -> list[AdapterRow]:
            measured = AdapterRow(SPECS[0], "sqlite", calls=30, bare_ms=1.0, governed_ms=1.05, overhead_ms=0.05)
            slow = AdapterRow(SPECS[6], "sqlite", calls=30, bare_ms=1.0, governed_ms=4.0, overhead_ms=1.5)
            return [measured, slow, AdapterRow(SPECS[2], "postgres", problem=problem)]

        return run_adapters

    monkeypatch.setattr(bench, "run_adapters", canned("unavailable: connection refused"))
    assert bench.main(["--quick", "--only", "adapters"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the table wraps long cells
    assert "Adapter overhead per tool call" in out and "unavailable:" in out and "connection refused" in out
    assert "met by 1 of 2 rows: SQLite tool_gate 0.050 ms met; SQLite langgraph 1.500 ms missed" in out

    monkeypatch.setattr(bench, "run_adapters", canned("error: call 3 of mcp_proxy failed: boom"))
    assert bench.main(["--quick", "--only", "adapters"]) == 1
