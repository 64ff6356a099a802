"""Token budget rows: budgets, their per-window running totals, the usage ledger, and reservations.

A window's totals change only by atomic increments (an upsert that adds, or a conditional UPDATE that adds only
when there is room), so concurrent writers never lose an update and no check sums the ledger. Window rows are
always touched in (budget id, window start) order, after the session row when there is one: one lock order for
every transaction, so two writers never wait on each other in a cycle.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Connection, RowMapping, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from agent_control_plane.store.dialect import upsert_into
from agent_control_plane.store.prepared import Prepared
from agent_control_plane.store.tables import ScopedModelRegistry
from agent_control_plane.store.types import Money
from agent_control_plane.types.identity import IdentityContext

WindowKey = tuple[str, int]
"""(budget id, window start in µs)."""


@dataclass(frozen=True, slots=True)
class Totals:
    tokens_used: int
    cost_used: Decimal
    tokens_reserved: int
    cost_reserved: Decimal


@dataclass(frozen=True, slots=True)
class Delta:
    """What to add to one window: used and reserved tokens and cost (negative to release a reservation)."""

    tokens_used: int = 0
    cost_used: Decimal = Decimal(0)
    tokens_reserved: int = 0
    cost_reserved: Decimal = Decimal(0)

    def __add__(self, other: Delta) -> Delta:
        return Delta(
            self.tokens_used + other.tokens_used,
            self.cost_used + other.cost_used,
            self.tokens_reserved + other.tokens_reserved,
            self.cost_reserved + other.cost_reserved,
        )


def _totals(row: Sequence[Any]) -> Totals:
    return Totals(int(row[0]), row[1], int(row[2]), row[3])


class TokenStatements:
    """The prebuilt statements of one registry's token tables (compiled once per dialect, run as `Prepared`)."""

    def __init__(self, t: ScopedModelRegistry) -> None:
        self._t = t
        b, w, u = t.token_budgets, t.token_windows, t.token_usage
        self.covering = Prepared(
            select(b)
            .where(
                or_(b.c.org_id.is_(None), b.c.org_id == bindparam("p_org")),
                or_(b.c.team_id.is_(None), b.c.team_id == bindparam("p_team")),
                or_(b.c.user_id.is_(None), b.c.user_id == bindparam("p_user")),
            )
            .order_by(b.c.id)
        )
        self.insert_usage = Prepared(u.insert(), insert_columns=[c.key for c in u.c])
        self._window_columns = [c.key for c in w.c]
        self._add: dict[str, Prepared] = {}
        self._ensure: dict[str, Prepared] = {}
        self._reserve: dict[tuple[bool, bool], Prepared] = {}

    def add(self, conn: Connection) -> Prepared:
        """Upsert that adds a `Delta` to a window's totals (creating the row at the delta) and returns them."""
        name = conn.dialect.name
        if name not in self._add:
            w = self._t.token_windows
            stmt = upsert_into(name, w)
            stmt = stmt.on_conflict_do_update(
                index_elements=[w.c.budget_id, w.c.window_start],
                set_={
                    "tokens_used": w.c.tokens_used + stmt.excluded.tokens_used,
                    "cost_used": w.c.cost_used + stmt.excluded.cost_used,
                    "tokens_reserved": w.c.tokens_reserved + stmt.excluded.tokens_reserved,
                    "cost_reserved": w.c.cost_reserved + stmt.excluded.cost_reserved,
                    "updated_at": stmt.excluded.updated_at,
                },
            ).returning(w.c.tokens_used, w.c.cost_used, w.c.tokens_reserved, w.c.cost_reserved)
            self._add[name] = Prepared(stmt, insert_columns=self._window_columns)
        return self._add[name]

    def ensure(self, conn: Connection) -> Prepared:
        name = conn.dialect.name
        if name not in self._ensure:
            stmt = upsert_into(name, self._t.token_windows).on_conflict_do_nothing()
            self._ensure[name] = Prepared(stmt, insert_columns=self._window_columns)
        return self._ensure[name]

    def reserve(self, tokens_capped: bool, cost_capped: bool) -> Prepared:
        """Conditional UPDATE adding a reservation only while the window has room on each capped measure.

        Room means used + reserved + this estimate stays within the cap, and something is left before it (so an
        estimate of 0 is refused once a cap is reached). One variant per combination of caps, so no parameter is
        ever compared with NULL (which PostgreSQL cannot type).
        """
        key = (tokens_capped, cost_capped)
        if key not in self._reserve:
            w = self._t.token_windows
            tokens = bindparam("p_tokens", type_=BigInteger)
            cost = bindparam("p_cost", type_=Money)
            conditions: list[ColumnElement[bool]] = [
                w.c.budget_id == bindparam("p_bid"),
                w.c.window_start == bindparam("p_start", type_=BigInteger),
            ]
            if tokens_capped:
                cap = bindparam("p_max_tokens", type_=BigInteger)
                held = w.c.tokens_used + w.c.tokens_reserved
                conditions.append(and_(held + tokens <= cap, held < cap))
            if cost_capped:
                cap_cost = bindparam("p_max_cost", type_=Money)
                held_cost = w.c.cost_used + w.c.cost_reserved
                conditions.append(and_(held_cost + cost <= cap_cost, held_cost < cap_cost))
            stmt = (
                update(w)
                .where(*conditions)
                .values(
                    tokens_reserved=w.c.tokens_reserved + tokens,
                    cost_reserved=w.c.cost_reserved + cost,
                    updated_at=bindparam("p_at", type_=BigInteger),
                )
                .returning(w.c.tokens_used, w.c.cost_used, w.c.tokens_reserved, w.c.cost_reserved)
            )
            self._reserve[key] = Prepared(stmt)
        return self._reserve[key]


