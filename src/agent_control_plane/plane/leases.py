"""`ConcurrencyGuard`'s operations: leases bounding how many actions are in flight per session, agent, resource.

A proposal that may run takes one lease per limited key inside its propose transaction; `settle` releases them.
A lease also expires (the policy's `lease_seconds`), so a holder that died never blocks its key for good, and a
holder still running renews it with a heartbeat. Keys are locked in a fixed order, and by a proposal always after
the session row, so two proposals can never wait on each other in a cycle (a heartbeat locks no session row, and
takes the keys in the same order).
"""

from __future__ import annotations

import uuid

from sqlalchemy import Connection

from agent_control_plane.plane.context import PlaneContext
from agent_control_plane.policy.model import ConcurrencySettings
from agent_control_plane.store import leases as rows

Key = tuple[str, str, int]


def _limits(settings: ConcurrencySettings) -> dict[str, int | None]:
    return {"agent": settings.per_agent, "resource": settings.per_resource, "session": settings.per_session}


def keys_for(settings: ConcurrencySettings, session_id: str, agent_id: str | None, resource: str | None) -> list[Key]:
    """(scope, key, limit) for every limited key of a proposal, in lock order."""
    named = {"agent": agent_id, "resource": resource, "session": session_id}
    return sorted(
        (scope, key, limit)
        for scope, limit in _limits(settings).items()
        if (key := named[scope]) is not None and limit is not None
    )


def check(conn: Connection, ctx: PlaneContext, keys: list[Key], at: int) -> str | None:
    """Lock the keys and count their live leases; the reason a limit is reached, or None when there is room."""
    for scope, key, limit in keys:
        rows.lock_key(conn, ctx.tables, scope, key)
        in_flight = rows.live_count(conn, ctx.tables, scope, key, at)
        if in_flight >= limit:
            return f"concurrency limit: {in_flight} of {limit} actions already in flight for {scope} {key!r}"
    return None


def take(
    conn: Connection, ctx: PlaneContext, keys: list[Key], settings: ConcurrencySettings, proposal_id: str, at: int
) -> None:
    """Take a lease on each key (already locked and checked by `check` in this transaction)."""
    expires = at + int(settings.lease_seconds * 1_000_000)
    for scope, key, _ in keys:
        rows.take(conn, ctx.tables, str(uuid.uuid4()), proposal_id, scope, key, expires)


def release(conn: Connection, ctx: PlaneContext, proposal_id: str, at: int) -> int:
    return rows.release(conn, ctx.tables, proposal_id, at)


def renew(
    conn: Connection, ctx: PlaneContext, proposal_id: str, settings: ConcurrencySettings, at: int
) -> tuple[int | None, tuple[str, ...]]:
    """Push the expiry of a proposal's live leases to `at + lease_seconds` (never earlier than it was).

    Returns the earliest expiry of the leases it still holds (None: it holds none), and the leases that had lapsed,
    as "resource 'db/main'". A lapsed lease is not revived: once it stopped counting, another action may have taken
    its key. Each key is locked and counted as `check` does, so a live lease is renewed only while its key is within
    its limit; one a concurrent proposal has just counted as expired (and taken the slot of) lapses too.
    """
    expires = at + int(settings.lease_seconds * 1_000_000)
    limits = _limits(settings)
    kept: list[tuple[str, int]] = []
    lapsed: list[str] = []
    for lease in rows.held_by(conn, ctx.tables, proposal_id):
        scope, key = lease["scope"], lease["key"]
        rows.lock_key(conn, ctx.tables, scope, key)
        limit = limits.get(scope)
        live = lease["expires_at"] > at
        if live and (limit is None or rows.live_count(conn, ctx.tables, scope, key, at) <= limit):
            kept.append((lease["id"], max(lease["expires_at"], expires)))
        else:
            lapsed.append(f"{scope} {key!r}")
    if kept:
        rows.extend(conn, ctx.tables, [lease_id for lease_id, _ in kept], expires)
    return min((until for _, until in kept), default=None), tuple(lapsed)
