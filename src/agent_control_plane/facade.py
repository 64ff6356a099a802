"""`ControlPlaneFacade`: the synchronous control plane.

Every method validates its input in `ControlPlaneCore` and runs the resulting operation in one transaction.
`AsyncControlPlaneFacade` (aio.py) runs the very same operations on an async engine.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from agent_control_plane.clock import Clock
from agent_control_plane.plane.context import DEFAULT_RESERVATION_TTL
from agent_control_plane.plane.core import ControlPlaneCore
from agent_control_plane.plane.events import BufferStats
from agent_control_plane.plane.heartbeats import Heartbeat
from agent_control_plane.plane.operation import GatherVerdicts, Operation, failure, perform, run_blocking
from agent_control_plane.plane.proposals import Outcome, Settlement
from agent_control_plane.plane.recovery import RecoveryReport
from agent_control_plane.policy.evaluators import EvaluatorRegistry
from agent_control_plane.policy.model import PolicySource
from agent_control_plane.policy.model_access import ModelPolicySource
from agent_control_plane.policy.routing import RiskClassifier
from agent_control_plane.policy.whatif import WhatIfReport
from agent_control_plane.store.dialect import SqliteSync, StorageOptions, create_sync_engine
from agent_control_plane.store.notify import Listener
from agent_control_plane.store.tables import ScopedModelRegistry
from agent_control_plane.tracker import SyncTokenBudgetTracker
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
Amount = Decimal | float | int | str


class ControlPlaneFacade:
    """The control plane, embedded: decide, reserve and record before every side effect.

    Build it with `from_database_url(...)`, call `setup()` once, then `open_session` / `propose` / `settle`.
    Safe to share between threads; each process opens its own (they coordinate through the database).
    """

    def __init__(self, engine: Engine, core: ControlPlaneCore) -> None:
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
        """Connect to `database_url` (`sqlite:///path.db` or `postgresql://…`).

        `policy` is a YAML/JSON path, a dict or a `Policy`; without one every action needs approval.
        `registry` (or `table_prefix` / `schema`) names this control plane's tables. `clock` defaults to the
        system clock; pass a `ManualClock` to simulate time. `evaluators` holds custom evaluator types (by
        default the built-ins plus those discovered from the `agent_control_plane.evaluators` entry points);
        `risk_classifier` may raise the risk level the policy's risk rules give a proposal. `model_policy` (a
        `ModelPolicy`, dict or YAML path) sets model tiers and who may use them; `reservation_ttl` is how long an
        unused token reservation holds its room. `ControlPlaneSetup` builds one with token budgets as well.
        """
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
        return cls(create_sync_engine(database_url, StorageOptions(sqlite_synchronous=sqlite_synchronous)), core)

    def _run(self, op: Operation[T]) -> T:
        if not op.connection:
            return op.fn(None)
        attempt = 0
        while True:
            attempt += 1
            if op.prelude is not None:
                op = run_blocking(op.prelude())
            try:
                with self._engine.connect() as conn, conn.begin():
                    result = perform(conn, op)
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
        """The tables this control plane uses."""
        return self._core.tables

    @property
    def engine(self) -> Engine:
        return self._engine

    # schema -------------------------------------------------------------------------------------------------
    def setup(self) -> str:
        """Create or upgrade the schema to the newest revision (idempotent, safe from several processes)."""
        return self._run(self._core.setup())

    def schema_revision(self) -> str | None:
        """The schema revision the database is at, or None before `setup()`."""
        return self._run(self._core.schema_revision())

    def set_policy(self, policy: PolicySource) -> str:
        """Use `policy` for sessions opened from now on; running sessions keep their snapshot. Returns its hash.

        An invalid policy raises `PolicyError` and the current policy stays in force. No database access.
        """
        return self._core.set_policy(policy)

    # sessions -----------------------------------------------------------------------------------------------
    def open_session(
        self,
        name: str,
        *,
        agent_id: str | None = None,
        max_cost: Amount | None = None,
        max_action_count: int | None = None,
        policy: PolicySource | None = None,
    ) -> str:
        """Open an active session and return its id.

        The session keeps a snapshot of the policy (this control plane's, or `policy`) for its whole life;
        `max_cost` and `max_action_count` bound what its allowed proposals may reserve (None: no limit).
        """
        return self._run(
            self._core.open_session(
                name, agent_id=agent_id, max_cost=max_cost, max_action_count=max_action_count, policy=policy
            )
        )

    def pause_session(self, session_id: str, *, reason: str | None = None) -> SessionInfo:
        """Stop a session taking proposals until `resume_session`."""
        return self._run(self._core.change_status(session_id, SessionStatus.PAUSED, reason))

    def resume_session(self, session_id: str, *, reason: str | None = None) -> SessionInfo:
        """Let a paused session take proposals again."""
        return self._run(self._core.change_status(session_id, SessionStatus.ACTIVE, reason))

    def close_session(self, session_id: str, *, reason: str | None = None) -> SessionInfo:
        """Complete a session; it takes no more proposals (open reservations can still be settled)."""
        return self._run(self._core.change_status(session_id, SessionStatus.COMPLETED, reason))

    def abort_session(self, session_id: str, *, reason: str) -> SessionInfo:
        """End a session as aborted; it takes no more proposals."""
        return self._run(self._core.change_status(session_id, SessionStatus.ABORTED, reason))

    def get_session(self, session_id: str) -> SessionInfo:
        """A session's status, budget and event count."""
        return self._run(self._core.get_session(session_id))

    def list_sessions(
        self, *, status: SessionStatus | str | None = None, limit: int | None = None
    ) -> list[SessionInfo]:
        """Sessions, oldest first, optionally only those with `status`."""
        return self._run(self._core.list_sessions(status=status, limit=limit))

    def get_remaining_budget(self, session_id: str) -> BudgetSnapshot:
        """A session's limits, what is spent and reserved, and what remains (None: no limit)."""
        return self._run(self._core.get_remaining_budget(session_id))

    # the governed action ------------------------------------------------------------------------------------
    def propose(
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
        """Ask to perform `action`; execute it only if the returned `Decision.allowed` is True.

        One transaction checks kill switches, the session's status, its policy tier and its budget, reserves
        `cost` and one action when allowed, and records the decision in the session's log. With an
        `idempotency_key`, a retry returns the first decision instead of reserving again (not allowed, code
        `already_settled`, once that proposal has been settled). `dry_run=True`
        marks a rehearsal (conditions see `mode: dry_run`; auto_approve may be limited to dry runs).

        `identity` (org, team, user) is what conditions on `org` / `team` / `user` see. A model call also names
        `model_id` and/or `estimated_tokens`: then the same decision checks the identity's model access (denied
        with code `model_access_denied`) and reserves `estimated_tokens` and `cost` in every token budget covering
        the identity (denied with `token_budget_exceeded` when one has no room); `settle` records the real usage.
        """
        return self._run(
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

    def delegate(
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
        """Propose handing `task` (an action) to agent `to_agent`: a governed proposal like any other.

        The proposal's action is `delegate` with args `{"to": …, "task": …, "args": …}`; the policy's routing denies
        it when the target is unregistered (and registration is required) or cannot perform the task, and its
        rules decide the `delegate` action's tier otherwise.
        """
        return self._run(
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

    def settle(
        self,
        proposal_id: str,
        *,
        actual_cost: Amount | None = None,
        outcome: Outcome | str = Outcome.SUCCEEDED,
        result: dict[str, Any] | None = None,
        token_usage: TokenUsage | None = None,
    ) -> Settlement:
        """Close an allowed proposal's reservation with what it really cost, once.

        Without `actual_cost`, a success is charged its reservation and a failure nothing. For a model call,
        `token_usage` records what the provider billed against the proposal's identity (giving back its token
        reservation; without it the reservation is simply given back); if that takes a token budget past its cap,
        the settlement and the usage commit and then `TokenBudgetExhaustedError` is raised.
        """
        return self._run(
            self._core.settle(
                proposal_id, actual_cost=actual_cost, outcome=outcome, result=result, token_usage=token_usage
            )
        )

    def heartbeat(self, proposal_id: str) -> Heartbeat:
        """Say that an allowed action is still running, so it keeps its claim while it runs long; call it
        periodically until `settle`, well within the session policy's `lease_seconds` and
        `recovery.interrupted_after_seconds` (`Heartbeat.due_by` is the latest time for the next beat).

        In one transaction, records the beat on the proposal (crash recovery measures an open action's age from its
        last beat, so it is not interrupted while it beats) and pushes its live leases' expiry to now plus
        `lease_seconds`. A lease that had already expired is not revived, since another action may hold its key by
        now: it is listed in `Heartbeat.lapsed`. `Heartbeat.lease_expires_at` is None when the proposal holds no
        lease (no concurrency limits in the session's policy, or every lease lapsed).

        Raises `AlreadySettledError` when the proposal was settled, naming the outcome: `interrupted` means crash
        recovery closed it, so the claim is lost and the work should stop (its `settle` will be refused). Also
        `AlreadySettledError` for a proposal that was never allowed, and `ProposalNotFoundError` for an unknown id.
        A beat writes no event to the session's log: it changes no budget, authorization or outcome, and one event
        per beat would grow the log with every action's running time.
        """
        return self._run(self._core.heartbeat(proposal_id))

    # approvals ------------------------------------------------------------------------------------------------
    def approve(self, ticket_id: str, *, approver: str, comment: str | None = None) -> Ticket:
        """Approve the exact call of a ticket, once. The approver cannot be the agent that asked."""
        return self._run(self._core.approve(ticket_id, approver=approver, comment=comment))

    def approve_for_session(
        self, ticket_id: str, *, approver: str, scope: GrantScope | None = None, comment: str | None = None
    ) -> Ticket:
        """Approve the ticket's call and grant its action for the rest of the session.

        `scope` narrows the grant: a resource (exact or glob), a maximum number of uses, an expiry.
        """
        return self._run(self._core.approve(ticket_id, approver=approver, comment=comment, scope=scope or GrantScope()))

    def deny(self, ticket_id: str, *, approver: str, reason: str) -> Ticket:
        """Deny a ticket; `reason` is returned to the agent that asked."""
        return self._run(self._core.deny(ticket_id, approver=approver, reason=reason))

    def resume(self, ticket_id: str, *, idempotency_key: str | None = None) -> Decision:
        """The decision on a ticket, from any process: on approval the budget is reserved and the ticket consumed now
        (`allowed=True`, with a `proposal_id` to settle); a second caller gets "already consumed".

        With an `idempotency_key` the consuming proposal is made under that key (unique in the session, like a
        proposal's), and a resume repeated with it gets that proposal's decision back: allowed while unsettled.
        """
        return self._run(self._core.resume(ticket_id, idempotency_key))

    def get_ticket(self, ticket_id: str) -> Ticket:
        """A ticket: the call it covers, its digest, status, deadline and who decided."""
        return self._run(self._core.get_ticket(ticket_id))

    def list_tickets(
        self, *, status: TicketStatus | str | None = None, session_id: str | None = None, limit: int | None = None
    ) -> list[Ticket]:
        """Tickets, oldest first, optionally only those with `status` or of one session."""
        return self._run(self._core.list_tickets(status=status, session_id=session_id, limit=limit))

    def expire_tickets(self) -> dict[str, str]:
        """Apply the policy's approval time-out to every overdue ticket (escalate or expire); ticket id → outcome."""
        return self._run(self._core.expire_tickets())

    def wait_for_decision(self, ticket_id: str, *, timeout: float = 60.0) -> Decision:
        """Wait up to `timeout` seconds for a human to decide a ticket, then return the outcome as `resume` does.

        Wakes on PostgreSQL's NOTIFY (polling with backoff on SQLite); an engaged kill switch that covers the call
        ends the wait at once with a denial.
        Still undecided at the time-out: `allowed=False`, code `approval_required`; call again or `resume` later.
        """
        waiter = self._core.waiter(ticket_id, timeout)
        with Listener(self._engine.url, self._core.tables) as listener:
            while (decided := self._run(waiter.check())) is None:
                delay = waiter.next_delay()
                if delay is None:
                    return self._run(waiter.final())
                listener.wait(delay)
            return decided

    def recover(self, *, older_than: timedelta | None = None) -> RecoveryReport:
        """Crash recovery: settle as `interrupted` the allowed actions nobody settled in time (never running them
        again), release their leases, and apply approval time-outs. Run it at start-up, or `acp recover`.

        `older_than` overrides the policies' `recovery.interrupted_after_seconds` (0 right after restarting the
        only worker, when nothing can still be running).
        """
        return self._run(self._core.recover(older_than=older_than))

    # kill switches ------------------------------------------------------------------------------------------
    def kill_system(self, *, reason: str, by: str | None = None) -> KillSwitchInfo:
        """Deny every proposal in every session, in every process, until released."""
        return self._run(self._core.engage_kill(KillScope.SYSTEM, None, reason=reason, by=by))

    def kill_session(self, session_id: str, *, reason: str, by: str | None = None) -> KillSwitchInfo:
        """Deny every proposal of one session until released."""
        return self._run(self._core.engage_kill(KillScope.SESSION, session_id, reason=reason, by=by))

    def kill_agent(self, agent_id: str, *, reason: str, by: str | None = None) -> KillSwitchInfo:
        """Deny every proposal made by `agent_id`, in any session, until released."""
        return self._run(self._core.engage_kill(KillScope.AGENT, agent_id, reason=reason, by=by))

    def release_kill(
        self, scope: KillScope | str, target: str | None = None, *, reason: str, by: str | None = None
    ) -> KillSwitchInfo:
        """Release an engaged kill switch (`scope` system, session or agent; `target` the session or agent id)."""
        return self._run(self._core.release_kill(scope, target, reason=reason, by=by))

    def list_kills(self, *, engaged_only: bool = True) -> list[KillSwitchInfo]:
        """Kill switches, oldest first; with `engaged_only=False` released ones too."""
        return self._run(self._core.list_kills(engaged_only=engaged_only))

    # events -------------------------------------------------------------------------------------------------
    def emit(
        self, session_id: str, kind: str, payload: dict[str, Any] | None = None, *, state_bearing: bool = True
    ) -> int | None:
        """Append a host event to a session's log.

        `state_bearing=True`: written before returning (its seq is returned); a failure raises, so the caller
        never proceeds on an unrecorded state change. `state_bearing=False`: buffered and written in batches,
        best effort (returns None); see `event_buffer_stats()`.
        """
        return self._run(self._core.emit(session_id, kind, payload, state_bearing=state_bearing))

    def flush_events(self) -> int:
        """Write buffered best-effort events now; returns how many were written. Raises if the write fails."""
        written: int = self._run(self._core.flush(raise_errors=True))
        return written

    def event_buffer_stats(self) -> BufferStats:
        """How many best-effort events wait in the buffer and how many were dropped."""
        return self._core.buffer_stats()

    def replay(self, session_id: str, *, after_seq: int = 0, limit: int | None = None) -> list[EventFrame]:
        """A session's events in seq order, starting after `after_seq`, at most `limit` of them."""
        return self._run(self._core.replay(session_id, after_seq=after_seq, limit=limit))

    def verify(self, session_id: str) -> VerifyReport:
        """Recompute a session's hash chain; reports the first event that was edited, deleted or moved."""
        return self._run(self._core.verify(session_id))

    def what_if(
        self, policy: PolicySource, *, session_id: str | None = None, since: datetime | timedelta | None = None
    ) -> WhatIfReport:
        """Decide the recorded proposals again under `policy` and report every tier that would change.

        Reads the event log (one session, or all; only proposals at or after `since`, a time or an age) and
        writes nothing: this is how a policy change is checked against real traffic before it ships.
        """
        return self._run(self._core.what_if(policy, session_id=session_id, since=since))

    def verify_all(self) -> list[VerifyReport]:
        """`verify` for every session and for the control stream."""
        return self._run(self._core.verify_all())

    # token governance ---------------------------------------------------------------------------------------
    def token_budget_tracker(self) -> SyncTokenBudgetTracker:
        """A token budget tracker on a transaction of its own: `with cp.token_budget_tracker() as tracker:`.

        It commits when the block ends cleanly and rolls back on an exception; usage that raises
        `TokenBudgetExhaustedError` was billed, so it is committed before the error is raised. See
        `SyncTokenBudgetTracker` for the operations.
        """
        return SyncTokenBudgetTracker(self._core, self._engine)

    def create_token_budget(self, config: TokenBudgetConfig) -> TokenBudgetState:
        """Add a budget at run time (logged on the control stream); refused if one exists for its identity and
        period. Its current window counts the ledger's use so far."""
        return self._run(self._core.save_budget(config, "create")).state

    def update_token_budget(self, config: TokenBudgetConfig) -> TokenBudgetState:
        """Change the caps, allowed models or time zone of the budget for `config`'s identity and period."""
        return self._run(self._core.save_budget(config, "update")).state

    def set_token_budget(self, config: TokenBudgetConfig) -> TokenBudgetState:
        """Create the budget for `config`'s identity and period, or update it to match."""
        return self._run(self._core.save_budget(config, "set")).state

    def apply_token_budgets(self, configs: list[TokenBudgetConfig]) -> list[TokenBudgetState]:
        """`set_token_budget` for each of `configs`, in one transaction (what `ControlPlaneSetup` runs at start-up);
        budgets not in the list are left as they are."""
        return [saved.state for saved in self._run(self._core.apply_budgets(configs))]

    def delete_token_budget(self, identity: IdentityContext, period: BudgetPeriod | str) -> TokenBudgetConfig:
        """Remove the budget of `identity` and `period` (logged); the ledger keeps every recorded use."""
        return self._run(self._core.delete_budget(identity, period))

    def list_token_budgets(self) -> list[TokenBudgetState]:
        """Every budget with its current window's use."""
        return self._run(self._core.list_budgets())

    # lifetime -----------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Write buffered events (best effort) and release the database connections."""
        self._run(self._core.flush(raise_errors=False))
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
