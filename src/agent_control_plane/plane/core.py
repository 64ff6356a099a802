"""`ControlPlaneCore`: validates every request and turns it into an `Operation` both facades run.

All input checking, defaults and composition live here once. The sync facade runs the returned operation in
`engine.begin()`, the async facade through `AsyncConnection.run_sync`; neither holds any logic of its own.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from agent_control_plane.clock import Clock, SystemClock, to_micros
from agent_control_plane.errors import ControlPlaneError, InvalidInputError, TokenBudgetExhaustedError
from agent_control_plane.plane import (
    approvals,
    events,
    heartbeats,
    killswitch,
    proposals,
    recovery,
    resumption,
    sessions,
    tokens,
)
from agent_control_plane.plane.context import DEFAULT_RESERVATION_TTL, PlaneContext
from agent_control_plane.plane.events import BufferStats, EventBuffer, PendingEvent
from agent_control_plane.plane.heartbeats import Heartbeat
from agent_control_plane.plane.history import recorded_proposals
from agent_control_plane.plane.operation import Operation
from agent_control_plane.plane.proposals import Outcome, ProposalRequest, Settlement
from agent_control_plane.plane.recovery import RecoveryReport
from agent_control_plane.policy.engine import PolicyEngine
from agent_control_plane.policy.evaluators import EvaluatorRegistry
from agent_control_plane.policy.model import PolicySource
from agent_control_plane.policy.model_access import ModelGovernor, ModelPolicySource
from agent_control_plane.policy.routing import DELEGATE_ACTION, RiskClassifier
from agent_control_plane.policy.whatif import WhatIfReport, what_if
from agent_control_plane.store import migrate
from agent_control_plane.store.tables import ScopedModelRegistry
from agent_control_plane.types.decisions import Decision
from agent_control_plane.types.events import EventFrame, VerifyReport
from agent_control_plane.types.identity import IdentityContext, ModelId, to_identity
from agent_control_plane.types.sessions import (
    BudgetSnapshot,
    KillScope,
    KillSwitchInfo,
    SessionInfo,
    SessionStatus,
)
from agent_control_plane.types.tickets import GrantScope, Ticket, TicketStatus
from agent_control_plane.types.tokens import (
    BudgetCheckResult,
    BudgetPeriod,
    ModelAccessResult,
    TokenBudgetConfig,
    TokenBudgetState,
    TokenUsage,
    UsageRecord,
    UsageSummary,
    to_period,
    to_timezone,
    to_tokens,
)
from agent_control_plane.types.values import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    to_count,
    to_money,
    to_name,
    to_payload,
)

DEFAULT_POLICY: dict[str, Any] = {"default_tier": "always_approve", "actions": {}}
"""With no policy given, every action needs approval: nothing runs until someone writes a policy."""


def _operator(by: str | None) -> str:
    if by is not None:
        return to_name(by, "by")
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _reason(reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInputError("a reason is required: say why, for whoever reads the log later")
    if len(reason) > 2000:
        raise InvalidInputError("reason must be at most 2000 characters")
    return reason


def _optional_name(value: object, what: str) -> str | None:
    return None if value is None else to_name(value, what)


def _scope(scope: GrantScope | None) -> GrantScope | None:
    if scope is None:
        return None
    if scope.resource is not None:
        to_name(scope.resource, "scope.resource", max_length=500)
    to_count(scope.max_uses, "scope.max_uses")
    if scope.max_uses == 0:
        raise InvalidInputError("scope.max_uses must be at least 1 (or None for no limit)")
    if scope.expires_at is not None and scope.expires_at.tzinfo is None:
        raise InvalidInputError("scope.expires_at must be timezone-aware (e.g. datetime(..., tzinfo=UTC))")
    return scope


class Waiter:
    """The agent side of a ticket: poll its outcome with backoff (10 ms doubling to 250 ms) until `timeout`."""

    def __init__(self, core: ControlPlaneCore, ticket_id: str, timeout: float) -> None:
        self._core = core
        self.ticket_id = ticket_id
        self._until = time.monotonic() + timeout
        self._delay = 0.01

    def check(self) -> Operation[Decision | None]:
        fn = partial(resumption.check_ticket, ctx=self._core.ctx, ticket_id=self.ticket_id)
        return Operation("wait_for_decision", fn)

    def next_delay(self) -> float | None:
        """Seconds to sleep before the next check, or None when the wait has timed out."""
        remaining = self._until - time.monotonic()
        if remaining <= 0:
            return None
        delay, self._delay = min(self._delay, remaining), min(self._delay * 2, 0.25)
        return delay

    def final(self) -> Operation[Decision]:
        return self._core.resume(self.ticket_id)


class ControlPlaneCore:
    """Request validation and operation building, shared by `ControlPlaneFacade` and `AsyncControlPlaneFacade`."""

    def __init__(
        self,
        *,
        policy: PolicySource | None = None,
        clock: Clock | None = None,
        registry: ScopedModelRegistry | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        event_buffer_capacity: int = 10_000,
        evaluators: EvaluatorRegistry | None = None,
        risk_classifier: RiskClassifier | None = None,
        model_policy: ModelPolicySource | None = None,
        reservation_ttl: timedelta = DEFAULT_RESERVATION_TTL,
    ) -> None:
        evaluators = evaluators or EvaluatorRegistry()
        if not isinstance(reservation_ttl, timedelta) or reservation_ttl <= timedelta(0):
            raise InvalidInputError(f"reservation_ttl must be a positive timedelta, got {reservation_ttl!r}")
        engine = PolicyEngine(
            DEFAULT_POLICY if policy is None else policy, registry=evaluators, risk_classifier=risk_classifier
        )
        self.ctx = PlaneContext(
            registry or ScopedModelRegistry(),
            clock or SystemClock(),
            engine,
            max_payload_bytes=max_payload_bytes,
            evaluators=evaluators,
            risk_classifier=risk_classifier,
            models=ModelGovernor(model_policy),
            reservation_ttl=reservation_ttl,
        )
        self.buffer = EventBuffer(capacity=event_buffer_capacity)

    @property
    def tables(self) -> ScopedModelRegistry:
        return self.ctx.tables

    # schema -------------------------------------------------------------------------------------------------
    def setup(self) -> Operation[str]:
        return Operation("setup", partial(migrate.upgrade, registry=self.tables))

    def schema_revision(self) -> Operation[str | None]:
        return Operation("schema_revision", partial(migrate.current_revision, registry=self.tables), read_only=True)

    def set_policy(self, policy: PolicySource) -> str:
        """Compile `policy` and make it the snapshot of sessions opened from now on; returns its hash.

        Compiling first means an invalid policy raises `PolicyError` and the current one stays in force.
        """
        engine = self.ctx.compile(policy)
        self.ctx.policy = engine
        return engine.policy.digest()

    # sessions -----------------------------------------------------------------------------------------------
    def open_session(
        self,
        name: str,
        *,
        agent_id: str | None,
        max_cost: Decimal | float | int | str | None,
        max_action_count: int | None,
        policy: PolicySource | None,
    ) -> Operation[str]:
        engine = self.ctx.policy if policy is None else self.ctx.compile(policy)
        fn = partial(
            sessions.open_session,
            ctx=self.ctx,
            name=to_name(name, "session name"),
            agent_id=_optional_name(agent_id, "agent_id"),
            max_cost=to_money(max_cost, "max_cost", allow_none=True),
            max_action_count=to_count(max_action_count, "max_action_count"),
            policy=engine,
        )
        return Operation("open_session", fn)

    def change_status(self, session_id: str, target: SessionStatus, reason: str | None) -> Operation[SessionInfo]:
        if reason is not None:
            reason = _reason(reason)
        fn = partial(sessions.change_status, ctx=self.ctx, session_id=session_id, target=target, reason=reason)
        return Operation(f"{target.value} session", fn)

    def get_session(self, session_id: str) -> Operation[SessionInfo]:
        fn = partial(sessions.get_session, ctx=self.ctx, session_id=session_id)
        return Operation("get_session", fn, read_only=True)

    def get_remaining_budget(self, session_id: str) -> Operation[BudgetSnapshot]:
        def fn(conn: Any) -> BudgetSnapshot:
            return sessions.get_session(conn, self.ctx, session_id).budget

        return Operation("get_remaining_budget", fn, read_only=True)

    def list_sessions(self, *, status: SessionStatus | str | None, limit: int | None) -> Operation[list[SessionInfo]]:
        wanted = None if status is None else SessionStatus(status)
        fn = partial(sessions.list_sessions, ctx=self.ctx, status=wanted, limit=to_count(limit, "limit"))
        return Operation("list_sessions", fn, read_only=True)

    # the governed action ------------------------------------------------------------------------------------
    def propose(
        self,
        session_id: str,
        action: str,
        *,
        args: dict[str, Any] | None,
        resource: str | None,
        cost: Decimal | float | int | str,
        agent_id: str | None,
        idempotency_key: str | None,
        dry_run: bool = False,
        identity: IdentityContext | None = None,
        model_id: str | None = None,
        estimated_tokens: int | None = None,
    ) -> Operation[Decision]:
        args_value, args_text = to_payload(args, "args", max_bytes=self.ctx.max_payload_bytes)
        request = ProposalRequest(
            session_id=to_name(session_id, "session_id"),
            action=to_name(action, "action"),
            args=args_value,
            args_text=args_text,
            resource=None if resource is None else to_name(resource, "resource", max_length=500),
            cost=to_money(cost, "cost") or Decimal(0),
            agent_id=_optional_name(agent_id, "agent_id"),
            idempotency_key=_optional_name(idempotency_key, "idempotency_key"),
            dry_run=bool(dry_run),
            identity=to_identity(identity),
            model_id=_optional_name(model_id, "model_id"),
            estimated_tokens=to_tokens(estimated_tokens, "estimated_tokens", allow_none=True),
        )
        return self._proposal(request)

    def delegate(
        self,
        session_id: str,
        task: str,
        *,
        to_agent: str,
        agent_id: str | None,
        args: dict[str, Any] | None,
        cost: Decimal | float | int | str,
        idempotency_key: str | None,
    ) -> Operation[Decision]:
        """A proposal of the `delegate` action: handing `task` to `to_agent` is itself governed."""
        handed = {"to": to_name(to_agent, "to_agent"), "task": to_name(task, "task"), "args": args or {}}
        return self.propose(
            session_id,
            DELEGATE_ACTION,
            args=handed,
            resource=None,
            cost=cost,
            agent_id=agent_id,
            idempotency_key=idempotency_key,
        )

    def _proposal(self, request: ProposalRequest) -> Operation[Decision]:
        """The propose operation; when the session's policy has asynchronous evaluators, with a prelude that
        gathers their verdicts before the transaction, so no lock is held while they do their I/O."""
        engine = self.ctx.cached_policy(request.session_id)
        gatherer = None if engine is None else engine.async_evaluators
        if gatherer is None:
            return Operation(
                "propose",
                partial(proposals.propose, ctx=self.ctx, req=request),
                refresh=lambda: self._proposal(request),
            )

        async def prelude() -> Operation[Decision]:
            verdicts = tuple(await gatherer.evaluate(request.facts(self.ctx.clock.now())))
            gathered = replace(request, verdicts=verdicts)
            return Operation("propose", partial(proposals.propose, ctx=self.ctx, req=gathered))

        return Operation("propose", partial(proposals.propose, ctx=self.ctx, req=request), prelude=prelude)

    def settle(
        self,
        proposal_id: str,
        *,
        actual_cost: Decimal | float | int | str | None,
        outcome: Outcome | str,
        result: dict[str, Any] | None,
        token_usage: TokenUsage | None = None,
    ) -> Operation[Settlement]:
        try:
            ended = Outcome(outcome)
        except ValueError:
            raise InvalidInputError(
                f"outcome {outcome!r} is not one of {', '.join(o.value for o in Outcome)}"
            ) from None
        result_value, result_text = to_payload(result, "result", max_bytes=self.ctx.max_payload_bytes)
        fn = partial(
            proposals.settle,
            ctx=self.ctx,
            proposal_id=to_name(proposal_id, "proposal_id"),
            outcome=ended,
            actual_cost=to_money(actual_cost, "actual_cost", allow_none=True),
            result=result_value,
            result_text=result_text,
            token_usage=None if token_usage is None else _usage(token_usage),
        )
        return Operation("settle", fn, after=_raise_if_settled_over)

    def heartbeat(self, proposal_id: str) -> Operation[Heartbeat]:
        fn = partial(heartbeats.heartbeat, ctx=self.ctx, proposal_id=to_name(proposal_id, "proposal_id"))
        return Operation("heartbeat", fn)

    # approvals --------------------------------------------------------------------------------------------
    def approve(
        self, ticket_id: str, *, approver: str, comment: str | None, scope: GrantScope | None = None
    ) -> Operation[Ticket]:
        fn = partial(
            approvals.approve,
            ctx=self.ctx,
            ticket_id=to_name(ticket_id, "ticket_id"),
            approver=to_name(approver, "approver"),
            comment=None if comment is None else _reason(comment),
            scope=_scope(scope),
        )
        return Operation("approve", fn)

    def deny(self, ticket_id: str, *, approver: str, reason: str) -> Operation[Ticket]:
        fn = partial(
            approvals.deny,
            ctx=self.ctx,
            ticket_id=to_name(ticket_id, "ticket_id"),
            approver=to_name(approver, "approver"),
            reason=_reason(reason),
        )
        return Operation("deny", fn)

    def resume(self, ticket_id: str, idempotency_key: str | None = None) -> Operation[Decision]:
        fn = partial(
            resumption.resume,
            ctx=self.ctx,
            ticket_id=to_name(ticket_id, "ticket_id"),
            idempotency_key=_optional_name(idempotency_key, "idempotency_key"),
        )
        return Operation("resume", fn)

    def waiter(self, ticket_id: str, timeout: float) -> Waiter:
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout < 0:
            raise InvalidInputError(f"timeout must be a number of seconds, 0 or more, got {timeout!r}")
        return Waiter(self, to_name(ticket_id, "ticket_id"), float(timeout))

    def get_ticket(self, ticket_id: str) -> Operation[Ticket]:
        fn = partial(approvals.get, ctx=self.ctx, ticket_id=to_name(ticket_id, "ticket_id"))
        return Operation("get_ticket", fn, read_only=True)

    def list_tickets(
        self, *, status: TicketStatus | str | None, session_id: str | None, limit: int | None
    ) -> Operation[list[Ticket]]:
        wanted = None if status is None else TicketStatus(status)
        fn = partial(
            approvals.list_all, ctx=self.ctx, status=wanted, session_id=session_id, limit=to_count(limit, "limit")
        )
        return Operation("list_tickets", fn, read_only=True)

    def expire_tickets(self) -> Operation[dict[str, str]]:
        return Operation("expire_tickets", partial(approvals.expire_overdue, ctx=self.ctx))

    def recover(self, *, older_than: timedelta | None) -> Operation[RecoveryReport]:
        if older_than is not None and (not isinstance(older_than, timedelta) or older_than < timedelta(0)):
            raise InvalidInputError(f"older_than must be a timedelta of 0 or more, got {older_than!r}")
        return Operation("recover", partial(recovery.recover, ctx=self.ctx, older_than=older_than))

    # kill switches ------------------------------------------------------------------------------------------
    def engage_kill(
        self, scope: KillScope | str, target: str | None, *, reason: str, by: str | None
    ) -> Operation[KillSwitchInfo]:
        kill_scope, kill_target = self._kill_target(scope, target)
        fn = partial(
            killswitch.engage,
            ctx=self.ctx,
            scope=kill_scope,
            target=kill_target,
            reason=_reason(reason),
            by=_operator(by),
        )
        return Operation(f"kill {kill_scope.value}", fn)

    def release_kill(
        self, scope: KillScope | str, target: str | None, *, reason: str, by: str | None
    ) -> Operation[KillSwitchInfo]:
        kill_scope, kill_target = self._kill_target(scope, target)
        fn = partial(
            killswitch.release,
            ctx=self.ctx,
            scope=kill_scope,
            target=kill_target,
            reason=_reason(reason),
            by=_operator(by),
        )
        return Operation(f"release {kill_scope.value} kill", fn)

    def list_kills(self, *, engaged_only: bool) -> Operation[list[KillSwitchInfo]]:
        fn = partial(killswitch.list_kills, ctx=self.ctx, engaged_only=engaged_only)
        return Operation("list_kills", fn, read_only=True)

    @staticmethod
    def _kill_target(scope: KillScope | str, target: str | None) -> tuple[KillScope, str | None]:
        try:
            kill_scope = KillScope(scope)
        except ValueError:
            raise InvalidInputError(
                f"kill scope {scope!r} is not one of {', '.join(s.value for s in KillScope)}"
            ) from None
        if kill_scope is KillScope.SYSTEM:
            if target is not None:
                raise InvalidInputError("a system kill switch takes no target")
            return kill_scope, None
        if target is None:
            raise InvalidInputError(f"a {kill_scope.value} kill switch needs the {kill_scope.value} id as target")
        return kill_scope, to_name(target, f"{kill_scope.value} id")

    # events -------------------------------------------------------------------------------------------------
    def emit(
        self, session_id: str, kind: str, payload: dict[str, Any] | None, *, state_bearing: bool
    ) -> Operation[int | None]:
        _, text = to_payload(payload, "payload", max_bytes=self.ctx.max_payload_bytes)
        event = PendingEvent(
            to_name(session_id, "session_id"), events.check_host_kind(kind), text, self.ctx.now_micros()
        )
        if state_bearing:
            return Operation("emit", partial(events.emit_state_bearing, ctx=self.ctx, event=event))
        if self.buffer.add(event):
            return self.flush(raise_errors=False)
        return Operation("emit", lambda _conn: None, connection=False)

    def flush(self, *, raise_errors: bool) -> Operation[Any]:
        """Write the buffered best-effort events. On failure they go back into the buffer."""
        batch = self.buffer.take()
        if not batch:
            return Operation("flush_events", lambda _conn: 0, connection=False)

        def fn(conn: Any) -> int:
            orphans = events.write(conn, self.ctx, batch)
            self.buffer.drop(len(orphans))
            return len(batch) - len(orphans)

        def recover(error: ControlPlaneError) -> int | None:
            self.buffer.put_back(batch)
            if raise_errors:
                raise error
            return None

        return Operation("flush_events", fn, recover=recover)

    def buffer_stats(self) -> BufferStats:
        return self.buffer.stats()

    def replay(self, session_id: str, *, after_seq: int, limit: int | None) -> Operation[list[EventFrame]]:
        fn = partial(
            events.replay,
            ctx=self.ctx,
            session_id=session_id,
            after_seq=to_count(after_seq, "after_seq") or 0,
            limit=to_count(limit, "limit"),
        )
        return Operation("replay", fn, read_only=True)

    def verify(self, session_id: str) -> Operation[VerifyReport]:
        return Operation("verify", partial(events.verify, ctx=self.ctx, session_id=session_id), read_only=True)

    def what_if(
        self, policy: PolicySource, *, session_id: str | None, since: datetime | timedelta | None
    ) -> Operation[WhatIfReport]:
        engine = self.ctx.compile(policy)
        if isinstance(since, timedelta):
            since = self.ctx.clock.now() - since
        if since is not None and since.tzinfo is None:
            raise InvalidInputError("since must be timezone-aware (e.g. datetime(..., tzinfo=UTC)) or a timedelta")
        since_micros = None if since is None else to_micros(since)

        def fn(conn: Any) -> WhatIfReport:
            return what_if(engine, recorded_proposals(conn, self.ctx, session_id, since_micros))

        return Operation("what_if", fn, read_only=True)

    def verify_all(self) -> Operation[list[VerifyReport]]:
        return Operation("verify_all", partial(events.verify_all, ctx=self.ctx), read_only=True)

    # token governance -------------------------------------------------------------------------------------
    def check_budget(
        self,
        identity: IdentityContext,
        *,
        estimated_tokens: int,
        estimated_cost_usd: Decimal | float | int | str,
        model_id: str | None,
        reserve: bool,
        session_id: str | None,
    ) -> Operation[BudgetCheckResult]:
        fn = partial(
            tokens.check_budget,
            ctx=self.ctx,
            identity=to_identity(identity),
            tokens=to_tokens(estimated_tokens, "estimated_tokens") or 0,
            cost=to_money(estimated_cost_usd, "estimated_cost_usd") or Decimal(0),
            model_id=_optional_name(model_id, "model_id"),
            reserve_estimate=bool(reserve),
            session_id=_optional_name(session_id, "session_id"),
        )
        return Operation("check_budget", fn)

    def record_usage(
        self,
        session_id: str | None,
        identity: IdentityContext,
        usage: TokenUsage,
        *,
        reservation_id: str | None,
    ) -> Operation[UsageRecord]:
        fn = partial(
            tokens.record_usage,
            ctx=self.ctx,
            session_id=_optional_name(session_id, "session_id"),
            identity=to_identity(identity),
            usage=_usage(usage),
            reservation_id=_optional_name(reservation_id, "reservation_id"),
        )
        return Operation("record_usage", fn, after=_raise_if_over)

    def release_reservation(self, reservation_id: str) -> Operation[bool]:
        fn = partial(tokens.release_reservation, ctx=self.ctx, reservation_id=to_name(reservation_id, "reservation_id"))
        return Operation("release_reservation", fn)

    def budget_states(self, identity: IdentityContext) -> Operation[tuple[TokenBudgetState, ...]]:
        fn = partial(tokens.budget_states, ctx=self.ctx, identity=to_identity(identity))
        return Operation("get_budget_states", fn, read_only=True)

    def usage_summary(
        self, identity: IdentityContext, period: BudgetPeriod | str, *, timezone: str
    ) -> Operation[UsageSummary]:
        fn = partial(
            tokens.usage_summary,
            ctx=self.ctx,
            identity=to_identity(identity),
            period=to_period(period),
            timezone=to_timezone(timezone),
        )
        return Operation("usage_summary", fn, read_only=True)

    def check_model_access(
        self, identity: IdentityContext, model_id: str, *, session_id: str | None
    ) -> Operation[ModelAccessResult]:
        fn = partial(
            tokens.check_model_access,
            ctx=self.ctx,
            identity=to_identity(identity),
            model_id=ModelId(to_name(model_id, "model_id")),
            session_id=_optional_name(session_id, "session_id"),
        )
        return Operation("check_model_access", fn)

    def save_budget(self, config: TokenBudgetConfig, mode: tokens.SaveMode) -> Operation[tokens.SavedBudget]:
        fn = partial(tokens.save_budget, ctx=self.ctx, config=_config(config), mode=mode)
        return Operation(f"{mode} token budget", fn)

    def apply_budgets(self, configs: list[TokenBudgetConfig]) -> Operation[list[tokens.SavedBudget]]:
        """Create or update each of `configs` in one transaction (a budget created at run time is left alone)."""
        checked = [_config(config) for config in configs]
        seen: dict[str, TokenBudgetConfig] = {}
        for config in checked:
            if config.budget_id in seen:
                raise InvalidInputError(
                    f"token_budget_configs holds two {config.budget_period.value} budgets for "
                    f"{config.identity.describe()}; keep one"
                )
            seen[config.budget_id] = config

        def fn(conn: Any) -> list[tokens.SavedBudget]:
            return [tokens.save_budget(conn, self.ctx, config, "set") for config in checked]

        return Operation("apply token budgets", fn)

    def delete_budget(self, identity: IdentityContext, period: BudgetPeriod | str) -> Operation[TokenBudgetConfig]:
        fn = partial(tokens.delete_budget, ctx=self.ctx, identity=to_identity(identity), period=to_period(period))
        return Operation("delete token budget", fn)

    def list_budgets(self) -> Operation[list[TokenBudgetState]]:
        return Operation("list token budgets", partial(tokens.list_budgets, ctx=self.ctx), read_only=True)


def _usage(usage: object) -> TokenUsage:
    if not isinstance(usage, TokenUsage):
        raise InvalidInputError(
            f"usage must be a TokenUsage(model_id=…, input_tokens=…, output_tokens=…, …), got {type(usage).__name__}"
        )
    return usage


def _config(config: object) -> TokenBudgetConfig:
    if not isinstance(config, TokenBudgetConfig):
        raise InvalidInputError(
            f"a token budget must be a TokenBudgetConfig(identity=…, period=…, …), got {type(config).__name__}"
        )
    return config


def _raise_if_over(record: UsageRecord) -> UsageRecord:
    if record.over_budget:
        raise TokenBudgetExhaustedError(tokens.exhausted_message(record), record.states, record.usage_id)
    return record


def _raise_if_settled_over(settlement: Settlement) -> Settlement:
    if settlement.token_usage is not None:
        _raise_if_over(settlement.token_usage)
    return settlement
