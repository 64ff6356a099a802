"""Token governance operations: budgets per identity and window, the usage ledger, reservations, model access.

Each function runs inside the caller's transaction. Budgets are read from the database on every call (they can
change at run time from any process); the windows they count in come from the injected clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Connection

from agent_control_plane.clock import from_micros, to_micros
from agent_control_plane.errors import InvalidInputError, NotFoundError, SessionNotFoundError
from agent_control_plane.plane.context import PlaneContext
from agent_control_plane.plane.events import PendingEvent, append_to_stream
from agent_control_plane.policy.windows import window
from agent_control_plane.store import eventlog, sessions
from agent_control_plane.store import tokens as rows
from agent_control_plane.store.eventlog import Head
from agent_control_plane.store.statements import CONTROL_KIND
from agent_control_plane.store.tables import CONTROL_STREAM_ID
from agent_control_plane.store.tokens import Delta, Totals, WindowKey
from agent_control_plane.types.events import EventKind
from agent_control_plane.types.identity import IdentityContext, ModelId, identity_of
from agent_control_plane.types.tokens import (
    BudgetCheckResult,
    BudgetPeriod,
    ModelAccessResult,
    ModelUsage,
    TokenBudgetConfig,
    TokenBudgetState,
    TokenUsage,
    UsageRecord,
    UsageSummary,
)
from agent_control_plane.types.values import canonical_json, tidy

_ZERO = Totals(0, Decimal(0), 0, Decimal(0))


@dataclass(frozen=True, slots=True)
class Covering:
    """A budget covering an identity, placed in its current window."""

    config: TokenBudgetConfig
    key: WindowKey
    end: int | None

    def state(self, totals: Totals) -> TokenBudgetState:
        c = self.config
        held_tokens = totals.tokens_used + totals.tokens_reserved
        held_cost = totals.cost_used + totals.cost_reserved
        return TokenBudgetState(
            budget_id=self.key[0],
            config=c,
            window_start=from_micros(self.key[1]),
            window_end=None if self.end is None else from_micros(self.end),
            tokens_used=totals.tokens_used,
            cost_used_usd=totals.cost_used,
            tokens_reserved=totals.tokens_reserved,
            cost_reserved_usd=totals.cost_reserved,
            remaining_tokens=None if c.max_tokens is None else max(c.max_tokens - held_tokens, 0),
            remaining_cost_usd=None if c.max_cost is None else tidy(max(c.max_cost - held_cost, Decimal(0))),
        )


def config_from_row(row: Mapping[Any, Any]) -> TokenBudgetConfig:
    return TokenBudgetConfig(
        identity_of(row),
        BudgetPeriod(row["period"]),
        max_tokens=None if row["max_tokens"] is None else int(row["max_tokens"]),
        max_cost_usd=row["max_cost"],
        allowed_models=rows.decode_models(row["allowed_models"]),
        timezone=row["timezone"],
    )


def place(config: TokenBudgetConfig, at: int) -> Covering:
    start, end = window(config.budget_period, config.timezone, from_micros(at))
    return Covering(config, (config.budget_id, to_micros(start)), None if end is None else to_micros(end))


def covering(conn: Connection, ctx: PlaneContext, identity: IdentityContext, at: int) -> list[Covering]:
    """The budgets covering `identity`, each in the window holding `at`, in lock order."""
    return [place(config_from_row(row), at) for row in rows.covering(conn, ctx.tables, identity)]


def shortfall(budget: Covering, totals: Totals, tokens: int, cost: Decimal) -> str | None:
    """Why an estimate does not fit a budget's window, or None when it does (the SQL of `reserve`, in Python)."""
    c = budget.config
    resets = "never resets" if budget.end is None else f"resets {from_micros(budget.end):%Y-%m-%d %H:%M} UTC"
    if c.max_tokens is not None:
        held = totals.tokens_used + totals.tokens_reserved
        if held + tokens > c.max_tokens or held >= c.max_tokens:
            left = max(c.max_tokens - held, 0)
            return (
                f"token budget exceeded: {c.describe()}: {tokens} tokens requested, {left} of {c.max_tokens} left "
                f"({totals.tokens_used} used, {totals.tokens_reserved} reserved; {resets})"
            )
    if c.max_cost is not None:
        held_cost = totals.cost_used + totals.cost_reserved
        if held_cost + cost > c.max_cost or held_cost >= c.max_cost:
            left_cost = tidy(max(c.max_cost - held_cost, Decimal(0)))
            return (
                f"token budget exceeded: {c.describe()}: ${tidy(cost)} requested, ${left_cost} of ${tidy(c.max_cost)} "
                f"left (${tidy(totals.cost_used)} used, ${tidy(totals.cost_reserved)} reserved; {resets})"
            )
    return None


