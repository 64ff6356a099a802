"""Statements on the hot path of propose and settle, built once per table registry and run as `Prepared`.

Building a Core expression tree, and executing it through `Connection.execute`, each cost more than SQLite needs
to run the statement, so these are built once, compiled once per dialect, and run with new parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Integer, and_, bindparam, exists, func, insert, or_, select, update

from agent_control_plane.store.prepared import Prepared
from agent_control_plane.store.types import Money
from agent_control_plane.types.sessions import KillScope, SessionStatus

if TYPE_CHECKING:
    from agent_control_plane.store.tables import ScopedModelRegistry

SESSION_KIND = "session"
CONTROL_KIND = "control"


class Statements:
    """The prebuilt statements of one registry. Parameter names start with `p_` so they never clash with columns."""

    def __init__(self, t: ScopedModelRegistry) -> None:
        s, k, p, e = t.sessions, t.kill_switches, t.proposals, t.events
        cost = bindparam("p_cost", type_=Money)

        # Any engaged kill switch that covers this session, the proposing agent or the session's own agent. Read in
        # the same statement as the reservation, so a kill committed before the statement starts is always seen.
        self.kill_applies = exists(
            select(k.c.id).where(
                k.c.released_at.is_(None),
                or_(
                    k.c.scope == KillScope.SYSTEM.value,
                    and_(k.c.scope == KillScope.SESSION.value, k.c.target == bindparam("p_sid")),
                    and_(
                        k.c.scope == KillScope.AGENT.value,
                        or_(k.c.target == bindparam("p_agent"), k.c.target == s.c.agent_id),
                    ),
                ),
            )
        )

        # The budget check and the reservation are ONE conditional UPDATE: it only matches the row when the session
        # is active, unkilled and has room, and the row lock it takes (on PostgreSQL; SQLite holds the database
        # write lock from BEGIN IMMEDIATE) makes concurrent reservations queue. PostgreSQL re-checks the WHERE
        # clause against the newest row version after waiting, so N workers can never overspend.
        self.reserve = Prepared(
            update(s)
            .where(
                s.c.id == bindparam("p_sid"),
                s.c.kind == SESSION_KIND,
                s.c.status == SessionStatus.ACTIVE.value,
                or_(s.c.max_cost.is_(None), s.c.spent_cost + s.c.reserved_cost + cost <= s.c.max_cost),
                or_(s.c.max_action_count.is_(None), s.c.action_count < s.c.max_action_count),
                ~self.kill_applies,
            )
            .values(
                reserved_cost=s.c.reserved_cost + cost,
                action_count=s.c.action_count + 1,
                last_seq=s.c.last_seq + 1,
                updated_at=bindparam("p_at"),
            )
            .returning(s.c.last_seq, s.c.last_hash, s.c.agent_id)
        )

        # Claiming the next sequence number takes the session row lock: events of one stream are appended one
        # transaction at a time, which is what keeps `seq` gap-free and the hash chain linear.
        self.claim = Prepared(
            update(s)
            .where(s.c.id == bindparam("p_sid"))
            .values(last_seq=s.c.last_seq + bindparam("p_count"), updated_at=bindparam("p_at"))
            .returning(*s.c)
        )

        self.settle_budget = Prepared(
            update(s)
            .where(s.c.id == bindparam("p_sid"))
            .values(
                reserved_cost=s.c.reserved_cost - bindparam("p_reserved", type_=Money),
                spent_cost=s.c.spent_cost + bindparam("p_spent", type_=Money),
                last_seq=s.c.last_seq + 1,
                updated_at=bindparam("p_at"),
            )
            .returning(s.c.last_seq, s.c.last_hash)
        )

        self.set_head = Prepared(update(s).where(s.c.id == bindparam("p_sid")).values(last_hash=bindparam("p_hash")))
        self.insert_event = Prepared(insert(e), insert_columns=[c.key for c in e.c])
        unset_at_insert = ("actual_cost", "result", "settled_at", "heartbeat_at")
        self.insert_proposal = Prepared(insert(p), insert_columns=[c.key for c in p.c if c.key not in unset_at_insert])

        self.settle_proposal = Prepared(
            update(p)
            .where(p.c.id == bindparam("p_pid"), p.c.status == "reserved")
            .values(
                status=bindparam("p_status"),
                actual_cost=func.coalesce(
                    bindparam("p_actual", type_=Money), p.c.cost * bindparam("p_charge", type_=Integer)
                ),
                result=bindparam("p_result"),
                settled_at=bindparam("p_at"),
            )
            .returning(
                p.c.session_id, p.c.cost, p.c.actual_cost, p.c.agent_id, p.c.action, p.c.model_id, p.c.estimated_tokens
            )
        )

        # The session row's lock. `proposal_by_key` takes it with its lookup, so that the lookup and the insert of
        # a new key happen under it: a retry can then never insert a duplicate key while another transaction is
        # still settling the original (which would make the insert wait on that transaction while holding the
        # session row it needs: a deadlock). SQLite ignores FOR UPDATE; BEGIN IMMEDIATE already serialises writers.
        self.lock_session = Prepared(select(s.c.id).where(s.c.id == bindparam("p_sid")).with_for_update())

        self.session_facts = Prepared(
            select(s.c.agent_id, s.c.action_count, s.c.spent_cost).where(s.c.id == bindparam("p_sid")).with_for_update()
        )

        self.policy_of_session = Prepared(select(s.c.policy_hash, s.c.kind).where(s.c.id == bindparam("p_sid")))
        # The session's row, locked as by `lock_session`, with the proposal it made under an idempotency key, if
        # any (its columns all NULL when there is none): the lock and the lookup in one round trip.
        keyed = and_(p.c.session_id == s.c.id, p.c.idempotency_key == bindparam("p_key"))
        self.proposal_by_key = Prepared(
            select(p).select_from(s.outerjoin(p, keyed)).where(s.c.id == bindparam("p_sid")).with_for_update(of=s)
        )
