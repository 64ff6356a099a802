"""`ConcurrencyGuard`'s operations: leases bounding how many actions are in flight per session, agent, resource.

A proposal that may run takes one lease per limited key inside its propose transaction; `settle` releases them.
A lease also expires (the policy's `lease_seconds`), so a holder that died never blocks its key for good. Keys are
locked in a fixed order, and always after the session row, so two proposals can never wait on each other in a
cycle.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Connection

from agent_control_plane.plane.context import PlaneContext
from agent_control_plane.policy.model import ConcurrencySettings
from agent_control_plane.store import leases as rows

Key = tuple[str, str, int]


def keys_for(settings: ConcurrencySettings, session_id: str, agent_id: str | None, resource: str | None) -> list[Key]:
    """(scope, key, limit) for every limited key of a proposal, in lock order."""
    wanted = [
        ("agent", agent_id, settings.per_agent),
        ("resource", resource, settings.per_resource),
        ("session", session_id, settings.per_session),
    ]
    return sorted((scope, key, limit) for scope, key, limit in wanted if key is not None and limit is not None)


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