def states(conn: Connection, ctx: PlaneContext, budgets: list[Covering]) -> tuple[TokenBudgetState, ...]:
    stored = rows.windows(conn, ctx.tables, [b.key for b in budgets])
    return tuple(b.state(stored.get(b.key, _ZERO)) for b in budgets)


# checks and reservations ------------------------------------------------------------------------------------
def reserve(
    conn: Connection,
    ctx: PlaneContext,
    budgets: list[Covering],
    tokens: int,
    cost: Decimal,
    at: int,
) -> tuple[str | None, tuple[TokenBudgetState, ...]]:
    """Reserve the estimate in every budget's window, all or none: (why not, None when reserved; the states).

    Windows are reserved in lock order; when one has no room, those already reserved are given back in the same
    transaction (their row locks are held, so nobody saw the difference).
    """
    t = ctx.tables
    taken: list[Covering] = []
    after: list[TokenBudgetState] = []
    for budget in budgets:
        c = budget.config
        totals = rows.reserve(
            conn, t, budget.key, budget.end, tokens=tokens, cost=cost, max_tokens=c.max_tokens, max_cost=c.max_cost,
            at=at,
        )  # fmt: skip
        if totals is None:
            give_back(conn, ctx, taken, tokens, cost, at)
            stored = rows.windows(conn, t, [b.key for b in budgets])
            current = tuple(b.state(stored.get(b.key, _ZERO)) for b in budgets)
            refused = shortfall(budget, stored.get(budget.key, _ZERO), tokens, cost)
            return refused or "token budget exceeded", current
        taken.append(budget)
        after.append(budget.state(totals))
    return None, tuple(after)


def give_back(
    conn: Connection, ctx: PlaneContext, budgets: list[Covering], tokens: int, cost: Decimal, at: int
) -> None:
    """Undo `reserve` in the same transaction (the row locks are still held, so nobody saw the difference)."""
    for budget in budgets:
        rows.release(conn, ctx.tables, budget.key, Delta(tokens_reserved=-tokens, cost_reserved=-cost), at)


def reservation_of(conn: Connection, ctx: PlaneContext, proposal_id: str) -> str | None:
    """The open token reservation an allowed proposal holds, if it is a model call that reserved one."""
    return rows.open_reservation_of(conn, ctx.tables, proposal_id)


def open_reservation(
    conn: Connection,
    ctx: PlaneContext,
    budgets: list[Covering],
    *,
    identity: IdentityContext,
    model_id: str | None,
    tokens: int,
    cost: Decimal,
    at: int,
    session_id: str | None = None,
    proposal_id: str | None = None,
) -> str:
    """Record a taken reservation, so it can be used, released, or expired exactly once."""
    reservation_id = str(uuid.uuid4())
    rows.insert_reservation(
        conn,
        ctx.tables,
        {
            "id": reservation_id,
            **identity.as_dict(),
            "model_id": model_id,
            "session_id": session_id,
            "proposal_id": proposal_id,
            "tokens": tokens,
            "cost": cost,
            "windows": rows.encode_windows([(b.key, b.end) for b in budgets]),
            "status": "open",
            "created_at": at,
            "expires_at": at + ctx.reservation_ttl_micros,
            "closed_at": None,
        },
    )
    return reservation_id


