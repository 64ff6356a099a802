"""Token budget trackers: the pre-call check and the post-call record of a host that calls LLMs for its tenants.

`TokenBudgetTracker` (asyncio) and `SyncTokenBudgetTracker` run the same operations, built once in
`ControlPlaneCore`, on one transaction: their own (`async with cp.token_budget_tracker() as tracker:` commits
on a clean exit and rolls back on an exception) or the caller's (`from_session(...)`, which never commits).

Usage that takes a budget past its cap was billed all the same, so it must not be lost with a rollback: a tracker
on its own transaction commits everything recorded so far before it raises `TokenBudgetExhaustedError`, and goes
on in a new transaction (whatever the block does after catching the error commits or rolls back as usual). A
caller that joined its own transaction with `from_session` decides itself, and should commit too.

On SQLite a tracker's block holds the database's write lock from its start (BEGIN IMMEDIATE), and on PostgreSQL a
reserving check holds its budget rows until the block ends: keep the model call itself outside the block.
"""

from __future__ import annotations

from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from agent_control_plane.errors import ControlPlaneError, InvalidInputError, TokenBudgetExhaustedError
from agent_control_plane.plane.core import ControlPlaneCore
from agent_control_plane.plane.operation import Operation
from agent_control_plane.store.dialect import begin, join, translate
from agent_control_plane.types.identity import IdentityContext
from agent_control_plane.types.tokens import (
    BudgetCheckResult,
    BudgetPeriod,
    ModelAccessResult,
    TokenBudgetState,
    TokenUsage,
    UsageRecord,
    UsageSummary,
)

if TYPE_CHECKING:
    from agent_control_plane.aio import AsyncControlPlaneFacade
    from agent_control_plane.facade import ControlPlaneFacade

T = TypeVar("T")
Amount = Decimal | float | int | str

_OUTSIDE = "use the tracker inside `{with_} cp.token_budget_tracker() as tracker:` (or build it with from_session)"


