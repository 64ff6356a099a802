"""Propose and settle: the governed action, composed from the pure policy decision and atomic store operations.

Everything here runs inside the caller's transaction, so the decision, the reservation, the proposal row and its
hash-chained event commit together or not at all.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from agent_control_plane.clock import to_micros
from agent_control_plane.errors import AlreadySettledError, InvalidInputError, ProposalNotFoundError
from agent_control_plane.plane import approvals, leases, tokens
from agent_control_plane.plane.context import PlaneContext
from agent_control_plane.plane.operation import GatherVerdicts
from agent_control_plane.policy.choice import TierChoice
from agent_control_plane.policy.conditions import Facts
from agent_control_plane.policy.evaluators import Verdict
from agent_control_plane.store import eventlog, kills, proposals, sessions
from agent_control_plane.store.dialect import RetryTransaction
from agent_control_plane.store.eventlog import Head
from agent_control_plane.types.decisions import (
    ActionTier,
    Decision,
    DecisionCode,
    RiskLevel,
    SteeringContext,
    TraceStep,
)
from agent_control_plane.types.events import EventKind
from agent_control_plane.types.identity import ANYONE, IdentityContext, identity_of
from agent_control_plane.types.sessions import SessionStatus
from agent_control_plane.types.tokens import TokenUsage, UsageRecord
from agent_control_plane.types.values import canonical_json, tidy


class Outcome(StrEnum):
    """How an allowed action ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    """Nobody knows: its worker died (crash recovery settles such actions, and never runs them again)."""


@dataclass(frozen=True, slots=True)
class ProposalRequest:
    session_id: str
    action: str
    args: dict[str, Any]
    args_text: str
    resource: str | None
    cost: Decimal
    agent_id: str | None
    idempotency_key: str | None
    dry_run: bool = False
    verdicts: tuple[Verdict, ...] | None = None
    """The asynchronous evaluators' verdicts, gathered before the transaction (None: not gathered)."""
    identity: IdentityContext = ANYONE
    model_id: str | None = None
    estimated_tokens: int | None = None

    @property
    def governs_tokens(self) -> bool:
        """A model call: its model's access and its estimate against the identity's token budgets are checked."""
        return self.model_id is not None or self.estimated_tokens is not None

    def facts(self, now: datetime) -> Facts:
        """What the policy sees of this proposal before the session facts are read."""
        mode = "dry_run" if self.dry_run else "live"
        i = self.identity
        return Facts(
            self.action,
            self.args,
            self.resource,
            self.agent_id,
            self.cost,
            mode=mode,
            org=i.org_id,
            team=i.team_id,
            user=i.user_id,
            now=now,
        )


@dataclass(frozen=True, slots=True)
class Settlement:
    """The closed reservation of an allowed proposal."""

    proposal_id: str
    session_id: str
    outcome: Outcome
    reserved_cost: Decimal
    actual_cost: Decimal
    token_usage: UsageRecord | None = None
    """The model usage recorded with the settlement (`settle(..., token_usage=…)`), with its budgets after it."""

    @property
    def overrun(self) -> Decimal:
        """How much the actual cost exceeded the reservation (0 when it did not)."""
        return max(self.actual_cost - self.reserved_cost, Decimal(0))


def propose(conn: Connection, ctx: PlaneContext, req: ProposalRequest) -> Decision:
    t = ctx.tables
    earlier = replayed(conn, ctx, req)
    if earlier is not None:
        return earlier
    engine = ctx.policy_for_session(conn, req.session_id)
    if engine.async_evaluators is not None and req.verdicts is None:
        raise GatherVerdicts
    now = ctx.clock.now()
    facts = req.facts(now)
    if engine.needs_session_facts:
        session_agent, count, spent = sessions.facts_of(conn, t, req.session_id)
        facts = replace(
            facts, agent=req.agent_id or session_agent, session_action_count=count, session_spent_cost=spent
        )
    choice = engine.decide(facts, req.verdicts or ())
    authority = None
    if choice.tier is ActionTier.ALWAYS_APPROVE:
        if req.agent_id is None:
            # A ticket binds the call's agent: the session's own when the proposal names none.
            req = replace(req, agent_id=sessions.facts_of(conn, t, req.session_id)[0])
        authority = approvals.find_authority(conn, ctx, req, to_micros(now))
    return execute(conn, ctx, req, choice, authority, to_micros(now))


