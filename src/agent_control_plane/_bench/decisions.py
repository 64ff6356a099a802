"""Decision latency: microseconds per `PolicyEngine.decide` for generated 20- and 200-rule policies, against Cedar.

The policies are built programmatically from action families, services and teams: each rule is a condition tree
(all / any / not over action eq / in, resource glob, args.<path> comparisons, exists and cost thresholds) leading to a
tier. A proposal mix is built for each policy so that a typical proposal is tried against most rules before one
applies: a few match early rules, most match late ones, and some fall through to `actions` or the default tier.

The reference is the same 20 rules written as Cedar policies and evaluated with cedarpy, whose parsed `PolicySet`
and `Entities` handles are built once. Cedar has no rule order (a forbid beats any permit), so the translation keeps
first-match-wins by giving each forbid an `unless` over the earlier permit rules that could apply to the same
actions; `actions` becomes one permit over the action names (of the proposals and rules) whose tier executes. Our
allow is a tier that executes without a human (`ActionTier.executes`), Cedar's is `Decision.Allow`; the bench
checks that both agree on every proposal of the mix before timing anything.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich.table import Table

from agent_control_plane._bench.cedar import CedarReference, disagreements
from agent_control_plane.policy.conditions import Facts
from agent_control_plane.policy.engine import PolicyEngine

if TYPE_CHECKING:
    pass

TARGET_P50_US = {20: 20.0, 200: 60.0}
TARGET_CEDAR_RATIO = 0.15
ITERATIONS = 50_000
QUICK_ITERATIONS = 2_000

FAMILIES = (
    ("run_sql", "query_db"),
    ("deploy", "rollback"),
    ("send_email", "send_sms"),
    ("http_request", "call_webhook"),
    ("write_file", "delete_file"),
    ("create_ticket", "close_ticket"),
    ("transfer_funds", "refund_payment"),
    ("scale_service", "restart_service"),
    ("rotate_key", "grant_access"),
)
ACTIONS = {
    "read_*": "unrestricted",
    "search_*": "unrestricted",
    "delete_*": "blocked",
    "query_db": "auto_approve",
    "create_ticket": "unrestricted",
    "send_sms": "auto_approve",
    "run_sql": "always_approve",
    "deploy": "always_approve",
    "transfer_funds": "blocked",
}
FALL_THROUGH = ("read_logs", "search_docs", "query_db", "create_ticket", "run_sql", "delete_file")
UNKNOWN = ("launch_rocket", "format_disk")
RULE_POSITIONS = (0.0, 0.3, 0.55, 0.7, 0.8, 0.88, 0.94, 1.0)
"""Where in the rule list the rules that decide the proposal mix sit: one first, the rest spread towards the end."""
NOBODY = {"team": "team-none", "rows": 10, "mode": "append"}


# policies and proposals -------------------------------------------------------------------------------------
def _field(name: str, op: str, value: Any) -> dict[str, Any]:
    return {"field": name, op: value}


def generated_rule(k: int) -> tuple[dict[str, Any], Facts]:
    """Rule number `k` (0-based) and a proposal it applies to; services and teams are the rule's own."""
    first, second = FAMILIES[k % len(FAMILIES)]
    service, team, name = f"svc{k:03d}", f"team{k:03d}", f"rule-{k:03d}"
    if k % 10 == 9:
        when = {
            "all": [
                _field("cost", "gt", 500 + k),
                {"any": [_field("args.team", "eq", team), _field("resource", "glob", f"prod/{service}/*")]},
            ]
        }
        rule = {"name": name, "when": when, "tier": "always_approve", "reason": "large spend needs a human"}
        return rule, Facts("transfer_funds", {"team": team}, f"eu/{service}/ledger", cost=Decimal(600 + k))
    kind = k % 5
    if kind == 0:
        destructive = {"any": [_field("args.mode", "eq", "destructive"), _field("args.rows", "gt", 10_000)]}
        when = {
            "all": [
                _field("action", "in", [first, second]),
                _field("resource", "glob", f"prod/{service}/*"),
                destructive,
            ]
        }
        rule = {"name": name, "when": when, "tier": "blocked", "reason": "destructive change in production"}
        args: dict[str, Any] = {"mode": "append", "rows": 50_000, "team": team}
        return rule, Facts(first, args, f"prod/{service}/db", cost=Decimal("0.5"))
    if kind == 1:
        limit = 10 + k % 50
        when = {"all": [_field("action", "eq", first), _field("cost", "gt", limit), _field("args.team", "eq", team)]}
        rule = {"name": name, "when": when, "tier": "always_approve", "reason": "over the team's spend limit"}
        return rule, Facts(first, {"team": team}, f"prod/{service}/api", cost=Decimal(limit + 10))
    if kind == 2:
        when = {
            "all": [
                _field("action", "in", [first, second]),
                _field("resource", "glob", f"*/{service}/*"),
                {"not": _field("args.dry_run", "eq", True)},
            ]
        }
        rule = {
            "name": name,
            "when": when,
            "tier": "steer",
            "guidance": "run it with dry_run first",
            "alternatives": [first],
        }
        return rule, Facts(second, {"dry_run": False, "team": "team-none"}, f"eu/{service}/x", cost=Decimal(2))
    if kind == 3:
        when = {
            "all": [
                _field("action", "eq", second),
                _field("resource", "glob", f"staging/{service}/*"),
                _field("cost", "lte", 5),
            ]
        }
        rule = {"name": name, "when": when, "tier": "auto_approve"}
        return rule, Facts(second, {}, f"staging/{service}/app", cost=Decimal(3))
    limits = _field("args.limits.max_rows", "lte", 500)
    when = {
        "all": [
            _field("action", "in", [first, second]),
            _field("args.team", "in", [team, f"{team}-oncall"]),
            limits,
            _field("args.ticket", "exists", True),
        ]
    }
    rule = {"name": name, "when": when, "tier": "unrestricted"}
    args = {"team": f"{team}-oncall", "limits": {"max_rows": 100}, "ticket": "T-1"}
    return rule, Facts(first, args, f"dev/{service}/x", cost=Decimal(1))