class SyncTokenBudgetTracker:
    """Token budgets for synchronous hosts: `with cp.token_budget_tracker() as tracker: ...`."""

    def __init__(self, core: ControlPlaneCore, engine: Engine | None = None, conn: Connection | None = None) -> None:
        self._core = core
        self._engine = engine
        self._conn = conn
        self._owned = False

    @classmethod
    def from_session(cls, session: Connection | Session, plane: ControlPlaneFacade) -> Self:
        """A tracker on the caller's open transaction (a SQLAlchemy `Connection` or ORM `Session` on the control
        plane's database); its writes commit or roll back with the caller's, and it never commits itself."""
        conn = session.connection() if isinstance(session, Session) else session
        if not isinstance(conn, Connection):
            raise InvalidInputError(f"from_session needs a Connection or Session, got {type(session).__name__}")
        join(conn)
        return cls(plane._core, conn=conn)

    def __enter__(self) -> Self:
        if self._engine is None or self._conn is not None:
            raise ControlPlaneError("this tracker is already bound to a transaction; use it directly")
        try:
            conn = self._engine.connect()
            conn.begin()
            begin(conn, read_only=False)
        except SQLAlchemyError as exc:
            raise translate(exc, "token_budget_tracker") from exc
        self._conn, self._owned = conn, True
        return self

    def _commit_and_go_on(self) -> None:
        assert self._conn is not None
        try:
            self._conn.commit()
            self._conn.begin()
            begin(self._conn, read_only=False)
        except SQLAlchemyError as exc:
            raise translate(exc, "token_budget_tracker commit") from exc

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn, self._conn, self._owned = self._conn, None, False
        assert conn is not None
        try:
            if exc is None:
                conn.commit()
            else:
                conn.rollback()
        except SQLAlchemyError as error:
            raise translate(error, "token_budget_tracker commit") from error
        finally:
            conn.close()

    def _run(self, op: Operation[T]) -> T:
        if self._conn is None:
            raise ControlPlaneError(_OUTSIDE.format(with_="with"))
        try:
            result = op.fn(self._conn)
        except SQLAlchemyError as exc:
            raise translate(exc, op.name) from exc
        try:
            return op.finish(result)
        except TokenBudgetExhaustedError:
            if self._owned:
                self._commit_and_go_on()  # the billed usage lands now, whatever the block does next
            raise

    def check_budget(
        self,
        identity: IdentityContext,
        *,
        estimated_tokens: int = 0,
        estimated_cost_usd: Amount = 0,
        model_id: str | None = None,
        reserve: bool = False,
        session_id: str | None = None,
    ) -> BudgetCheckResult:
        """The pre-call hook: whether a call of this estimate fits every budget covering `identity`, and whether
        `identity` may use `model_id`.

        With `reserve=True` an allowed estimate is also reserved (atomically, in every covering budget), so
        concurrent callers can never be admitted beyond a cap; pass the result's `reservation_id` to
        `record_usage`, or `release_reservation` it if the call is not made. Unused reservations expire (crash
        recovery gives them back). A refused model is logged as `model_access.denied`, in `session_id`'s log or
        on the control stream.
        """
        return self._run(
            self._core.check_budget(
                identity,
                estimated_tokens=estimated_tokens,
                estimated_cost_usd=estimated_cost_usd,
                model_id=model_id,
                reserve=reserve,
                session_id=session_id,
            )
        )

    def record_usage(
        self,
        session_id: str | None,
        identity: IdentityContext,
        usage: TokenUsage,
        *,
        reservation_id: str | None = None,
    ) -> UsageRecord:
        """The post-call record: write the ledger row and add it to every covering budget's window.

        `session_id=None` records without a session; a session id also logs `token_usage.recorded` in that
        session's log. When the usage takes a budget past its cap, the row is written first and then
        `TokenBudgetExhaustedError` is raised (carrying the budgets' states), so the ledger always equals the
        provider's bill.
        """
        return self._run(self._core.record_usage(session_id, identity, usage, reservation_id=reservation_id))

    def release_reservation(self, reservation_id: str) -> bool:
        """Give back a reservation whose call was not made; False when it was already used, released or expired."""
        return self._run(self._core.release_reservation(reservation_id))

    def get_budget_states(self, identity: IdentityContext) -> tuple[TokenBudgetState, ...]:
        """Every budget covering `identity` in its current window: used, reserved, remaining, when it resets."""
        return self._run(self._core.budget_states(identity))

    def usage_summary(
        self, identity: IdentityContext, period: BudgetPeriod | str = BudgetPeriod.DAILY, *, timezone: str = "UTC"
    ) -> UsageSummary:
        """What the identities `identity` covers used in the current `period` window, per model, from the ledger."""
        return self._run(self._core.usage_summary(identity, period, timezone=timezone))

    def check_model_access(
        self, identity: IdentityContext, model_id: str, *, session_id: str | None = None
    ) -> ModelAccessResult:
        """Whether `identity` may call `model_id` (its tier, and its budgets' allowed models); a denial is logged."""
        return self._run(self._core.check_model_access(identity, model_id, session_id=session_id))