def execute(
    conn: Connection,
    ctx: PlaneContext,
    req: ProposalRequest,
    choice: TierChoice,
    authority: approvals.Authority | None,
    at: int,
) -> Decision:
    """Reserve and record an allowed proposal (one whose tier executes, or one a human authorized), or record why
    it may not run (and, for one that needs a human, the ticket that asks). Shared by propose and resume."""
    t = ctx.tables
    proposal_id = str(uuid.uuid4())
    executes = choice.tier.executes or authority is not None
    limits = ctx.policy_for_session(conn, req.session_id).policy.concurrency
    lease_keys: list[leases.Key] = []
    crowded = None
    if executes and limits.limited:
        # The session row is locked first (facts_of reads it FOR UPDATE), then the lease keys: one lock order.
        owner = sessions.facts_of(conn, t, req.session_id)[0]
        lease_keys = leases.keys_for(limits, req.session_id, req.agent_id or owner, req.resource)
        crowded = leases.check(conn, ctx, lease_keys, at)
    model_denial = token_denial = None
    access = None
    budgets: list[tokens.Covering] = []
    tokens_held = False
    if req.governs_tokens:
        budgets = tokens.covering(conn, ctx, req.identity, at)
        if req.model_id is not None:
            # Checked whatever the tier: nobody should be asked to approve a call to a model it may not use.
            access = ctx.models.check_access(req.identity, req.model_id, [b.config for b in budgets])
            model_denial = None if access.allowed else access.reason
        if executes and model_denial is None and crowded is None and budgets:
            # The session row before the budget windows: the lock order of record_usage and settle.
            t.statements.lock_session.run(conn, {"p_sid": req.session_id})
            token_denial, _ = tokens.reserve(conn, ctx, budgets, req.estimated_tokens or 0, req.cost, at)
            tokens_held = token_denial is None
    may_reserve = executes and crowded is None and model_denial is None and token_denial is None
    reserved = sessions.reserve(conn, t, req.session_id, req.agent_id, req.cost, at) if may_reserve else None
    if reserved is None and tokens_held:
        # The session refused (kill, status, budget): give the windows back, in this same transaction.
        tokens.give_back(conn, ctx, budgets, req.estimated_tokens or 0, req.cost, at)
    if reserved is not None:
        head, session_agent = reserved
        if tokens_held:
            tokens.open_reservation(
                conn, ctx, budgets, identity=req.identity, model_id=req.model_id, tokens=req.estimated_tokens or 0,
                cost=req.cost, at=at, session_id=req.session_id, proposal_id=proposal_id,
            )  # fmt: skip
        if lease_keys:
            leases.take(conn, ctx, lease_keys, limits, proposal_id, at)
        if authority is not None and not approvals.consume(conn, ctx, authority, proposal_id, at):
            # A concurrent transaction consumed it first: decide again, without it.
            raise RetryTransaction
        reason = choice.describe(req.action) if authority is None else authority.describe()
        decision = Decision.allow(
            choice.tier,
            reason,
            proposal_id=proposal_id,
            session_id=req.session_id,
            rule=choice.rule,
            trace=choice.trace,
            risk=choice.risk,
        )
        if authority is not None and authority.kind == "ticket":
            decision = replace(decision, ticket_id=authority.authority_id)
    else:
        head, session_agent, decision = _refuse(
            conn,
            ctx,
            req,
            choice,
            proposal_id,
            at,
            authorized=authority,
            crowded=crowded,
            model_denial=model_denial,
            token_denial=token_denial,
        )
    agent_id = req.agent_id or session_agent
    row = {
        "id": proposal_id,
        "session_id": req.session_id,
        "agent_id": agent_id,
        "action": req.action,
        "resource": req.resource,
        "args": req.args_text,
        "cost": req.cost,
        "tier": decision.tier.value,
        "allowed": decision.allowed,
        "code": decision.code.value,
        "reason": decision.reason,
        "rule": decision.rule,
        "status": "reserved" if decision.allowed else "denied",
        "idempotency_key": req.idempotency_key,
        "created_at": at,
        **req.identity.as_dict(),
        "model_id": req.model_id,
        "estimated_tokens": req.estimated_tokens,
        "dry_run": req.dry_run,
        "decided_seq": head.last_seq,  # the one event appended below takes the seq just claimed
    }
    try:
        proposals.insert(conn, t, row)
    except IntegrityError:
        if req.idempotency_key is None:
            raise
        # Another transaction committed the same idempotency key after our lookup: start over and return its
        # decision instead of reserving twice.
        raise RetryTransaction from None
    payload: dict[str, Any] = {
        "proposal_id": proposal_id,
        "action": req.action,
        "args": req.args,
        "resource": req.resource,
        "cost": str(tidy(req.cost)),
        "agent_id": agent_id,
        "tier": decision.tier.value,
        "allowed": decision.allowed,
        "code": decision.code.value,
        "reason": decision.reason,
        "rule": decision.rule,
        "idempotency_key": req.idempotency_key,
        "trace": [step.as_dict() for step in decision.trace],
        "risk": decision.risk,
        "mode": "dry_run" if req.dry_run else "live",
        "ticket_id": decision.ticket_id,
    }
    if req.identity != ANYONE:
        payload["identity"] = req.identity.as_dict()
    if req.governs_tokens:
        payload["model_id"] = req.model_id
        payload["estimated_tokens"] = req.estimated_tokens
    if authority is not None and decision.allowed:
        payload["authorized_by"] = authority.as_dict()
    if decision.steering is not None:
        payload["steering"] = {
            "guidance": decision.steering.guidance,
            "alternatives": list(decision.steering.alternatives),
        }
    eventlog.append(conn, t, req.session_id, head, [(EventKind.PROPOSAL_DECIDED, canonical_json(payload), at)])
    if access is not None and decision.code is DecisionCode.MODEL_ACCESS_DENIED:
        tokens.record_denial(conn, ctx, req.identity, access, req.session_id, at)
    return decision