def statements(t: ScopedModelRegistry) -> TokenStatements:
    return t.token_statements


# budgets ----------------------------------------------------------------------------------------------------
def covering(conn: Connection, t: ScopedModelRegistry, identity: IdentityContext) -> list[dict[str, Any]]:
    """Every budget whose identity covers `identity` (subset semantics), in id order (the lock order)."""
    params = {"p_org": identity.org_id, "p_team": identity.team_id, "p_user": identity.user_id}
    keys = [c.key for c in t.token_budgets.c]
    return [dict(zip(keys, row, strict=True)) for row in statements(t).covering.run(conn, params)]


def get_budget(conn: Connection, t: ScopedModelRegistry, budget_id: str) -> RowMapping | None:
    b = t.token_budgets
    row = conn.execute(select(b).where(b.c.id == budget_id).with_for_update()).first()
    return None if row is None else row._mapping


def list_budgets(conn: Connection, t: ScopedModelRegistry) -> list[RowMapping]:
    b = t.token_budgets
    # NULLS FIRST on both backends (SQLite's default, not PostgreSQL's): broader budgets before narrower ones.
    columns = (b.c.org_id, b.c.team_id, b.c.user_id)
    stmt = select(b).order_by(*(column.asc().nulls_first() for column in columns), b.c.period)
    return [row._mapping for row in conn.execute(stmt)]


def insert_budget(conn: Connection, t: ScopedModelRegistry, row: dict[str, Any]) -> None:
    conn.execute(t.token_budgets.insert().values(**row))


def update_budget(conn: Connection, t: ScopedModelRegistry, budget_id: str, values: dict[str, Any]) -> None:
    b = t.token_budgets
    conn.execute(update(b).where(b.c.id == budget_id).values(**values))


def delete_budget(conn: Connection, t: ScopedModelRegistry, budget_id: str) -> None:
    conn.execute(delete(t.token_windows).where(t.token_windows.c.budget_id == budget_id))
    conn.execute(delete(t.token_budgets).where(t.token_budgets.c.id == budget_id))


def encode_models(models: tuple[str, ...] | None) -> str | None:
    return None if models is None else json.dumps(list(models))


