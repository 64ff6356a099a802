"""AsyncControlPlaneFacade: the same operations as the sync facade, awaited, on aiosqlite / asyncpg / psycopg."""

from __future__ import annotations

import asyncio
import inspect
from decimal import Decimal

import pytest

from agent_control_plane import (
    AsyncControlPlaneFacade,
    ControlPlaneFacade,
    DecisionCode,
    SessionNotFoundError,
)
from conftest import POLICY, Backend


def _public(cls: type) -> dict[str, object]:
    return {name: member for name, member in vars(cls).items() if not name.startswith("_")}


def test_async_facade_has_every_sync_method_with_the_same_signature() -> None:
    sync, asyn = _public(ControlPlaneFacade), _public(AsyncControlPlaneFacade)
    assert set(sync) == set(asyn)
    for name, member in sync.items():
        other = asyn[name]
        if isinstance(member, property):
            assert isinstance(other, property), name
            continue
        if isinstance(member, classmethod):
            assert isinstance(other, classmethod), name
            member, other = member.__func__, other.__func__  # type: ignore[attr-defined]
        mine, theirs = inspect.signature(member), inspect.signature(other)  # type: ignore[arg-type]
        if name == "token_budget_tracker":  # each facade hands out its own kind of tracker
            mine, theirs = mine.replace(return_annotation=None), theirs.replace(return_annotation=None)
        assert mine == theirs, name
        assert member.__doc__ == other.__doc__, name
        # Everything that touches the database is a coroutine; pure in-memory reads (and the tracker, an async
        # context manager) stay plain.
        if name not in ("event_buffer_stats", "set_policy", "token_budget_tracker") and not isinstance(
            vars(ControlPlaneFacade)[name], classmethod
        ):
            assert inspect.iscoroutinefunction(other), name


def test_async_facade_holds_no_storage_logic_of_its_own() -> None:
    import agent_control_plane.aio as aio

    source = inspect.getsource(aio)
    for forbidden in ("select(", "update(", "insert(", "execute(", "from agent_control_plane.store import"):
        assert forbidden not in source


def test_async_flow_matches_sync_results_on_the_same_database(backend: Backend, table_prefix: str) -> None:
    # aiosqlite on SQLite; asyncpg and psycopg (async mode) on PostgreSQL.
    urls = [backend.async_url] if backend.name == "sqlite" else [backend.async_url, backend.url]
    for number, url in enumerate(urls):
        _check_async_flow(backend.url, url, f"{table_prefix}{number}_")


def _check_async_flow(sync_url: str, url: str, table_prefix: str) -> None:
    async def scenario() -> str:
        async with AsyncControlPlaneFacade.from_database_url(url, policy=POLICY, table_prefix=table_prefix) as cp:
            await cp.setup()
            sid = await cp.open_session("async", max_cost=Decimal("0.3"))
            decisions = await asyncio.gather(*(cp.propose(sid, action="read_x", cost=Decimal("0.1")) for _ in range(5)))
            assert sum(d.allowed for d in decisions) == 3
            assert {d.code for d in decisions if not d.allowed} == {DecisionCode.COST_BUDGET_EXCEEDED}
            for d in decisions:
                if d.allowed:
                    await cp.settle(d.proposal_id, actual_cost=Decimal("0.05"))
            await cp.emit(sid, "progress", {"n": 1}, state_bearing=False)
            assert await cp.flush_events() == 1
            await cp.kill_agent("bot", reason="test", by="t")
            killed = await cp.propose(sid, action="read_x", agent_id="bot")
            assert killed.code is DecisionCode.KILLED
            with pytest.raises(SessionNotFoundError):
                await cp.propose("nope", action="read_x")
            assert (await cp.verify(sid)).ok
            return sid

    sid = asyncio.run(scenario())
    with ControlPlaneFacade.from_database_url(sync_url, table_prefix=table_prefix) as sync:
        assert sync.get_remaining_budget(sid)["spent_cost"] == Decimal("0.15")
        assert [e.kind for e in sync.replay(sid)].count("proposal.decided") == 6
        assert sync.verify(sid).ok


def test_the_async_tracker_mirrors_the_sync_tracker() -> None:
    from agent_control_plane import SyncTokenBudgetTracker, TokenBudgetTracker

    sync, asyn = _public(SyncTokenBudgetTracker), _public(TokenBudgetTracker)
    assert set(sync) == set(asyn)
    for name, member in sync.items():
        other = asyn[name]
        if isinstance(member, classmethod):  # from_session: the same parameters, each side's own session types
            assert list(inspect.signature(member.__func__).parameters) == list(
                inspect.signature(other.__func__).parameters  # type: ignore[attr-defined]
            )
            continue
        assert inspect.signature(member) == inspect.signature(other), name  # type: ignore[arg-type]
        assert member.__doc__ == other.__doc__ and member.__doc__, name
        assert inspect.iscoroutinefunction(other), name