def _refuse(
    conn: Connection,
    ctx: PlaneContext,
    req: ProposalRequest,
    choice: TierChoice,
    proposal_id: str,
    at: int,
    *,
    authorized: approvals.Authority | None,
    crowded: str | None = None,
    model_denial: str | None = None,
    token_denial: str | None = None,
) -> tuple[Head, str | None, Decision]:
    """Why the proposal may not run: read under the stream lock, most urgent cause first. An `authorized`
    proposal (a human approved it) skips the tier and can only be stopped by kills, status and budgets."""
    state = sessions.claim(conn, ctx.tables, req.session_id, 1, at)
    assert state is not None  # the policy lookup already proved the session exists, and sessions are never deleted
    head = Head(state["last_seq"], state["last_hash"])

    def deny(reason: str, code: DecisionCode, ticket_id: str | None = None) -> tuple[Head, str | None, Decision]:
        steering = choice.steering if code is DecisionCode.STEERED else None
        decision = Decision.deny(
            choice.tier,
            reason,
            code,
            proposal_id=proposal_id,
            session_id=req.session_id,
            rule=choice.rule,
            steering=steering,
            trace=choice.trace,
            risk=choice.risk,
            ticket_id=ticket_id,
        )
        return head, state["agent_id"], decision

    covering = kills.engaged_covering(conn, ctx.tables, req.session_id, [req.agent_id, state["agent_id"]])
    if covering:
        return deny(f"denied: {ctx.kill_info(covering[0]).describe()}", DecisionCode.KILLED)
    if state["status"] != SessionStatus.ACTIVE.value:
        return deny(
            f"denied: session {req.session_id} is {state['status']}, so it takes no proposals",
            DecisionCode.SESSION_NOT_ACTIVE,
        )
    if model_denial is not None:
        return deny(f"denied: {model_denial}", DecisionCode.MODEL_ACCESS_DENIED)
    if crowded is not None:
        return deny(f"denied: {crowded}; try again when one settles", DecisionCode.CONCURRENCY_LIMIT)
    described = choice.describe(req.action)
    if authorized is not None:
        pass  # a human decided the tier; only the budget below can still refuse
    elif choice.tier is ActionTier.BLOCKED:
        code = {
            "registration": DecisionCode.AGENT_NOT_REGISTERED,
            "capability": DecisionCode.OUTSIDE_CAPABILITIES,
        }.get(choice.step, DecisionCode.POLICY_BLOCKED)
        return deny(f"denied: {described}", code)
    elif choice.tier is ActionTier.ALWAYS_APPROVE:
        refused = approvals.refused_before(conn, ctx, req)
        if refused is not None:
            return deny(
                f"denied: {refused['decided_by']} already denied this exact call (ticket {refused['id']}): "
                f"{refused['comment']}",
                DecisionCode.APPROVAL_DENIED,
                str(refused["id"]),
            )
        ticket_id = approvals.request(conn, ctx, req, described, proposal_id, at)
        return deny(f"needs approval: {described} (ticket {ticket_id})", DecisionCode.APPROVAL_REQUIRED, ticket_id)
    elif choice.tier is ActionTier.STEER:
        guidance = choice.steering.guidance if choice.steering is not None else "choose a different action"
        return deny(f"steered: {described}; {guidance}", DecisionCode.STEERED)
    max_cost, max_count = state["max_cost"], state["max_action_count"]
    committed = state["spent_cost"] + state["reserved_cost"]
    if max_cost is not None and committed + req.cost > max_cost:
        left = max(max_cost - committed, Decimal(0))
        return deny(
            f"denied: cost budget exceeded: {tidy(req.cost)} requested, {tidy(left)} of {tidy(max_cost)} left "
            f"({tidy(state['spent_cost'])} spent, {tidy(state['reserved_cost'])} reserved)",
            DecisionCode.COST_BUDGET_EXCEEDED,
        )
    if max_count is not None and state["action_count"] >= max_count:
        return deny(
            f"denied: action budget exhausted: {state['action_count']} of {max_count} actions used",
            DecisionCode.ACTION_COUNT_EXCEEDED,
        )
    if token_denial is not None:
        return deny(f"denied: {token_denial}", DecisionCode.TOKEN_BUDGET_EXCEEDED)
    # The conditional reservation failed, yet under the lock the session has room: a concurrent settle or kill
    # release changed it between the two statements. Decide again from the start rather than refuse wrongly.
    raise RetryTransaction


