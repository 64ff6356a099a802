"""Evaluators: built-in regex and list checks, registered and discovered plug-ins, and the parallel runner."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent_control_plane import (
    ActionTier,
    AsyncControlPlaneFacade,
    ControlPlaneFacade,
    DecisionCode,
    EvaluatorRegistry,
    EvaluatorSpec,
    Facts,
    ParallelPolicyEvaluator,
    PolicyEngine,
    PolicyError,
    Verdict,
)
from conftest import Backend

GUARDED = {
    "default_tier": "always_approve",
    "actions": {"run_sql": "unrestricted", "send_email": "unrestricted", "deploy": "steer"},
    "evaluators": [
        {
            "name": "sql-guard",
            "type": "regex",
            "field": "args.query",
            "pattern": r"(?i)drop\s+table",
            "reason": "dropping tables is never allowed",
        },
        {
            "name": "blocked-domains",
            "type": "list",
            "field": "args.to",
            "values": ["@evil.com", "@spam.org"],
            "match": "suffix",
        },
        {
            "name": "big-spend",
            "type": "list",
            "field": "args.approved_by",
            "values": ["cfo"],
            "when_listed": False,
            "tier": "always_approve",
            "reason": "spending needs the CFO's name on it",
        },
    ],
}


def test_regex_evaluator_blocks_through_propose_and_is_in_the_trace(cp: ControlPlaneFacade) -> None:
    sid = cp.open_session("sql", policy=GUARDED)
    d = cp.propose(sid, action="run_sql", args={"query": "DROP TABLE users", "approved_by": "cfo"})
    assert not d.allowed and d.code is DecisionCode.POLICY_BLOCKED and d.rule == "sql-guard"
    assert "dropping tables is never allowed" in d.reason
    assert [(s.step, s.name, s.matched) for s in d.trace] == [
        ("actions", "run_sql", True),
        ("evaluator", "sql-guard", True),
    ]  # the first deny stopped the remaining evaluators
    ok = cp.propose(sid, action="run_sql", args={"query": "select 1", "approved_by": "cfo"})
    assert ok.allowed and [s.name for s in ok.trace if s.step == "evaluator"] == [
        "sql-guard",
        "blocked-domains",
        "big-spend",
    ]


def test_list_evaluator_denies_recipients_on_a_domain_list() -> None:
    engine = PolicyEngine(GUARDED)
    blocked = engine.decide(Facts("send_email", {"to": "mallory@evil.com", "approved_by": "cfo"}))
    assert blocked.tier is ActionTier.BLOCKED and blocked.rule == "blocked-domains"
    assert "args.to is on the blocked-domains list" in blocked.describe("send_email")
    listed = engine.decide(Facts("send_email", {"to": ["ok@corp.com", "x@spam.org"], "approved_by": "cfo"}))
    assert listed.tier is ActionTier.BLOCKED
    assert (
        engine.decide(Facts("send_email", {"to": "bob@corp.com", "approved_by": "cfo"})).tier is ActionTier.UNRESTRICTED
    )


def test_most_severe_of_rule_and_evaluators_wins() -> None:
    engine = PolicyEngine(GUARDED)
    # An allow-list evaluator (when_listed: false) asks for approval when the field is missing or not listed.
    needs_cfo = engine.decide(Facts("send_email", {"to": "bob@corp.com"}))
    assert needs_cfo.tier is ActionTier.ALWAYS_APPROVE and needs_cfo.step == "evaluator"
    assert needs_cfo.trace[0].name == "send_email"  # what the actions map had chosen stays in the trace
    # steer (from actions) beats approval (from an evaluator): deny > steer > approval > allow.
    assert engine.decide(Facts("deploy", {})).tier is ActionTier.STEER


class _Shouting:
    name = "shouting"

    def __init__(self, spec: EvaluatorSpec) -> None:
        self.name = spec.name
        self.limit = int(spec.config.get("max_capitals", 3))

    def evaluate(self, facts: Facts) -> Verdict:
        text = str(facts.args.get("text", ""))
        if sum(ch.isupper() for ch in text) > self.limit:
            return Verdict(self.name, ActionTier.STEER, "write it again without shouting")
        return Verdict(self.name)


SHOUTY = {
    "actions": {"post": "unrestricted"},
    "evaluators": [{"name": "tone", "type": "shouting", "config": {"max_capitals": 2}}],
}


def test_custom_evaluator_registered_on_one_control_plane_only(backend: Backend, table_prefix: str) -> None:
    registry = EvaluatorRegistry(discover=False)
    registry.register("shouting", _Shouting)
    with ControlPlaneFacade.from_database_url(
        backend.url, policy=SHOUTY, table_prefix=table_prefix, evaluators=registry
    ) as cp:
        cp.setup()
        sid = cp.open_session("posts")
        d = cp.propose(sid, action="post", args={"text": "HELLO"})
        assert d.code is DecisionCode.STEERED and d.steering is not None
        assert d.steering.guidance == "write it again without shouting"
        assert cp.propose(sid, action="post", args={"text": "Hello"}).allowed
    with pytest.raises(PolicyError, match="unknown type 'shouting'"):
        ControlPlaneFacade.from_database_url(backend.url, policy=SHOUTY, evaluators=EvaluatorRegistry(discover=False))


@pytest.fixture
def installed_plugin(tmp_path: Path) -> Iterator[str]:
    """A tiny distribution, installed into a folder on sys.path, that declares an evaluator entry point."""
    module = tmp_path / "acp_tiny_plugin.py"
    module.write_text(
        textwrap.dedent("""
        from agent_control_plane import Verdict, ActionTier

        class NoFridays:
            def __init__(self, spec):
                self.name = spec.name

            def evaluate(self, facts):
                if facts.now.weekday() == 4:
                    return Verdict(self.name, ActionTier.BLOCKED, "no deploys on Fridays")
                return Verdict(self.name)
    """)
    )
    info = tmp_path / "acp_tiny_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acp-tiny-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[agent_control_plane.evaluators]\nno-fridays = acp_tiny_plugin:NoFridays\n")
    sys.path.insert(0, str(tmp_path))
    try:
        yield "no-fridays"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("acp_tiny_plugin", None)


def test_evaluator_from_an_installed_distribution_is_discovered(installed_plugin: str) -> None:
    registry = EvaluatorRegistry()
    assert installed_plugin in registry.types
    engine = PolicyEngine(
        {"actions": {"deploy": "unrestricted"}, "evaluators": [{"name": "calendar", "type": installed_plugin}]},
        registry=registry,
    )
    friday = engine.decide(Facts("deploy", now=datetime(2026, 11, 27, 15, tzinfo=UTC)))
    assert friday.tier is ActionTier.BLOCKED and friday.reason == "no deploys on Fridays"
    assert engine.decide(Facts("deploy", now=datetime(2026, 11, 26, tzinfo=UTC))).tier is ActionTier.UNRESTRICTED


class _RemoteScreen:
    """An asynchronous evaluator standing in for a remote service (it sleeps instead of calling out)."""

    def __init__(self, spec: EvaluatorSpec) -> None:
        self.name = spec.name
        self.delay = float(spec.config.get("delay", 0.01))

    async def evaluate(self, facts: Facts) -> Verdict:
        await asyncio.sleep(self.delay)
        if "fraud" in str(facts.args.get("note", "")):
            return Verdict(self.name, ActionTier.BLOCKED, "the screening service flagged this payment")
        return Verdict(self.name)


SCREENED = {
    "actions": {"pay": "unrestricted"},
    "evaluators": [
        {"name": "screen", "type": "remote-screen", "config": {"delay": 0.01}},
        {"name": "slow-screen", "type": "remote-screen", "config": {"delay": 5}, "timeout": 0.2},
    ],
}


def _screening_registry() -> EvaluatorRegistry:
    registry = EvaluatorRegistry(discover=False)
    registry.register("remote-screen", _RemoteScreen)
    return registry


def test_asynchronous_evaluators_are_awaited_before_the_transaction(backend: Backend, table_prefix: str) -> None:
    policy = {**SCREENED, "evaluators": SCREENED["evaluators"][:1]}
    with ControlPlaneFacade.from_database_url(
        backend.url, policy=policy, table_prefix=table_prefix, evaluators=_screening_registry()
    ) as cp:
        cp.setup()
        sid = cp.open_session("payments")
        flagged = cp.propose(sid, action="pay", args={"note": "fraud ring"})
        assert flagged.code is DecisionCode.POLICY_BLOCKED and flagged.rule == "screen"
        assert cp.propose(sid, action="pay", args={"note": "rent"}).allowed

    async def from_async_code() -> None:
        async with AsyncControlPlaneFacade.from_database_url(
            backend.async_url, policy=policy, table_prefix=table_prefix, evaluators=_screening_registry()
        ) as acp:
            sid2 = await acp.open_session("async payments")
            assert not (await acp.propose(sid2, action="pay", args={"note": "fraud"})).allowed
            # The sync facade still works when called from inside a running event loop.
            with ControlPlaneFacade.from_database_url(
                backend.url, table_prefix=table_prefix, evaluators=_screening_registry()
            ) as sync_cp:
                assert not sync_cp.propose(sid2, action="pay", args={"note": "fraud"}).allowed

    asyncio.run(from_async_code())


def test_a_slow_asynchronous_evaluator_times_out_as_deny(backend: Backend, table_prefix: str) -> None:
    with ControlPlaneFacade.from_database_url(
        backend.url, policy=SCREENED, table_prefix=table_prefix, evaluators=_screening_registry()
    ) as cp:
        cp.setup()
        sid = cp.open_session("slow")
        started = time.perf_counter()
        d = cp.propose(sid, action="pay", args={"note": "rent"})
        assert time.perf_counter() - started < 2
        assert d.code is DecisionCode.POLICY_BLOCKED and "timed out after 0.2s (fail closed)" in d.reason


class _Async:
    def __init__(self, name: str, delay: float, verdict: ActionTier | None = None, fail: bool = False) -> None:
        self.name, self.delay, self.verdict, self.fail = name, delay, verdict, fail
        self.finished = False

    async def evaluate(self, facts: Facts) -> Verdict:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("lookup service returned 500")
        self.finished = True
        return Verdict(self.name, self.verdict, "objection" if self.verdict else None)


def test_parallel_evaluator_runs_concurrently_and_cancels_on_the_first_deny() -> None:
    slow = _Async("slow", 2.0)
    quick_deny = _Async("deny", 0.05, ActionTier.BLOCKED)
    fine = _Async("fine", 0.01)
    runner = ParallelPolicyEvaluator([slow, quick_deny, fine], default_timeout=5)
    started = time.perf_counter()
    verdicts = asyncio.run(runner.evaluate(Facts("x")))
    assert time.perf_counter() - started < 1.0
    assert [v.evaluator for v in verdicts] == ["fine", "deny"]
    assert not slow.finished


def test_parallel_evaluator_treats_errors_and_timeouts_as_deny() -> None:
    runner = ParallelPolicyEvaluator(
        [_Async("broken", 0.01, fail=True), _Async("sleepy", 1.0)], timeouts={"sleepy": 0.05}, default_timeout=5
    )
    verdicts = asyncio.run(runner.evaluate(Facts("x")))
    assert verdicts[0].tier is ActionTier.BLOCKED
    assert "RuntimeError: lookup service returned 500 (fail closed)" in (verdicts[0].reason or "")
    sleepy = asyncio.run(ParallelPolicyEvaluator([_Async("sleepy", 1.0)], default_timeout=0.05).evaluate(Facts("x")))
    assert sleepy[0].tier is ActionTier.BLOCKED and "timed out after 0.05s" in (sleepy[0].reason or "")


class _Broken:
    """A synchronous evaluator whose check crashes (or, with `answer`, returns something that is not a Verdict)."""

    def __init__(self, spec: EvaluatorSpec) -> None:
        self.name = spec.name
        self.answer = spec.config.get("answer")

    def evaluate(self, facts: Facts) -> Verdict:
        if self.answer is not None:
            return self.answer  # type: ignore[no-any-return]
        raise RuntimeError("scanner model not loaded")


BROKEN = {
    "actions": {"post": "unrestricted"},
    "evaluators": [{"name": "tone", "type": "shouting"}, {"name": "pii", "type": "broken"}],
}


def _broken_registry() -> EvaluatorRegistry:
    registry = EvaluatorRegistry(discover=False)
    registry.register("shouting", _Shouting)
    registry.register("broken", _Broken)
    return registry


def test_a_synchronous_evaluator_that_raises_blocks_the_proposal(backend: Backend, table_prefix: str) -> None:
    reason = "evaluator 'pii' failed: RuntimeError: scanner model not loaded (fail closed)"
    choice = PolicyEngine(BROKEN, registry=_broken_registry()).decide(Facts("post", {"text": "hi"}))
    assert (choice.tier, choice.rule, choice.step, choice.reason) == (ActionTier.BLOCKED, "pii", "evaluator", reason)
    with ControlPlaneFacade.from_database_url(
        backend.url, policy=BROKEN, table_prefix=table_prefix, evaluators=_broken_registry()
    ) as cp:
        cp.setup()
        sid = cp.open_session("posts")
        d = cp.propose(sid, action="post", args={"text": "hi"})
        assert not d.allowed and d.code is DecisionCode.POLICY_BLOCKED and d.rule == "pii"
        assert reason in d.reason
        assert [(s.name, s.matched) for s in d.trace if s.step == "evaluator"] == [("tone", False), ("pii", True)]
        assert cp.get_remaining_budget(sid)["action_count"] == 0  # nothing was reserved for it


def test_a_synchronous_evaluator_that_answers_no_verdict_blocks_the_proposal() -> None:
    policy = {**BROKEN, "evaluators": [{"name": "pii", "type": "broken", "config": {"answer": "looks fine"}}]}
    choice = PolicyEngine(policy, registry=_broken_registry()).decide(Facts("post", {"text": "hi"}))
    assert choice.tier is ActionTier.BLOCKED
    assert choice.reason == "evaluator 'pii' returned str, not a Verdict (fail closed)"


def test_bad_evaluator_specs_are_refused_with_reasons() -> None:
    for spec, message in [
        ({"name": "r", "type": "regex", "field": "args.q"}, "needs a pattern"),
        ({"name": "r", "type": "regex", "field": "args.q", "pattern": "("}, "invalid regular expression"),
        ({"name": "l", "type": "list", "field": "args.to", "values": []}, "non-empty values"),
        ({"name": "l", "type": "list", "values": ["a"]}, "needs a field"),
        ({"name": "x", "type": "nope"}, "unknown type 'nope'"),
    ]:
        with pytest.raises(PolicyError, match=message):
            PolicyEngine({"evaluators": [spec]})