class TokenBudgetTracker:
    """Token budgets for asyncio hosts: `async with cp.token_budget_tracker() as tracker: ...`.

    Every method of `SyncTokenBudgetTracker`, awaited, over the same operations.
    """

    def __init__(
        self,
        core: ControlPlaneCore,
        engine: AsyncEngine | None = None,
        conn: AsyncConnection | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        self._core = core
        self._engine = engine
        self._conn = conn
        self._session = session

    @classmethod
    def from_session(cls, session: AsyncConnection | AsyncSession, plane: AsyncControlPlaneFacade) -> Self:
        """A tracker on the caller's open transaction (an `AsyncConnection` or `AsyncSession` on the control
        plane's database); its writes commit or roll back with the caller's, and it never commits itself."""
        if isinstance(session, AsyncSession):
            return cls(plane._core, session=session)
        if not isinstance(session, AsyncConnection):
            raise ControlPlaneError(
                f"from_session needs an AsyncConnection or AsyncSession, got {type(session).__name__}"
            )
        return cls(plane._core, conn=session)

    async def __aenter__(self) -> Self:
        if self._engine is None or self._conn is not None or self._session is not None:
            raise ControlPlaneError("this tracker is already bound to a transaction; use it directly")
        conn = self._engine.connect()
        try:
            await conn.start()
            await conn.begin()
            await conn.run_sync(begin, read_only=False)
        except SQLAlchemyError as exc:
            await conn.close()
            raise translate(exc, "token_budget_tracker") from exc
        self._conn = conn
        return self

    async def _commit_and_go_on(self, conn: AsyncConnection) -> None:
        try:
            await conn.commit()
            await conn.begin()
            await conn.run_sync(begin, read_only=False)
        except SQLAlchemyError as exc:
            raise translate(exc, "token_budget_tracker commit") from exc

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn, self._conn = self._conn, None
        assert conn is not None
        try:
            if exc is None:
                await conn.commit()
            else:
                await conn.rollback()
        except SQLAlchemyError as error:
            raise translate(error, "token_budget_tracker commit") from error
        finally:
            await conn.close()

    async def _connection(self) -> AsyncConnection:
        if self._session is not None:
            conn = await self._session.connection()
            await conn.run_sync(join)
            return conn
        if self._conn is None:
            raise ControlPlaneError(_OUTSIDE.format(with_="async with"))
        if self._engine is None:
            await self._conn.run_sync(join)
        return self._conn

    async def _run(self, op: Operation[T]) -> T:
        conn = await self._connection()
        try:
            result: Any = await conn.run_sync(op.fn)
        except SQLAlchemyError as exc:
            raise translate(exc, op.name) from exc
        try:
            return op.finish(result)
        except TokenBudgetExhaustedError:
            if self._engine is not None:  # our own transaction (not the caller's)
                await self._commit_and_go_on(conn)
            raise

    async def check_budget(
        self,
        identity: IdentityContext,
        *,
        estimated_tokens: int = 0,
        estimated_cost_usd: Amount = 0,
        model_id: str | None = None,
        reserve: bool = False,
        session_id: str | None = None,
    ) -> BudgetCheckResult:
        return await self._run(
            self._core.check_budget(
                identity,
                estimated_tokens=estimated_tokens,
                estimated_cost_usd=estimated_cost_usd,
                model_id=model_id,
                reserve=reserve,
                session_id=session_id,
            )
        )

    async def record_usage(
        self,
        session_id: str | None,
        identity: IdentityContext,
        usage: TokenUsage,
        *,
        reservation_id: str | None = None,
    ) -> UsageRecord:
        return await self._run(self._core.record_usage(session_id, identity, usage, reservation_id=reservation_id))

    async def release_reservation(self, reservation_id: str) -> bool:
        return await self._run(self._core.release_reservation(reservation_id))

    async def get_budget_states(self, identity: IdentityContext) -> tuple[TokenBudgetState, ...]:
        return await self._run(self._core.budget_states(identity))

    async def usage_summary(
        self, identity: IdentityContext, period: BudgetPeriod | str = BudgetPeriod.DAILY, *, timezone: str = "UTC"
    ) -> UsageSummary:
        return await self._run(self._core.usage_summary(identity, period, timezone=timezone))

    async def check_model_access(
        self, identity: IdentityContext, model_id: str, *, session_id: str | None = None
    ) -> ModelAccessResult:
        return await self._run(self._core.check_model_access(identity, model_id, session_id=session_id))


# One text per operation: the async methods carry the sync tracker's docstrings.
for _name, _member in vars(TokenBudgetTracker).items():
    _source = vars(SyncTokenBudgetTracker).get(_name)
    if not _name.startswith("_") and _source is not None and _name != "from_session":
        _member.__doc__ = _source.__doc__