@dataclass(frozen=True, slots=True)
class Workload:
    """A generated policy and the mix of proposals it is measured on."""

    rules: int
    policy: dict[str, Any]
    proposals: tuple[Facts, ...]


def workload(rules: int) -> Workload:
    """A policy of `rules` rules, and 16 proposals: 8 decided by rules at `RULE_POSITIONS` of the list, 6 that
    fall through to `actions`, 2 unknown actions that get the default tier."""
    generated = [generated_rule(k) for k in range(rules)]
    targets = dict.fromkeys(round(share * (rules - 1)) for share in RULE_POSITIONS)
    proposals = [generated[k][1] for k in targets]
    for n, action in enumerate((*FALL_THROUGH, *UNKNOWN)):
        proposals.append(Facts(action, dict(NOBODY), f"prod/none/{n}", cost=Decimal("0.25")))
    policy = {"default_tier": "always_approve", "actions": dict(ACTIONS), "rules": [rule for rule, _ in generated]}
    return Workload(rules, policy, tuple(proposals))


# measuring --------------------------------------------------------------------------------------------------
def _latencies_us(call: Callable[[Any], object], inputs: Sequence[Any], iterations: int, per_call: int) -> list[float]:
    """Microseconds per decision of `iterations` timed calls cycling through `inputs`, after a warm-up."""
    for item in list(inputs) * 20:
        call(item)
    gc.collect()
    clock, count = time.perf_counter_ns, len(inputs)
    samples = [0] * iterations
    for i in range(iterations):
        item = inputs[i % count]
        started = clock()
        call(item)
        samples[i] = clock() - started
    return [ns / 1000 / per_call for ns in samples for _ in range(per_call)]


@dataclass(slots=True)
class DecisionRow:
    """One line of the decision-latency table: an evaluator on a policy, over the workload's proposal mix."""

    name: str
    policy: str
    evaluator: str
    target: str = ""
    iterations: int = 0
    p50_us: float = 0.0
    p99_us: float = 0.0
    decisions_per_s: float = 0.0
    rules_tried: float | None = None
    ours_over_cedar: float | None = None
    target_met: bool | None = None
    problem: str | None = None

    def measure(self, call: Callable[[Any], object], inputs: Sequence[Any], iterations: int, per_call: int = 1) -> None:
        self.record(_latencies_us(call, inputs, iterations, per_call))

    def record(self, latencies_us: Sequence[float]) -> None:
        samples = sorted(latencies_us)
        self.iterations = len(samples)
        self.p50_us = statistics.median(samples)
        self.p99_us = samples[min(len(samples) - 1, int(0.99 * len(samples)))]
        self.decisions_per_s = 1e6 / max(statistics.fmean(samples), 1e-3)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "policy": self.policy, "evaluator": self.evaluator}
        out["status"] = self.problem or "ok"
        if self.problem is None:
            out |= {
                "iterations": self.iterations,
                "p50_us": round(self.p50_us, 3),
                "p99_us": round(self.p99_us, 3),
                "decisions_per_s": round(self.decisions_per_s, 1),
                "mean_rules_tried": None if self.rules_tried is None else round(self.rules_tried, 2),
                "ours_over_cedar": None if self.ours_over_cedar is None else round(self.ours_over_cedar, 4),
            }
        return out | {"target": self.target or None, "target_met": self.target_met}


def _ours(work: Workload, iterations: int) -> DecisionRow:
    target = TARGET_P50_US[work.rules]
    row = DecisionRow(f"ours_{work.rules}_rules", f"{work.rules} rules", "PolicyEngine.decide", f"p50 ≤ {target:g} µs")
    engine = PolicyEngine(work.policy)
    row.measure(engine.decide, work.proposals, iterations)
    row.rules_tried = statistics.fmean(len(engine.decide(facts).rules_tried) for facts in work.proposals)
    row.target_met = row.p50_us <= target
    return row