def replayed(conn: Connection, ctx: PlaneContext, req: ProposalRequest) -> Decision | None:
    """The decision of the proposal the session already made under the request's idempotency key (None: it made
    none, or the request has no key). Raises `InvalidInputError` when that proposal was a different call."""
    if req.idempotency_key is None:
        return None
    earlier = proposals.find_by_key(conn, ctx.tables, req.session_id, req.idempotency_key)
    if earlier is None:
        return None
    _check_same_call(earlier, req)
    return _replay(conn, ctx, earlier)


def _check_same_call(earlier: Mapping[Any, Any], req: ProposalRequest) -> None:
    """A retry must repeat the call it retries; reusing a key for another call is a bug in the caller."""
    tokens_before = earlier["estimated_tokens"]
    differences = [
        name
        for name, before, now in (
            ("action", earlier["action"], req.action),
            ("args", earlier["args"], req.args_text),
            ("resource", earlier["resource"], req.resource),
            ("cost", earlier["cost"], req.cost),
            ("mode", bool(earlier["dry_run"]), req.dry_run),
            ("identity", identity_of(earlier), req.identity),
            ("model_id", earlier["model_id"], req.model_id),
            ("estimated_tokens", None if tokens_before is None else int(tokens_before), req.estimated_tokens),
        )
        if before != now
    ]
    if differences:
        raise InvalidInputError(
            f"idempotency key {req.idempotency_key!r} was already used in this session for a different call "
            f"(its {', '.join(differences)} differ); use a new key for a new call"
        )


def _replay(conn: Connection, ctx: PlaneContext, row: Mapping[Any, Any]) -> Decision:
    """The decision of the earlier proposal a retry's idempotency key names, with `replayed=True`.

    It is the original decision (its trace, steering, risk and ticket read back from its `proposal.decided`
    event), except that an allowed proposal already settled comes back refused: it authorized one execution, and
    a host that checks only `allowed` must not run it again. One not settled yet stays allowed: the retry may be
    the caller's only way to learn that it was (a response lost on the way back).
    """
    decision = Decision(
        tier=ActionTier(row["tier"]),
        allowed=bool(row["allowed"]),
        reason=row["reason"],
        code=DecisionCode(row["code"]),
        proposal_id=row["id"],
        session_id=row["session_id"],
        rule=row["rule"],
        replayed=True,
    )
    decided = _decided_payload(conn, ctx, row)
    if decided is not None:
        decision = _with_recorded(decision, decided)
    if decision.code is DecisionCode.APPROVAL_REQUIRED:
        # The newest ticket for the call: the one to wait on, if the first has expired and the call asked again.
        decision = replace(decision, ticket_id=approvals.ticket_for_call(conn, ctx, row) or decision.ticket_id)
    if decision.allowed and row["status"] != "reserved":
        outcome = Outcome(row["status"])
        decision = replace(
            decision,
            allowed=False,
            code=DecisionCode.ALREADY_SETTLED,
            reason=f"already settled: proposal {row['id']} was allowed and has been settled as {outcome.value}; "
            "it authorized one execution and does not run again (propose with a new idempotency key to run the "
            "call again)",
        )
    return decision