def check_budget(
    conn: Connection,
    ctx: PlaneContext,
    *,
    identity: IdentityContext,
    tokens: int,
    cost: Decimal,
    model_id: str | None,
    reserve_estimate: bool,
    session_id: str | None,
) -> BudgetCheckResult:
    at = ctx.now_micros()
    budgets = covering(conn, ctx, identity, at)
    access = None
    if model_id is not None:
        access = ctx.models.check_access(identity, model_id, [b.config for b in budgets])
        if not access.allowed:
            record_denial(conn, ctx, identity, access, session_id, at)
            return BudgetCheckResult(False, f"denied: {access.reason}", states(conn, ctx, budgets), access)
    if reserve_estimate:
        refused, after = reserve(conn, ctx, budgets, tokens, cost, at)
        if refused is not None:
            return BudgetCheckResult(False, f"denied: {refused}", after, access)
        reservation_id = open_reservation(
            conn, ctx, budgets, identity=identity, model_id=model_id, tokens=tokens, cost=cost, at=at,
            session_id=session_id,
        )  # fmt: skip
        return BudgetCheckResult(True, _fits(budgets, reserved=True), after, access, reservation_id)
    stored = rows.windows(conn, ctx.tables, [b.key for b in budgets])
    current = tuple(b.state(stored.get(b.key, _ZERO)) for b in budgets)
    for budget in budgets:
        refused = shortfall(budget, stored.get(budget.key, _ZERO), tokens, cost)
        if refused is not None:
            return BudgetCheckResult(False, f"denied: {refused}", current, access)
    return BudgetCheckResult(True, _fits(budgets, reserved=False), current, access)


def _fits(budgets: list[Covering], *, reserved: bool) -> str:
    if not budgets:
        return "allowed: no token budget covers this identity"
    verb = "reserved within" if reserved else "fits"
    return f"allowed: {verb} {len(budgets)} token budget(s)"


def release_reservation(conn: Connection, ctx: PlaneContext, reservation_id: str, status: str = "released") -> bool:
    """Give a reservation's room back; True when it was open, False when it was already used, released or
    expired. Raises `NotFoundError` for an id nobody issued."""
    at = ctx.now_micros()
    closed = rows.close_reservation(conn, ctx.tables, reservation_id, status, at)
    if closed is None:
        if rows.get_reservation(conn, ctx.tables, reservation_id) is None:
            raise NotFoundError(f"unknown token reservation id {reservation_id!r}")
        return False
    for key, _end in rows.decode_windows(closed["windows"]):
        rows.release(
            conn, ctx.tables, key, Delta(tokens_reserved=-int(closed["tokens"]), cost_reserved=-closed["cost"]), at
        )
    return True


def expire_reservations(conn: Connection, ctx: PlaneContext) -> int:
    """Release every reservation whose holder neither used nor released it in time (crash recovery runs this)."""
    expired = rows.expired_reservations(conn, ctx.tables, ctx.now_micros())
    return sum(release_reservation(conn, ctx, reservation_id, "expired") for reservation_id in expired)


# usage ------------------------------------------------------------------------------------------------------
def record_usage(
    conn: Connection,
    ctx: PlaneContext,
    *,
    session_id: str | None,
    identity: IdentityContext,
    usage: TokenUsage,
    reservation_id: str | None,
    proposal_id: str | None = None,
) -> UsageRecord:
    """Write the ledger row and add it to every covering budget's window (releasing `reservation_id`, if any).

    Over-budget usage is recorded like any other (it was billed); the caller raises once this has committed.
    """
    t = ctx.tables
    at = ctx.now_micros()
    head = None
    if session_id is not None:
        # The session row first, then the windows: the lock order of propose.
        claimed = sessions.claim(conn, t, session_id, 1, at)
        if claimed is None or claimed["kind"] == CONTROL_KIND:
            raise SessionNotFoundError(f"unknown session id {session_id!r}: token usage not recorded")
        head = Head(claimed["last_seq"], claimed["last_hash"])
    budgets = covering(conn, ctx, identity, at)
    changes: dict[WindowKey, tuple[int | None, Delta]] = {
        b.key: (b.end, Delta(tokens_used=usage.tokens, cost_used=usage.cost)) for b in budgets
    }
    released = None
    if reservation_id is not None:
        closed = rows.close_reservation(conn, t, reservation_id, "used", at)
        if closed is None and rows.get_reservation(conn, t, reservation_id) is None:
            raise NotFoundError(f"unknown token reservation id {reservation_id!r}: token usage not recorded")
        released = closed is not None
        if closed is not None:
            give_back = Delta(tokens_reserved=-int(closed["tokens"]), cost_reserved=-closed["cost"])
            for key, end in rows.decode_windows(closed["windows"]):
                before = changes.get(key)
                changes[key] = (end, give_back) if before is None else (before[0], before[1] + give_back)
    current = {b.key for b in budgets}
    after: dict[WindowKey, Totals] = {}
    for key in sorted(changes):
        end, delta = changes[key]
        if key in current:
            after[key] = rows.add(conn, t, key, end, delta, at)
        else:  # a reservation made in a window that has rolled over (or for a budget since deleted)
            rows.release(conn, t, key, delta, at)
    result = tuple(b.state(after[b.key]) for b in budgets)
    over = [state.budget_id for state in result if state.over]
    usage_id = str(uuid.uuid4())
    rows.insert_usage(
        conn,
        t,
        {
            "id": usage_id,
            "session_id": session_id,
            "proposal_id": proposal_id,
            "reservation_id": reservation_id,
            **identity.as_dict(),
            "model_id": usage.model_id,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.tokens,
            "cost": usage.cost,
            "over_budget": bool(over),
            "recorded_at": at,
        },
    )
    if head is not None and session_id is not None:
        payload = {
            "usage_id": usage_id,
            "proposal_id": proposal_id,
            "identity": identity.as_dict(),
            "model_id": usage.model_id,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.tokens,
            "cost_usd": str(tidy(usage.cost)),
            "reservation_id": reservation_id,
            "reservation_released": released,
            "over_budget": over,
        }
        eventlog.append(conn, t, session_id, head, [(EventKind.TOKEN_USAGE_RECORDED, canonical_json(payload), at)])
    return UsageRecord(usage_id, session_id, identity, usage, result)