def _cedar(work: Workload, iterations: int, ours: DecisionRow) -> list[DecisionRow]:
    per_call = DecisionRow(
        f"cedar_{work.rules}_rules",
        f"{work.rules} rules as Cedar",
        "cedarpy is_authorized",
        f"ours/cedar ≤ {TARGET_CEDAR_RATIO:g}",
    )
    batch = DecisionRow(
        f"cedar_{work.rules}_rules_batch",
        f"{work.rules} rules as Cedar",
        f"cedarpy is_authorized_batch, {len(work.proposals)} per call",
    )
    core = DecisionRow(
        f"cedar_{work.rules}_rules_core",
        f"{work.rules} rules as Cedar",
        "Cedar authorizer (own metric)",
    )
    rows = [per_call, batch, core]
    try:
        engine = PolicyEngine(work.policy)
        cedar = CedarReference.build(engine, work.proposals)
        differ = disagreements(engine, cedar, work.proposals)
    except ImportError:
        for row in rows:
            row.problem = "unavailable: cedarpy is not installed (pip install cedarpy)"
        return rows
    except Exception as exc:
        for row in rows:
            row.problem = f"error: {exc}"
        return rows
    if differ:
        for row in rows:
            row.problem = f"error: Cedar and ours disagree on {len(differ)} proposal(s), e.g. {differ[0]}"
        return rows
    per_call.measure(cedar.decide, cedar.requests, iterations)
    requests = list(cedar.requests)
    batch.measure(cedar.decide_batch, [requests], max(1, iterations // len(requests)), per_call=len(requests))
    # What the Rust authorizer reports for itself (whole µs): Cedar's time without the Python binding around it.
    core.record(
        [float(cedar.decide(requests[i % len(requests)]).metrics["authz_duration_micros"]) for i in range(iterations)]
    )
    for row in rows:
        row.ours_over_cedar = ours.p50_us / row.p50_us
    per_call.target_met = per_call.ours_over_cedar is not None and per_call.ours_over_cedar <= TARGET_CEDAR_RATIO
    return rows


def run_decisions(*, iterations: int) -> list[DecisionRow]:
    """Measure our engine on the 20- and 200-rule workloads and Cedar on the 20-rule one."""
    small, large = workload(20), workload(200)
    ours_small = _ours(small, iterations)
    return [ours_small, *_cedar(small, iterations, ours_small), _ours(large, iterations)]


# output -----------------------------------------------------------------------------------------------------
def _cedarpy_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"cedarpy {version('cedarpy')}"
    except PackageNotFoundError:
        return "cedarpy"


def decision_table(rows: Sequence[DecisionRow]) -> Table:
    """The decision-latency table, with each target next to its measurement."""
    iterations = max((row.iterations for row in rows), default=0)
    table = Table(
        title="Decision latency (PolicyEngine.decide, pure, per decision)",
        caption=(
            f"{iterations:,} timed decisions per row (time.perf_counter_ns around each call) cycling through 16 "
            "proposals: 8 decided by rules (the first, and 7 from 30 % to 100 % of the list), 6 by actions, 2 by the "
            f"default tier. Cedar: the same 20 rules via {_cedarpy_version()}, PolicySet and Entities parsed once, "
            "context passed as JSON text; the batch row times one is_authorized_batch call for all 16 proposals, "
            "divided by 16; the authorizer row is Cedar's own authz_duration_micros metric (1 µs resolution), "
            "its time without the Python binding. ours/cedar = our 20-rule p50 / that row's p50."
        ),
    )
    for name, justify in (
        ("policy", "left"),
        ("evaluator", "left"),
        ("p50 µs", "right"),
        ("p99 µs", "right"),
        ("decisions/s", "right"),
        ("rules tried", "right"),
        ("ours/cedar", "right"),
        ("target", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        if row.problem is not None:
            table.add_row(row.policy, row.evaluator, f"[yellow]{row.problem}[/]", "", "", "", "", row.target)
            continue
        mark = "" if row.target_met is None else (" [green]met[/]" if row.target_met else " [red]missed[/]")
        table.add_row(
            row.policy,
            row.evaluator,
            f"{row.p50_us:.2f}",
            f"{row.p99_us:.2f}",
            f"{row.decisions_per_s:,.0f}",
            "" if row.rules_tried is None else f"{row.rules_tried:.1f}",
            "" if row.ours_over_cedar is None else f"{row.ours_over_cedar:.3f}",
            f"{row.target}{mark}" if row.target else "",
        )
    return table


def decision_summary(rows: Sequence[DecisionRow]) -> str:
    """One line: every target and whether it was met."""
    judged = [row for row in rows if row.target and row.problem is None]
    if not judged:
        return "decision latency: nothing was measured"
    parts = [f"{row.policy} {row.target}: {'met' if row.target_met else 'missed'}" for row in judged]
    return "decision latency: " + "; ".join(parts)
