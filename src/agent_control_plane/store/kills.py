"""Kill switch rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, and_, or_, select, update

from agent_control_plane.store.tables import ScopedModelRegistry
from agent_control_plane.types.sessions import KillScope

KillRow = RowMapping


def insert(conn: Connection, t: ScopedModelRegistry, row: dict[str, Any]) -> None:
    conn.execute(t.kill_switches.insert().values(**row))


def find_engaged(conn: Connection, t: ScopedModelRegistry, scope: KillScope, target: str | None) -> KillRow | None:
    k = t.kill_switches
    stmt = select(k).where(k.c.released_at.is_(None), k.c.scope == scope.value)
    stmt = stmt.where(k.c.target.is_(None) if target is None else k.c.target == target)
    row = conn.execute(stmt.order_by(k.c.engaged_at)).first()
    return None if row is None else row._mapping


def engaged_covering(
    conn: Connection, t: ScopedModelRegistry, session_id: str, agent_ids: list[str | None]
) -> list[KillRow]:
    """Engaged kill switches that stop this session or these agents, broadest first (system, session, agent)."""
    k = t.kill_switches
    stmt = select(k).where(
        k.c.released_at.is_(None),
        or_(
            k.c.scope == KillScope.SYSTEM.value,
            and_(k.c.scope == KillScope.SESSION.value, k.c.target == session_id),
            and_(k.c.scope == KillScope.AGENT.value, k.c.target.in_([a for a in agent_ids if a is not None])),
        ),
    )
    order = {KillScope.SYSTEM.value: 0, KillScope.SESSION.value: 1, KillScope.AGENT.value: 2}
    rows = [row._mapping for row in conn.execute(stmt)]
    return sorted(rows, key=lambda row: (order[row["scope"]], row["engaged_at"]))


def release(conn: Connection, t: ScopedModelRegistry, kill_id: str, *, by: str, reason: str, at: int) -> None:
    k = t.kill_switches
    conn.execute(update(k).where(k.c.id == kill_id).values(released_at=at, released_by=by, release_reason=reason))


def list_rows(conn: Connection, t: ScopedModelRegistry, *, engaged_only: bool) -> list[KillRow]:
    k = t.kill_switches
    stmt = select(k).order_by(k.c.engaged_at, k.c.id)
    if engaged_only:
        stmt = stmt.where(k.c.released_at.is_(None))
    return [row._mapping for row in conn.execute(stmt)]