def exhausted_message(record: UsageRecord) -> str:
    over = record.over_budget
    parts = []
    for state in over:
        c = state.config
        used = [
            f"{state.tokens_used} of {c.max_tokens} tokens" if c.max_tokens is not None else None,
            f"${state.cost_used_usd} of ${c.max_cost}" if c.max_cost is not None else None,
        ]
        parts.append(f"{c.describe()}: {', '.join(u for u in used if u)} used")
    usage = record.usage
    return (
        f"token budget exhausted: usage of {usage.tokens} tokens (${tidy(usage.cost)}) on {usage.model_id} for "
        f"{record.identity.describe()} was recorded (usage {record.usage_id}), and it took "
        f"{'; '.join(parts)}. Further calls are refused until the window rolls over or the budget is raised."
    )


def budget_states(conn: Connection, ctx: PlaneContext, identity: IdentityContext) -> tuple[TokenBudgetState, ...]:
    return states(conn, ctx, covering(conn, ctx, identity, ctx.now_micros()))


def usage_summary(
    conn: Connection, ctx: PlaneContext, identity: IdentityContext, period: BudgetPeriod, timezone: str
) -> UsageSummary:
    now = ctx.clock.now()
    start, end = window(period, timezone, now)
    since = None if period is BudgetPeriod.UNLIMITED else to_micros(start)
    until = None if end is None else to_micros(end)
    by_model = {
        model: ModelUsage(model, calls, tokens_in, tokens_out, total, cost)
        for model, calls, tokens_in, tokens_out, total, cost in rows.usage_by_model(
            conn, ctx.tables, identity, since, until
        )
    }
    models = by_model.values()
    return UsageSummary(
        identity=identity,
        period=period,
        window_start=None if since is None else start,
        window_end=end,
        calls=sum(m.calls for m in models),
        input_tokens=sum(m.input_tokens for m in models),
        output_tokens=sum(m.output_tokens for m in models),
        total_tokens=sum(m.total_tokens for m in models),
        cost_usd=tidy(sum((m.cost_usd for m in models), start=Decimal(0))),
        by_model=by_model,
    )


# model access -----------------------------------------------------------------------------------------------
def record_denial(
    conn: Connection,
    ctx: PlaneContext,
    identity: IdentityContext,
    access: ModelAccessResult,
    session_id: str | None,
    at: int,
) -> None:
    """Log a refused model in the session's log, or on the control stream when the call has no session."""
    payload = {
        "identity": identity.as_dict(),
        "model_id": access.model_id,
        "tier": access.tier,
        "reason": access.reason,
        "session_id": session_id,
    }
    stream = CONTROL_STREAM_ID if session_id is None else session_id
    event = PendingEvent(stream, EventKind.MODEL_ACCESS_DENIED, canonical_json(payload), at)
    if append_to_stream(conn, ctx, stream, [event]) is None:
        raise SessionNotFoundError(f"unknown session id {session_id!r}")


