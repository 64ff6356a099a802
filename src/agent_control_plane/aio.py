"""`AsyncControlPlaneFacade`: the same control plane for asyncio code.

It holds no storage logic: each method builds the same `Operation` as `ControlPlaneFacade` (in
`ControlPlaneCore`) and runs it on an async engine through `AsyncConnection.run_sync`. Docstrings are taken from
the sync facade, and a test compares both classes' signatures so they cannot drift.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Self, TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_control_plane.clock import Clock
from agent_control_plane.facade import Amount, ControlPlaneFacade
from agent_control_plane.plane.context import DEFAULT_RESERVATION_TTL
from agent_control_plane.plane.core import ControlPlaneCore
from agent_control_plane.plane.events import BufferStats
from agent_control_plane.plane.heartbeats import Heartbeat
from agent_control_plane.plane.operation import GatherVerdicts, Operation, failure, perform
from agent_control_plane.plane.proposals import Outcome, Settlement
from agent_control_plane.plane.recovery import RecoveryReport
from agent_control_plane.policy.evaluators import EvaluatorRegistry
from agent_control_plane.policy.model import PolicySource
from agent_control_plane.policy.model_access import ModelPolicySource
from agent_control_plane.policy.routing import RiskClassifier
from agent_control_plane.policy.whatif import WhatIfReport
from agent_control_plane.store.dialect import (
    SqliteSync,
    StorageOptions,
    create_asynchronous_engine,
)
from agent_control_plane.store.notify import AsyncListener
from agent_control_plane.store.tables import ScopedModelRegistry
from agent_control_plane.tracker import TokenBudgetTracker
from agent_control_plane.types.decisions import Decision
from agent_control_plane.types.events import EventFrame, VerifyReport
from agent_control_plane.types.identity import IdentityContext
from agent_control_plane.types.sessions import (
    BudgetSnapshot,
    KillScope,
    KillSwitchInfo,
    SessionInfo,
    SessionStatus,
)
from agent_control_plane.types.tickets import GrantScope, Ticket, TicketStatus
from agent_control_plane.types.tokens import BudgetPeriod, TokenBudgetConfig, TokenBudgetState, TokenUsage
from agent_control_plane.types.values import DEFAULT_MAX_PAYLOAD_BYTES

T = TypeVar("T")


class AsyncControlPlaneFacade:
    """The control plane for asyncio hosts; every method of `ControlPlaneFacade`, awaited."""

    def __init__(self, engine: AsyncEngine, core: ControlPlaneCore) -> None:
        self._engine = engine
        self._core = core

    @classmethod
    def from_database_url(
        cls,
        database_url: str | URL = "sqlite:///./acp.db",
        *,
        policy: PolicySource | None = None,
        clock: Clock | None = None,
        table_prefix: str = "acp_",
        schema: str | None = None,
        registry: ScopedModelRegistry | None = None,
        sqlite_synchronous: SqliteSync = "FULL",
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        event_buffer_capacity: int = 10_000,
        evaluators: EvaluatorRegistry | None = None,
        risk_classifier: RiskClassifier | None = None,
        model_policy: ModelPolicySource | None = None,
        reservation_ttl: timedelta = DEFAULT_RESERVATION_TTL,
    ) -> Self:
        core = ControlPlaneCore(
            policy=policy,
            clock=clock,
            registry=registry or ScopedModelRegistry(table_prefix, schema),
            max_payload_bytes=max_payload_bytes,
            event_buffer_capacity=event_buffer_capacity,
            evaluators=evaluators,
            risk_classifier=risk_classifier,
            model_policy=model_policy,
            reservation_ttl=reservation_ttl,
        )
        options = StorageOptions(sqlite_synchronous=sqlite_synchronous)
        return cls(create_asynchronous_engine(database_url, options), core)

    async def _run(self, op: Operation[T]) -> T:
        if not op.connection:
            return op.fn(None)
        attempt = 0
        while True:
            attempt += 1
            if op.prelude is not None:
                op = await op.prelude()
            try:
                async with self._engine.connect() as conn, conn.begin():
                    result = await conn.run_sync(perform, op)
            except GatherVerdicts:
                op = op.refresh() if op.refresh is not None else op
                continue
            except Exception as exc:
                error = failure(op, exc, attempt)
                if error is None:
                    continue
                if op.recover is not None:
                    return op.recover(error)
                raise error from exc
            return op.finish(result)

    @property
    def registry(self) -> ScopedModelRegistry:
        return self._core.tables

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def setup(self) -> str:
        return await self._run(self._core.setup())

    async def schema_revision(self) -> str | None:
        return await self._run(self._core.schema_revision())

    def set_policy(self, policy: PolicySource) -> str:
        return self._core.set_policy(policy)

    async def open_session(
        self,
        name: str,
        *,
        agent_id: str | None = None,
        max_cost: Amount | None = None,
        max_action_count: int | None = None,
        policy: PolicySource | None = None,
    ) -> str:
        return await self._run(
            self._core.open_session(
                name, agent_id=agent_id, max_cost=max_cost, max_action_count=max_action_count, policy=policy
            )
        )

    async def pause_session(self, session_id: str, *, reason: str | None = None) -> SessionInfo:
        return await self._run(self._core.change_status(session_id, SessionStatus.PAUSED, reason))

    async def resume_session(self, session_id: str, *, reason: str | None = None) -> SessionInfo:
        return await self._run(self._core.change_status(session_id, SessionStatus.ACTIVE, reason))

    async def close_session(self, session_id: str, *, reason: str | None = None) -> SessionInfo:
        return await self._run(self._core.change_status(session_id, SessionStatus.COMPLETED, reason))

    async def abort_session(self, session_id: str, *, reason: str) -> SessionInfo:
        return await self._run(self._core.change_status(session_id, SessionStatus.ABORTED, reason))

    async def get_session(self, session_id: str) -> SessionInfo:
        return await self._run(self._core.get_session(session_id))

    async def list_sessions(
        self, *, status: SessionStatus | str | None = None, limit: int | None = None
    ) -> list[SessionInfo]:
        return await self._run(self._core.list_sessions(status=status, limit=limit))

    async def get_remaining_budget(self, session_id: str) -> BudgetSnapshot:
        return await self._run(self._core.get_remaining_budget(session_id))

    async def propose(
        self,
        session_id: str,
        action: str,
        *,
        args: dict[str, Any] | None = None,
        resource: str | None = None,
        cost: Amount = 0,
        agent_id: str | None = None,
        idempotency_key: str | None = None,
        dry_run: bool = False,
        identity: IdentityContext | None = None,
        model_id: str | None = None,
        estimated_tokens: int | None = None,
    ) -> Decision:
        return await self._run(
            self._core.propose(
                session_id,
                action,
                args=args,
                resource=resource,
                cost=cost,
                agent_id=agent_id,
                idempotency_key=idempotency_key,
                dry_run=dry_run,
                identity=identity,
                model_id=model_id,
                estimated_tokens=estimated_tokens,
            )
        )

    async def delegate(
        self,
        session_id: str,
        task: str,
        *,
        to_agent: str,
        agent_id: str | None = None,
        args: dict[str, Any] | None = None,
        cost: Amount = 0,
        idempotency_key: str | None = None,
    ) -> Decision:
        return await self._run(
            self._core.delegate(
                session_id,
                task,
                to_agent=to_agent,
                agent_id=agent_id,
                args=args,
                cost=cost,
                idempotency_key=idempotency_key,
            )
        )

    async def settle(
        self,
        proposal_id: str,
        *,
        actual_cost: Amount | None = None,
        outcome: Outcome | str = Outcome.SUCCEEDED,
        result: dict[str, Any] | None = None,
        token_usage: TokenUsage | None = None,
    ) -> Settlement:
        return await self._run(
            self._core.settle(
                proposal_id, actual_cost=actual_cost, outcome=outcome, result=result, token_usage=token_usage
            )
        )

    async def heartbeat(self, proposal_id: str) -> Heartbeat:
        return await self._run(self._core.heartbeat(proposal_id))

    async def approve(self, ticket_id: str, *, approver: str, comment: str | None = None) -> Ticket:
        return await self._run(self._core.approve(ticket_id, approver=approver, comment=comment))

    async def approve_for_session(
        self, ticket_id: str, *, approver: str, scope: GrantScope | None = None, comment: str | None = None
    ) -> Ticket:
        return await self._run(
            self._core.approve(ticket_id, approver=approver, comment=comment, scope=scope or GrantScope())
        )

    async def deny(self, ticket_id: str, *, approver: str, reason: str) -> Ticket:
        return await self._run(self._core.deny(ticket_id, approver=approver, reason=reason))

    async def resume(self, ticket_id: str, *, idempotency_key: str | None = None) -> Decision:
        return await self._run(self._core.resume(ticket_id, idempotency_key))

    async def get_ticket(self, ticket_id: str) -> Ticket:
        return await self._run(self._core.get_ticket(ticket_id))

    async def list_tickets(
        self, *, status: TicketStatus | str | None = None, session_id: str | None = None, limit: int | None = None
    ) -> list[Ticket]:
        return await self._run(self._core.list_tickets(status=status, session_id=session_id, limit=limit))

    async def expire_tickets(self) -> dict[str, str]:
        return await self._run(self._core.expire_tickets())

    async def wait_for_decision(self, ticket_id: str, *, timeout: float = 60.0) -> Decision:
        waiter = self._core.waiter(ticket_id, timeout)
        async with AsyncListener(self._engine.url, self._core.tables) as listener:
            while (decided := await self._run(waiter.check())) is None:
                delay = waiter.next_delay()
                if delay is None:
                    return await self._run(waiter.final())
                await listener.wait(delay)
            return decided

    async def recover(self, *, older_than: timedelta | None = None) -> RecoveryReport:
        return await self._run(self._core.recover(older_than=older_than))

    async def kill_system(self, *, reason: str, by: str | None = None) -> KillSwitchInfo:
        return await self._run(self._core.engage_kill(KillScope.SYSTEM, None, reason=reason, by=by))

    async def kill_session(self, session_id: str, *, reason: str, by: str | None = None) -> KillSwitchInfo:
        return await self._run(self._core.engage_kill(KillScope.SESSION, session_id, reason=reason, by=by))

    async def kill_agent(self, agent_id: str, *, reason: str, by: str | None = None) -> KillSwitchInfo:
        return await self._run(self._core.engage_kill(KillScope.AGENT, agent_id, reason=reason, by=by))

    async def release_kill(
        self, scope: KillScope | str, target: str | None = None, *, reason: str, by: str | None = None
    ) -> KillSwitchInfo:
        return await self._run(self._core.release_kill(scope, target, reason=reason, by=by))

    async def list_kills(self, *, engaged_only: bool = True) -> list[KillSwitchInfo]:
        return await self._run(self._core.list_kills(engaged_only=engaged_only))

    async def emit(
        self, session_id: str, kind: str, payload: dict[str, Any] | None = None, *, state_bearing: bool = True
    ) -> int | None:
        return await self._run(self._core.emit(session_id, kind, payload, state_bearing=state_bearing))

    async def flush_events(self) -> int:
        written: int = await self._run(self._core.flush(raise_errors=True))
        return written

    def event_buffer_stats(self) -> BufferStats:
        return self._core.buffer_stats()

    async def replay(self, session_id: str, *, after_seq: int = 0, limit: int | None = None) -> list[EventFrame]:
        return await self._run(self._core.replay(session_id, after_seq=after_seq, limit=limit))

    async def verify(self, session_id: str) -> VerifyReport:
        return await self._run(self._core.verify(session_id))

    async def what_if(
        self, policy: PolicySource, *, session_id: str | None = None, since: datetime | timedelta | None = None
    ) -> WhatIfReport:
        return await self._run(self._core.what_if(policy, session_id=session_id, since=since))

    async def verify_all(self) -> list[VerifyReport]:
        return await self._run(self._core.verify_all())

    def token_budget_tracker(self) -> TokenBudgetTracker:
        return TokenBudgetTracker(self._core, self._engine)

    async def create_token_budget(self, config: TokenBudgetConfig) -> TokenBudgetState:
        return (await self._run(self._core.save_budget(config, "create"))).state

    async def update_token_budget(self, config: TokenBudgetConfig) -> TokenBudgetState:
        return (await self._run(self._core.save_budget(config, "update"))).state

    async def set_token_budget(self, config: TokenBudgetConfig) -> TokenBudgetState:
        return (await self._run(self._core.save_budget(config, "set"))).state

    async def apply_token_budgets(self, configs: list[TokenBudgetConfig]) -> list[TokenBudgetState]:
        return [saved.state for saved in await self._run(self._core.apply_budgets(configs))]

    async def delete_token_budget(self, identity: IdentityContext, period: BudgetPeriod | str) -> TokenBudgetConfig:
        return await self._run(self._core.delete_budget(identity, period))

    async def list_token_budgets(self) -> list[TokenBudgetState]:
        return await self._run(self._core.list_budgets())

    async def close(self) -> None:
        await self._run(self._core.flush(raise_errors=False))
        await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


# One text per operation: the async methods carry the sync facade's docstrings.
for _name, _member in vars(AsyncControlPlaneFacade).items():
    _source = vars(ControlPlaneFacade).get(_name)
    if _name.startswith("__") or _source is None:
        continue
    if isinstance(_member, classmethod | staticmethod):
        _member.__func__.__doc__ = _source.__func__.__doc__
    elif isinstance(_member, property):
        _member.__doc__ = _source.__doc__
    else:
        _member.__doc__ = _source.__doc__