def decode_models(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(json.loads(text))


# windows ----------------------------------------------------------------------------------------------------
def add(conn: Connection, t: ScopedModelRegistry, key: WindowKey, end: int | None, delta: Delta, at: int) -> Totals:
    """Add `delta` to a window (creating it) and return its totals after the change."""
    row = {
        "budget_id": key[0],
        "window_start": key[1],
        "window_end": end,
        "tokens_used": delta.tokens_used,
        "cost_used": delta.cost_used,
        "tokens_reserved": delta.tokens_reserved,
        "cost_reserved": delta.cost_reserved,
        "updated_at": at,
    }
    return _totals(statements(t).add(conn).run(conn, row)[0])


def release(conn: Connection, t: ScopedModelRegistry, key: WindowKey, delta: Delta, at: int) -> None:
    """Add `delta` to a window only if it exists (giving back a reservation never creates a window)."""
    w = t.token_windows
    conn.execute(
        update(w)
        .where(w.c.budget_id == key[0], w.c.window_start == key[1])
        .values(
            tokens_used=w.c.tokens_used + delta.tokens_used,
            cost_used=w.c.cost_used + delta.cost_used,
            tokens_reserved=w.c.tokens_reserved + delta.tokens_reserved,
            cost_reserved=w.c.cost_reserved + delta.cost_reserved,
            updated_at=at,
        )
    )


def reserve(
    conn: Connection,
    t: ScopedModelRegistry,
    key: WindowKey,
    end: int | None,
    *,
    tokens: int,
    cost: Decimal,
    max_tokens: int | None,
    max_cost: Decimal | None,
    at: int,
) -> Totals | None:
    """Reserve `tokens` and `cost` in a window if it has room under the caps; its totals after, or None."""
    st = statements(t)
    empty = {"budget_id": key[0], "window_start": key[1], "window_end": end, "updated_at": at}
    zero = {"tokens_used": 0, "cost_used": Decimal(0), "tokens_reserved": 0, "cost_reserved": Decimal(0)}
    st.ensure(conn).run(conn, {**empty, **zero})
    params: dict[str, Any] = {"p_bid": key[0], "p_start": key[1], "p_tokens": tokens, "p_cost": cost, "p_at": at}
    if max_tokens is not None:
        params["p_max_tokens"] = max_tokens
    if max_cost is not None:
        params["p_max_cost"] = max_cost
    rows = st.reserve(max_tokens is not None, max_cost is not None).run(conn, params)
    return _totals(rows[0]) if rows else None


def windows(conn: Connection, t: ScopedModelRegistry, keys: Sequence[WindowKey]) -> dict[WindowKey, Totals]:
    """The totals of these windows as stored (windows nobody wrote yet are absent: all zero)."""
    if not keys:
        return {}
    w = t.token_windows
    wanted = or_(*(and_(w.c.budget_id == bid, w.c.window_start == start) for bid, start in keys))
    stmt = select(w.c.budget_id, w.c.window_start, w.c.tokens_used, w.c.cost_used, w.c.tokens_reserved,
                  w.c.cost_reserved).where(wanted)  # fmt: skip
    return {(row[0], int(row[1])): _totals(row[2:]) for row in conn.execute(stmt)}


def rebase(
    conn: Connection,
    t: ScopedModelRegistry,
    key: WindowKey,
    end: int | None,
    identity: IdentityContext,
    at: int,
) -> None:
    """Set a window's used totals from the ledger (when a budget is created or its window changes).

    The window row is locked first, then the ledger summed: a writer that records after the lock adds its
    increment after ours; one that committed before it is in the sum. Either way it is counted once.
    """
    w = t.token_windows
    zero = {"tokens_used": 0, "cost_used": Decimal(0), "tokens_reserved": 0, "cost_reserved": Decimal(0)}
    statements(t).ensure(conn).run(
        conn, {"budget_id": key[0], "window_start": key[1], "window_end": end, "updated_at": at, **zero}
    )
    where = and_(w.c.budget_id == key[0], w.c.window_start == key[1])
    conn.execute(select(w.c.budget_id).where(where).with_for_update())
    tokens, cost = conn.execute(
        select(func.coalesce(func.sum(t.token_usage.c.total_tokens), 0), func.sum(t.token_usage.c.cost)).where(
            *usage_filter(t, identity, key[1], end)
        )
    ).one()
    conn.execute(
        update(w)
        .where(where)
        .values(tokens_used=int(tokens), cost_used=_money_sum(cost), window_end=end, updated_at=at)
    )


# the ledger -------------------------------------------------------------------------------------------------
def insert_usage(conn: Connection, t: ScopedModelRegistry, row: dict[str, Any]) -> None:
    statements(t).insert_usage.run(conn, row)


def usage_filter(
    t: ScopedModelRegistry, identity: IdentityContext, since: int | None, until: int | None
) -> list[ColumnElement[bool]]:
    """Ledger rows of the identities `identity` covers, recorded in [since, until)."""
    u = t.token_usage
    conditions: list[ColumnElement[bool]] = []
    for column, value in ((u.c.org_id, identity.org_id), (u.c.team_id, identity.team_id),
                          (u.c.user_id, identity.user_id)):  # fmt: skip
        if value is not None:
            conditions.append(column == value)
    if since is not None:
        conditions.append(u.c.recorded_at >= since)
    if until is not None:
        conditions.append(u.c.recorded_at < until)
    return conditions


def usage_by_model(
    conn: Connection, t: ScopedModelRegistry, identity: IdentityContext, since: int | None, until: int | None
) -> list[tuple[str, int, int, int, int, Decimal]]:
    """(model, calls, input, output, total tokens, cost) per model, from the ledger (a report, not a check)."""
    u = t.token_usage
    stmt = (
        select(
            u.c.model_id,
            func.count(),
            func.sum(u.c.input_tokens),
            func.sum(u.c.output_tokens),
            func.sum(u.c.total_tokens),
            func.sum(u.c.cost),
        )
        .where(*usage_filter(t, identity, since, until))
        .group_by(u.c.model_id)
        .order_by(u.c.model_id)
    )
    return [
        (row[0], int(row[1]), int(row[2]), int(row[3]), int(row[4]), _money_sum(row[5])) for row in conn.execute(stmt)
    ]


def _money_sum(value: Decimal | None) -> Decimal:
    """A SUM of a Money column (typed as Money, so already a Decimal), or 0 over no rows."""
    return Decimal(0) if value is None else value


# reservations -----------------------------------------------------------------------------------------------
def encode_windows(keys: Sequence[tuple[WindowKey, int | None]]) -> str:
    return json.dumps([[bid, start, end] for (bid, start), end in keys])


def decode_windows(text: str) -> list[tuple[WindowKey, int | None]]:
    return [((bid, int(start)), None if end is None else int(end)) for bid, start, end in json.loads(text)]


def insert_reservation(conn: Connection, t: ScopedModelRegistry, row: dict[str, Any]) -> None:
    conn.execute(t.token_reservations.insert().values(**row))


def close_reservation(
    conn: Connection, t: ScopedModelRegistry, reservation_id: str, status: str, at: int
) -> RowMapping | None:
    """Close an open reservation once (only an `open` one matches); returns it, or None."""
    r = t.token_reservations
    stmt = (
        update(r)
        .where(r.c.id == reservation_id, r.c.status == "open")
        .values(status=status, closed_at=at)
        .returning(*r.c)
    )
    row = conn.execute(stmt).first()
    return None if row is None else row._mapping


def get_reservation(conn: Connection, t: ScopedModelRegistry, reservation_id: str) -> RowMapping | None:
    r = t.token_reservations
    row = conn.execute(select(r).where(r.c.id == reservation_id)).first()
    return None if row is None else row._mapping


def open_reservation_of(conn: Connection, t: ScopedModelRegistry, proposal_id: str) -> str | None:
    r = t.token_reservations
    stmt = select(r.c.id).where(r.c.proposal_id == proposal_id, r.c.status == "open")
    return conn.execute(stmt).scalar_one_or_none()


def expired_reservations(conn: Connection, t: ScopedModelRegistry, now: int) -> list[str]:
    """Open reservations past their expiry whose holder never recorded or released them (not tied to a proposal:
    those are closed when their proposal is settled or recovered)."""
    r = t.token_reservations
    stmt = select(r.c.id).where(r.c.status == "open", r.c.expires_at <= now, r.c.proposal_id.is_(None))
    return list(conn.execute(stmt.order_by(r.c.expires_at, r.c.id)).scalars())