def check_model_access(
    conn: Connection, ctx: PlaneContext, identity: IdentityContext, model_id: ModelId, session_id: str | None
) -> ModelAccessResult:
    at = ctx.now_micros()
    access = ctx.models.check_access(identity, model_id, [b.config for b in covering(conn, ctx, identity, at)])
    if not access.allowed:
        record_denial(conn, ctx, identity, access, session_id, at)
    return access


# budgets at run time ----------------------------------------------------------------------------------------
SaveMode = Literal["create", "update", "set"]


@dataclass(frozen=True, slots=True)
class SavedBudget:
    """The outcome of saving a budget: what it is now and whether it was created, updated or left unchanged."""

    state: TokenBudgetState
    change: Literal["created", "updated", "unchanged"]


def _budget_values(config: TokenBudgetConfig) -> dict[str, Any]:
    return {
        "period": config.budget_period.value,
        "timezone": config.timezone,
        "max_tokens": config.max_tokens,
        "max_cost": config.max_cost,
        "allowed_models": rows.encode_models(config.models),
    }


def _budget_payload(config: TokenBudgetConfig) -> dict[str, Any]:
    return {
        "budget_id": config.budget_id,
        "identity": config.identity.as_dict(),
        "period": config.budget_period.value,
        "timezone": config.timezone,
        "max_tokens": config.max_tokens,
        "max_cost_usd": None if config.max_cost is None else str(tidy(config.max_cost)),
        "allowed_models": None if config.models is None else list(config.models),
    }


def save_budget(conn: Connection, ctx: PlaneContext, config: TokenBudgetConfig, mode: SaveMode) -> SavedBudget:
    """Create or update a budget (by identity and period), logged on the control stream when it changes.

    A new budget, or one whose time zone changed, has its current window's use counted from the ledger, so a
    daily cap set at noon counts the morning too.
    """
    t = ctx.tables
    at = ctx.now_micros()
    budget_id = config.budget_id
    existing = rows.get_budget(conn, t, budget_id)
    if existing is None and mode == "update":
        raise NotFoundError(f"no {config.budget_period.value} token budget for {config.identity.describe()} to update")
    if existing is not None and mode == "create":
        raise InvalidInputError(
            f"a {config.budget_period.value} token budget for {config.identity.describe()} already exists "
            "(update it, or delete it first)"
        )
    values = _budget_values(config)
    placed = place(config, at)
    if existing is None:
        rows.insert_budget(
            conn, t, {"id": budget_id, **config.identity.as_dict(), **values, "created_at": at, "updated_at": at}
        )
        change: Literal["created", "updated", "unchanged"] = "created"
    elif any(existing[key] != value for key, value in values.items()):
        rows.update_budget(conn, t, budget_id, {**values, "updated_at": at})
        change = "updated"
    else:
        change = "unchanged"
    if change == "created" or (
        change == "updated" and existing is not None and existing["timezone"] != config.timezone
    ):
        rows.rebase(conn, t, placed.key, placed.end, config.identity, at)
    if change != "unchanged":
        kind = EventKind.TOKEN_BUDGET_CREATED if change == "created" else EventKind.TOKEN_BUDGET_UPDATED
        event = PendingEvent(CONTROL_STREAM_ID, kind, canonical_json(_budget_payload(config)), at)
        append_to_stream(conn, ctx, CONTROL_STREAM_ID, [event])
    return SavedBudget(states(conn, ctx, [placed])[0], change)


def delete_budget(
    conn: Connection, ctx: PlaneContext, identity: IdentityContext, period: BudgetPeriod
) -> TokenBudgetConfig:
    t = ctx.tables
    at = ctx.now_micros()
    budget_id = TokenBudgetConfig(identity, period).budget_id
    existing = rows.get_budget(conn, t, budget_id)
    if existing is None:
        raise NotFoundError(f"no {period.value} token budget for {identity.describe()} (see `acp budgets list`)")
    config = config_from_row(existing)
    rows.delete_budget(conn, t, budget_id)
    event = PendingEvent(CONTROL_STREAM_ID, EventKind.TOKEN_BUDGET_DELETED, canonical_json(_budget_payload(config)), at)
    append_to_stream(conn, ctx, CONTROL_STREAM_ID, [event])
    return config


def list_budgets(conn: Connection, ctx: PlaneContext) -> list[TokenBudgetState]:
    at = ctx.now_micros()
    return list(states(conn, ctx, [place(config_from_row(row), at) for row in rows.list_budgets(conn, ctx.tables)]))
