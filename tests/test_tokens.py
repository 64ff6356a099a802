"""Token budgets: identity-scoped caps per calendar window, the usage ledger, reservations, and run-time changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from agent_control_plane import (
    BudgetPeriod,
    ControlPlaneError,
    ControlPlaneFacade,
    ControlPlaneSetup,
    IdentityContext,
    InvalidInputError,
    ManualClock,
    ModelId,
    NotFoundError,
    OrgId,
    SessionNotFoundError,
    TeamId,
    TokenBudgetConfig,
    TokenBudgetExhaustedError,
    TokenUsage,
    UserId,
)
from conftest import Backend

ACME = IdentityContext(org_id=OrgId("tenant-acme"))
ALICE = IdentityContext(org_id=OrgId("tenant-acme"), team_id=TeamId("research"), user_id=UserId("alice"))
BOB = IdentityContext(org_id=OrgId("tenant-acme"), team_id=TeamId("sales"), user_id=UserId("bob"))
GLOBEX = IdentityContext(org_id=OrgId("globex"))
HAIKU = ModelId("claude-haiku-4-5")


def usage(tokens_in: int = 1000, tokens_out: int = 500, cost: Any = "0.01", model: str = HAIKU) -> TokenUsage:
    return TokenUsage(
        model_id=ModelId(model), input_tokens=tokens_in, output_tokens=tokens_out, estimated_cost_usd=cost
    )


def plane(backend: Backend, table_prefix: str, clock: ManualClock, *configs: TokenBudgetConfig) -> ControlPlaneFacade:
    return ControlPlaneSetup(
        backend.url, token_budget_configs=list(configs), clock=clock, table_prefix=table_prefix
    ).build()


def ledger(cp: ControlPlaneFacade) -> tuple[int, int, Decimal]:
    u = cp.registry.token_usage
    with cp.engine.connect() as conn:
        count, tokens, cost = conn.execute(select(func.count(), func.sum(u.c.total_tokens), func.sum(u.c.cost))).one()
    return int(count), int(tokens or 0), cost or Decimal(0)


# values -----------------------------------------------------------------------------------------------------
def test_token_usage_takes_floats_as_written_and_fills_in_the_total() -> None:
    u = TokenUsage(model_id=HAIKU, input_tokens=1234, output_tokens=567, estimated_cost_usd=0.0042)
    assert u.total_tokens == 1801
    assert u.estimated_cost_usd == Decimal("0.0042")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_tokens": -1}, "input_tokens must not be negative"),
        ({"output_tokens": 1.5}, "output_tokens must be a whole number"),
        ({"total_tokens": 10}, "total_tokens 10 is not input_tokens \\+ output_tokens"),
        ({"estimated_cost_usd": float("nan")}, "estimated_cost_usd must be a finite number"),
        ({"estimated_cost_usd": float("inf")}, "estimated_cost_usd must be a finite number"),
        ({"estimated_cost_usd": "-0.1"}, "estimated_cost_usd must not be negative"),
        ({"model_id": ""}, "model_id must be non-empty"),
    ],
)
def test_bad_token_usage_is_refused_with_the_field_named(kwargs: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"model_id": HAIKU, "input_tokens": 1, "output_tokens": 2, **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        TokenUsage(**values)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"period": "hourly"}, "period 'hourly' is not one of daily, weekly, monthly, unlimited"),
        ({"max_tokens": -5}, "max_tokens must not be negative"),
        ({"max_cost_usd": "lots"}, "max_cost_usd is not a number"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"allowed_models": "claude-*"}, "allowed_models must be a list"),
        ({"identity": "tenant-acme"}, "identity must be an IdentityContext"),
    ],
)
def test_bad_budget_configs_are_refused(kwargs: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"identity": ACME, **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        TokenBudgetConfig(**values)


def test_a_bad_config_stops_the_setup_before_the_database_is_touched(tmp_path: Any) -> None:
    db = tmp_path / "never.db"
    config = TokenBudgetConfig(ACME, "daily", max_tokens=10)
    with pytest.raises(InvalidInputError, match="two daily budgets for org tenant-acme"):
        ControlPlaneSetup(f"sqlite:///{db}", token_budget_configs=[config, config])
    assert not db.exists()


# the readme flow ------------------------------------------------------------------------------------------
def test_readme_flow_records_usage_without_a_session(backend: Backend, table_prefix: str) -> None:
    async def scenario() -> None:
        config = TokenBudgetConfig(ACME, BudgetPeriod.DAILY, max_cost_usd=Decimal("1"))
        cp = ControlPlaneSetup(
            backend.async_url, token_budget_configs=[config], table_prefix=table_prefix
        ).build_async()
        async with cp.token_budget_tracker() as tracker:
            identity = IdentityContext(org_id=OrgId("tenant-acme"))
            u = TokenUsage(model_id=HAIKU, input_tokens=1234, output_tokens=567, total_tokens=1801,
                           estimated_cost_usd=0.0042)  # fmt: skip
            await tracker.record_usage(None, identity, u)
        async with cp.token_budget_tracker() as tracker:
            (state,) = await tracker.get_budget_states(identity)
            summary = await tracker.usage_summary(identity, "daily")
        assert (state.tokens_used, state.cost_used_usd, state.remaining_cost_usd) == (
            1801,
            Decimal("0.0042"),
            Decimal("0.9958"),
        )
        assert summary.calls == 1 and summary.by_model[HAIKU].cost_usd == Decimal("0.0042")
        await cp.close()

    asyncio.run(scenario())


# matching ---------------------------------------------------------------------------------------------------
def test_an_org_budget_covers_every_team_and_user_and_all_covering_budgets_must_have_room(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    cp = plane(
        backend,
        table_prefix,
        clock,
        TokenBudgetConfig(ACME, "daily", max_tokens=10_000),
        TokenBudgetConfig(IdentityContext(user_id=UserId("alice")), "daily", max_tokens=2_000),
        TokenBudgetConfig(GLOBEX, "daily", max_tokens=100),
    )
    with cp.token_budget_tracker() as t:
        t.record_usage(None, ALICE, usage(1000, 500))
        t.record_usage(None, BOB, usage(3000, 0))
        alice = {s.config.identity.describe(): s.tokens_used for s in t.get_budget_states(ALICE)}
        bob = {s.config.identity.describe(): s.tokens_used for s in t.get_budget_states(BOB)}
        assert alice == {"org tenant-acme": 4500, "user alice": 1500}
        assert bob == {"org tenant-acme": 4500}
        # Alice's own budget has 500 tokens left, though the org has 5500: the tightest covering budget decides.
        check = t.check_budget(ALICE, estimated_tokens=600)
        assert (
            not check.allowed and "user alice" in check.reason and "600 tokens requested, 500 of 2000" in check.reason
        )
        assert t.check_budget(BOB, estimated_tokens=600).allowed
        assert t.check_budget(GLOBEX, estimated_tokens=100).allowed
        assert t.check_budget(IdentityContext(org_id=OrgId("nobody")), estimated_tokens=10**9).allowed
    cp.close()


# exhaustion -------------------------------------------------------------------------------------------------
def test_usage_past_the_cap_is_in_the_ledger_and_then_raises_with_the_states(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    cp = plane(backend, table_prefix, clock, TokenBudgetConfig(ACME, "daily", max_cost_usd=Decimal("0.025")))
    sid = cp.open_session("chat")
    with cp.token_budget_tracker() as t:
        t.record_usage(sid, ALICE, usage(cost="0.01"))
        t.record_usage(sid, ALICE, usage(cost="0.01"))
    tracker = cp.token_budget_tracker()
    # The error leaves the tracker's block, which still commits: that usage was billed.
    with pytest.raises(TokenBudgetExhaustedError) as raised, tracker:
        tracker.record_usage(sid, ALICE, usage(cost="0.01"))
    error = raised.value
    assert "was recorded" in str(error) and "$0.03 of $0.025 used" in str(error)
    assert [s.over for s in error.states] == [True] and error.over == error.states
    # The over-budget call landed: the ledger equals the provider's bill, and its event is in the session log.
    assert ledger(cp) == (3, 4500, Decimal("0.03"))
    kinds = [e.kind for e in cp.replay(sid)]
    assert kinds.count("token_usage.recorded") == 3
    assert cp.replay(sid)[-1].payload["over_budget"] == [error.states[0].budget_id]
    assert cp.verify(sid).ok
    with cp.token_budget_tracker() as t:
        refused = t.check_budget(ALICE)
        assert not refused.allowed and "$0 of $0.025 left" in refused.reason
    cp.close()


def test_over_budget_usage_caught_inside_the_block_survives_a_later_rollback(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    cp = plane(backend, table_prefix, clock, TokenBudgetConfig(ACME, "daily", max_tokens=1000))

    def host() -> None:
        with cp.token_budget_tracker() as t:
            with pytest.raises(TokenBudgetExhaustedError):
                t.record_usage(None, ALICE, usage(1000, 500))  # billed: it must stay in the ledger
            t.record_usage(None, GLOBEX, usage(10, 10))  # after the error, in a transaction of its own
            raise RuntimeError("an unrelated failure later in the block")

    with pytest.raises(RuntimeError, match="unrelated"):
        host()
    assert ledger(cp)[:2] == (1, 1500)
    cp.close()


def test_an_exception_inside_the_tracker_rolls_back_what_it_wrote(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    cp = plane(backend, table_prefix, clock, TokenBudgetConfig(ACME, "daily", max_tokens=10_000))

    def fail_after_recording() -> None:
        with cp.token_budget_tracker() as t:
            t.record_usage(None, ALICE, usage())
            raise RuntimeError("the host failed after recording")

    with pytest.raises(RuntimeError, match="the host failed"):
        fail_after_recording()
    assert ledger(cp) == (0, 0, Decimal(0))
    with cp.token_budget_tracker() as t:
        assert t.get_budget_states(ACME)[0].tokens_used == 0
    cp.close()


def test_an_unknown_session_records_nothing(backend: Backend, table_prefix: str, clock: ManualClock) -> None:
    cp = plane(backend, table_prefix, clock, TokenBudgetConfig(ACME, "daily", max_tokens=10_000))
    with pytest.raises(SessionNotFoundError, match="token usage not recorded"), cp.token_budget_tracker() as t:
        t.record_usage("no-such-session", ALICE, usage())
    assert ledger(cp) == (0, 0, Decimal(0))
    cp.close()


def test_the_tracker_refuses_use_outside_its_block(cp: ControlPlaneFacade) -> None:
    tracker = cp.token_budget_tracker()
    with pytest.raises(ControlPlaneError, match="inside `with cp.token_budget_tracker"):
        tracker.get_budget_states(ACME)


# windows ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("period", "start", "before_roll", "after_roll"),
    [
        ("daily", datetime(2026, 3, 10, 9, tzinfo=UTC), timedelta(hours=14, minutes=59), timedelta(hours=15)),
        # 2026-03-11 is a Wednesday: the week runs to Monday 2026-03-16 00:00 UTC.
        ("weekly", datetime(2026, 3, 11, 12, tzinfo=UTC), timedelta(days=4, hours=11), timedelta(days=4, hours=12)),
        ("monthly", datetime(2026, 2, 27, 12, tzinfo=UTC), timedelta(days=1, hours=11), timedelta(days=1, hours=12)),
    ],
)
def test_windows_roll_over_at_calendar_boundaries(
    backend: Backend,
    table_prefix: str,
    period: str,
    start: datetime,
    before_roll: timedelta,
    after_roll: timedelta,
) -> None:
    clock = ManualClock(start)
    cp = plane(backend, table_prefix, clock, TokenBudgetConfig(ACME, period, max_tokens=2000))
    with cp.token_budget_tracker() as t:
        t.record_usage(None, ALICE, usage(1000, 500))
    clock.set(start + before_roll)
    with cp.token_budget_tracker() as t:
        (state,) = t.get_budget_states(ACME)
        assert state.tokens_used == 1500 and state.remaining_tokens == 500
        assert not t.check_budget(ACME, estimated_tokens=600).allowed
        assert state.window_end == start + after_roll
    clock.set(start + after_roll)
    with cp.token_budget_tracker() as t:
        (state,) = t.get_budget_states(ACME)
        assert (state.window_start, state.tokens_used, state.remaining_tokens) == (start + after_roll, 0, 2000)
        assert t.check_budget(ACME, estimated_tokens=600).allowed
        # The ledger keeps the old window's row; this window's summary does not count it.
        assert t.usage_summary(ACME, period).total_tokens == 0
        assert t.usage_summary(ACME, "unlimited").total_tokens == 1500
    cp.close()


def test_a_daily_window_follows_the_budgets_time_zone(backend: Backend, table_prefix: str) -> None:
    # Berlin is UTC+1 in January: its day ends at 23:00 UTC.
    clock = ManualClock(datetime(2026, 1, 15, 22, 30, tzinfo=UTC))
    config = TokenBudgetConfig(ACME, "daily", max_tokens=2000, timezone="Europe/Berlin")
    cp = plane(backend, table_prefix, clock, config)
    with cp.token_budget_tracker() as t:
        t.record_usage(None, ALICE, usage(1000, 500))
        assert t.get_budget_states(ACME)[0].window_end == datetime(2026, 1, 15, 23, tzinfo=UTC)
    clock.advance(timedelta(minutes=31))
    with cp.token_budget_tracker() as t:
        assert t.get_budget_states(ACME)[0].tokens_used == 0
    cp.close()


def test_an_unlimited_period_never_rolls_over(backend: Backend, table_prefix: str, clock: ManualClock) -> None:
    cp = plane(backend, table_prefix, clock, TokenBudgetConfig(ACME, "unlimited", max_tokens=3000))
    for _ in range(2):
        with cp.token_budget_tracker() as t:
            t.record_usage(None, ALICE, usage(1000, 500))
        clock.advance(timedelta(days=400))
    with cp.token_budget_tracker() as t:
        (state,) = t.get_budget_states(ACME)
        assert (state.tokens_used, state.remaining_tokens, state.window_end) == (3000, 0, None)
        assert state.exhausted and not state.over
    cp.close()


# reservations -----------------------------------------------------------------------------------------------
def test_a_reservation_holds_room_until_it_is_used_or_released(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    cp = plane(backend, table_prefix, clock, TokenBudgetConfig(ACME, "daily", max_tokens=3000))
    with cp.token_budget_tracker() as t:
        first = t.check_budget(ALICE, estimated_tokens=2000, reserve=True)
        assert first.allowed and first.reservation_id is not None
        assert first.states[0].tokens_reserved == 2000 and first.remaining[first.states[0].budget_id] == (1000, None)
        second = t.check_budget(BOB, estimated_tokens=1500, reserve=True)
        assert not second.allowed and second.reservation_id is None
        assert "1500 tokens requested, 1000 of 3000 left (0 used, 2000 reserved" in second.reason
        # Using the reservation replaces the estimate with what was billed.
        t.record_usage(None, ALICE, usage(1000, 200), reservation_id=first.reservation_id)
        (state,) = t.get_budget_states(ACME)
        assert (state.tokens_used, state.tokens_reserved, state.remaining_tokens) == (1200, 0, 1800)
        third = t.check_budget(BOB, estimated_tokens=1500, reserve=True)
        assert third.allowed and third.reservation_id is not None
        assert t.release_reservation(third.reservation_id) is True
        assert t.release_reservation(third.reservation_id) is False
        assert t.get_budget_states(ACME)[0].tokens_reserved == 0
        with pytest.raises(NotFoundError, match="unknown token reservation"):
            t.release_reservation("never-issued")
    cp.close()


def test_crash_recovery_gives_back_reservations_nobody_used(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    cp = plane(backend, table_prefix, clock, TokenBudgetConfig(ACME, "daily", max_tokens=3000))
    with cp.token_budget_tracker() as t:
        assert t.check_budget(ALICE, estimated_tokens=2500, reserve=True).allowed
    assert cp.recover().token_reservations == 0  # not expired yet
    clock.advance(timedelta(minutes=16))
    report = cp.recover()
    assert report.token_reservations == 1 and "1 token reservation(s) given back" in report.describe()
    with cp.token_budget_tracker() as t:
        assert t.get_budget_states(ACME)[0].tokens_reserved == 0
    cp.close()


def test_usage_recorded_after_the_window_rolled_still_returns_the_old_reservation(
    backend: Backend, table_prefix: str
) -> None:
    clock = ManualClock(datetime(2026, 5, 1, 23, 59, tzinfo=UTC))
    cp = plane(backend, table_prefix, clock, TokenBudgetConfig(ACME, "daily", max_tokens=3000))
    with cp.token_budget_tracker() as t:
        held = t.check_budget(ALICE, estimated_tokens=2500, reserve=True)
    clock.advance(timedelta(minutes=2))
    with cp.token_budget_tracker() as t:
        t.record_usage(None, ALICE, usage(100, 100), reservation_id=held.reservation_id)
        (state,) = t.get_budget_states(ACME)
        assert (state.tokens_used, state.tokens_reserved) == (200, 0)
    w = cp.registry.token_windows
    with cp.engine.connect() as conn:
        reserved = sorted(conn.execute(select(w.c.window_start, w.c.tokens_reserved, w.c.tokens_used)).all())
    assert [(r[1], r[2]) for r in reserved] == [(0, 0), (0, 200)]
    cp.close()


# budgets at run time ----------------------------------------------------------------------------------------
def test_budgets_are_created_updated_listed_and_deleted_at_run_time_each_logged(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    cp = plane(backend, table_prefix, clock)
    with cp.token_budget_tracker() as t:
        t.record_usage(None, ALICE, usage(1000, 0))
    # A budget created mid-window counts what the ledger already holds for it.
    created = cp.create_token_budget(TokenBudgetConfig(ACME, "daily", max_tokens=5000))
    assert (created.tokens_used, created.remaining_tokens) == (1000, 4000)
    with pytest.raises(InvalidInputError, match="already exists"):
        cp.create_token_budget(TokenBudgetConfig(ACME, "daily", max_tokens=1))
    updated = cp.update_token_budget(TokenBudgetConfig(ACME, "daily", max_tokens=8000, allowed_models=["claude-*"]))
    assert (updated.tokens_used, updated.remaining_tokens, updated.config.models) == (1000, 7000, ("claude-*",))
    with pytest.raises(NotFoundError, match="no weekly token budget for org tenant-acme to update"):
        cp.update_token_budget(TokenBudgetConfig(ACME, "weekly", max_tokens=1))
    cp.set_token_budget(TokenBudgetConfig(GLOBEX, "monthly", max_cost_usd="20"))
    cp.set_token_budget(TokenBudgetConfig(GLOBEX, "monthly", max_cost_usd="20"))  # unchanged: not logged
    cp.set_token_budget(TokenBudgetConfig(IdentityContext(org_id=OrgId("globex"), user_id=UserId("u")), "daily"))
    cp.set_token_budget(TokenBudgetConfig(IdentityContext(), "daily"))
    listed = [(s.config.identity.describe(), s.config.budget_period.value) for s in cp.list_token_budgets()]
    # The same order on every backend: by org, team and user, absent (broader) parts first.
    assert listed == [
        ("everyone", "daily"),
        ("org globex", "monthly"),
        ("org globex / user u", "daily"),
        ("org tenant-acme", "daily"),
    ]
    removed = cp.delete_token_budget(ACME, "daily")
    assert removed.max_tokens == 8000
    with pytest.raises(NotFoundError, match="no daily token budget for org tenant-acme"):
        cp.delete_token_budget(ACME, "daily")
    kinds = [e.kind for e in cp.replay("control") if e.kind.startswith("token_budget.")]
    assert kinds == [
        "token_budget.created",
        "token_budget.updated",
        *["token_budget.created"] * 3,
        "token_budget.deleted",
    ]
    assert cp.verify("control").ok
    cp.close()


def test_a_restart_picks_up_every_window_where_it_was(backend: Backend, table_prefix: str, clock: ManualClock) -> None:
    config = TokenBudgetConfig(ACME, "daily", max_tokens=5000)
    first = plane(backend, table_prefix, clock, config)
    with first.token_budget_tracker() as t:
        t.record_usage(None, ALICE, usage(1000, 500))
    first.close()
    again = plane(backend, table_prefix, clock, TokenBudgetConfig(ACME, "daily", max_tokens=6000))
    with again.token_budget_tracker() as t:
        (state,) = t.get_budget_states(ACME)
        assert (state.tokens_used, state.remaining_tokens) == (1500, 4500)
    kinds = [e.kind for e in again.replay("control") if e.kind.startswith("token_budget.")]
    assert kinds == ["token_budget.created", "token_budget.updated"]
    again.close()


# joining the caller's transaction ---------------------------------------------------------------------------
def test_a_tracker_from_the_callers_session_commits_and_rolls_back_with_it(
    backend: Backend, table_prefix: str, clock: ManualClock
) -> None:
    from agent_control_plane import SyncTokenBudgetTracker

    cp = plane(backend, table_prefix, clock, TokenBudgetConfig(ACME, "daily", max_tokens=5000))
    with cp.engine.connect() as conn:
        with conn.begin() as transaction:
            SyncTokenBudgetTracker.from_session(conn, cp).record_usage(None, ALICE, usage())
            transaction.rollback()
        assert ledger(cp)[0] == 0
        with conn.begin():
            SyncTokenBudgetTracker.from_session(conn, cp).record_usage(None, ALICE, usage())
    assert ledger(cp)[0] == 1
    cp.close()


def test_an_async_tracker_from_an_async_session_joins_its_transaction(backend: Backend, table_prefix: str) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession

    from agent_control_plane import TokenBudgetTracker

    async def scenario() -> None:
        setup = ControlPlaneSetup(
            backend.async_url,
            token_budget_configs=[TokenBudgetConfig(ACME, "daily", max_tokens=5000)],
            table_prefix=table_prefix,
        )
        cp = setup.build_async()
        async with AsyncSession(cp.engine) as session:
            await TokenBudgetTracker.from_session(session, cp).record_usage(None, ALICE, usage())
            await session.rollback()
            await TokenBudgetTracker.from_session(session, cp).record_usage(None, BOB, usage(10, 10))
            await session.commit()
        async with cp.token_budget_tracker() as t:
            (state,) = await t.get_budget_states(ACME)
            assert state.tokens_used == 20
        await setup.aclose()

    asyncio.run(scenario())