def _with_recorded(decision: Decision, decided: Mapping[str, Any]) -> Decision:
    """`decision`, rebuilt from its row, with what only its event recorded: trace, steering, risk and ticket."""
    trace = tuple(
        TraceStep(
            step["step"], step["name"], step["matched"], None if step["tier"] is None else ActionTier(step["tier"])
        )
        for step in decided["trace"]
    )
    steered = decided.get("steering")
    steering = None
    if steered is not None:
        steering = SteeringContext(steered["guidance"], tuple(steered["alternatives"]), decision.rule)
    risk = None if decided.get("risk") is None else RiskLevel(decided["risk"])
    return replace(decision, trace=trace, steering=steering, risk=risk, ticket_id=decided.get("ticket_id"))


def _decided_payload(conn: Connection, ctx: PlaneContext, row: Mapping[Any, Any]) -> dict[str, Any] | None:
    """The payload of a proposal's `proposal.decided` event (None for proposals decided before migration 0005,
    which did not record where it is)."""
    seq = row["decided_seq"]
    if seq is None:
        return None
    found = eventlog.read(conn, ctx.tables, row["session_id"], after_seq=int(seq) - 1, limit=1)
    if not found or found[0].kind != EventKind.PROPOSAL_DECIDED:
        return None
    payload: dict[str, Any] = json.loads(found[0].payload)
    return payload if payload.get("proposal_id") == row["id"] else None


def settle(
    conn: Connection,
    ctx: PlaneContext,
    proposal_id: str,
    outcome: Outcome,
    actual_cost: Decimal | None,
    result: dict[str, Any],
    result_text: str,
    token_usage: TokenUsage | None = None,
) -> Settlement:
    t = ctx.tables
    at = ctx.now_micros()
    # UPDATE … WHERE status = 'reserved' matches once, so two settles of one proposal cannot both charge the
    # budget. Without an actual cost, a success is charged what it reserved, a failure nothing, and an
    # interruption what the session's policy says (recovery.charge_interrupted).
    charge = outcome is Outcome.SUCCEEDED
    if outcome is Outcome.INTERRUPTED:
        session_id = proposals.session_of(conn, t, proposal_id)
        charge = session_id is not None and ctx.policy_for_session(conn, session_id).policy.recovery.charge_interrupted
    closed = proposals.mark_settled(
        conn,
        t,
        proposal_id,
        status=outcome.value,
        actual_cost=actual_cost,
        charge_reserved=charge,
        result=result_text,
        at=at,
    )
    if closed is None:
        existing = proposals.get(conn, t, proposal_id)
        if existing is None:
            raise ProposalNotFoundError(f"unknown proposal id {proposal_id!r}: nothing to settle")
        if existing["status"] == "denied":
            raise AlreadySettledError(
                f"proposal {proposal_id} was denied ({existing['reason']}); there is no reservation to settle"
            )
        raise AlreadySettledError(f"proposal {proposal_id} is already settled ({existing['status']})")
    reserved: Decimal = closed["cost"]
    actual_cost = closed["actual_cost"]
    if ctx.policy_for_session(conn, closed["session_id"]).policy.concurrency.limited:
        leases.release(conn, ctx, proposal_id, at)
    head = sessions.settle_budget(conn, t, closed["session_id"], reserved, actual_cost, at)
    payload = {
        "proposal_id": proposal_id,
        "action": closed["action"],
        "agent_id": closed["agent_id"],
        "outcome": outcome.value,
        "reserved_cost": str(reserved),
        "actual_cost": str(actual_cost),
        "result": result,
    }
    eventlog.append(conn, t, closed["session_id"], head, [(EventKind.PROPOSAL_SETTLED, canonical_json(payload), at)])
    model_call = closed["model_id"] is not None or closed["estimated_tokens"] is not None
    record = None
    if model_call or token_usage is not None:  # other proposals hold no token reservation: no lookup for them
        record = _settle_tokens(conn, ctx, proposal_id, closed["session_id"], token_usage)
    return Settlement(proposal_id, closed["session_id"], outcome, reserved, actual_cost, record)


def _settle_tokens(
    conn: Connection, ctx: PlaneContext, proposal_id: str, session_id: str, usage: TokenUsage | None
) -> UsageRecord | None:
    """A model call's settlement: record its usage (giving back its reservation), or just give the reservation
    back when the host reports no usage (a failed call, or crash recovery)."""
    reservation_id = tokens.reservation_of(conn, ctx, proposal_id)
    if usage is None:
        if reservation_id is not None:
            tokens.release_reservation(conn, ctx, reservation_id)
        return None
    stored = proposals.get(conn, ctx.tables, proposal_id)
    assert stored is not None  # it was settled a moment ago
    return tokens.record_usage(
        conn,
        ctx,
        session_id=session_id,
        identity=identity_of(stored),
        usage=usage,
        reservation_id=reservation_id,
        proposal_id=proposal_id,
    )
