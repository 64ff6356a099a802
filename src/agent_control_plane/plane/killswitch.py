"""Kill switches: engage and release, each logged on the control stream (and on the session it stops).

Every kill switch change first claims the control stream's head, which takes its row lock, so changes are
serialised: two operators engaging the same switch at once get one switch, not two.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Connection

from agent_control_plane.errors import NotFoundError, SessionNotFoundError
from agent_control_plane.plane.context import PlaneContext
from agent_control_plane.plane.events import PendingEvent, append_to_stream
from agent_control_plane.store import eventlog, kills, sessions
from agent_control_plane.store.eventlog import Head
from agent_control_plane.store.notify import notify
from agent_control_plane.store.statements import CONTROL_KIND
from agent_control_plane.store.tables import CONTROL_STREAM_ID
from agent_control_plane.types.events import EventKind
from agent_control_plane.types.sessions import KillScope, KillSwitchInfo
from agent_control_plane.types.values import canonical_json


def _lock_control(conn: Connection, ctx: PlaneContext, at: int) -> Head:
    row = sessions.claim(conn, ctx.tables, CONTROL_STREAM_ID, 1, at)
    if row is None:  # the initial migration creates it; its absence means the schema was tampered with
        raise NotFoundError("the control stream is missing; run `acp db upgrade`")
    return Head(row["last_seq"], row["last_hash"])


def engage(
    conn: Connection, ctx: PlaneContext, scope: KillScope, target: str | None, *, reason: str, by: str
) -> KillSwitchInfo:
    t = ctx.tables
    at = ctx.now_micros()
    if scope is KillScope.SESSION:
        assert target is not None
        found = sessions.get(conn, t, target)
        if found is None or found["kind"] == CONTROL_KIND:
            raise SessionNotFoundError(f"cannot kill unknown session {target!r} (see `acp sessions list`)")
    head = _lock_control(conn, ctx, at)
    existing = kills.find_engaged(conn, t, scope, target)
    if existing is not None:
        # Already engaged: keep the first switch (and its reason); release the claimed seq by logging the repeat.
        info = ctx.kill_info(existing)
        payload = {
            "kill_id": info.kill_id,
            "scope": scope.value,
            "target": target,
            "reason": reason,
            "by": by,
            "already_engaged": True,
        }
        eventlog.append(conn, t, CONTROL_STREAM_ID, head, [(EventKind.KILL_ENGAGED, canonical_json(payload), at)])
        return info
    kill_id = str(uuid.uuid4())
    row = {
        "id": kill_id,
        "scope": scope.value,
        "target": target,
        "reason": reason,
        "engaged_by": by,
        "engaged_at": at,
    }
    kills.insert(conn, t, row)
    notify(conn, t, "kill")  # waiters on tickets wake up and see the kill
    payload = {"kill_id": kill_id, "scope": scope.value, "target": target, "reason": reason, "by": by}
    eventlog.append(conn, t, CONTROL_STREAM_ID, head, [(EventKind.KILL_ENGAGED, canonical_json(payload), at)])
    if scope is KillScope.SESSION and target is not None:
        append_to_stream(conn, ctx, target, [PendingEvent(target, EventKind.KILL_ENGAGED, canonical_json(payload), at)])
    return ctx.kill_info({**row, "released_at": None, "released_by": None, "release_reason": None})


def release(
    conn: Connection, ctx: PlaneContext, scope: KillScope, target: str | None, *, reason: str, by: str
) -> KillSwitchInfo:
    t = ctx.tables
    at = ctx.now_micros()
    head = _lock_control(conn, ctx, at)
    existing = kills.find_engaged(conn, t, scope, target)
    if existing is None:
        what = "system" if scope is KillScope.SYSTEM else f"{scope.value} {target}"
        raise NotFoundError(f"no engaged kill switch for {what} (see `acp kill list`)")
    kills.release(conn, t, existing["id"], by=by, reason=reason, at=at)
    payload = {"kill_id": existing["id"], "scope": scope.value, "target": target, "reason": reason, "by": by}
    eventlog.append(conn, t, CONTROL_STREAM_ID, head, [(EventKind.KILL_RELEASED, canonical_json(payload), at)])
    if scope is KillScope.SESSION and target is not None:
        append_to_stream(
            conn, ctx, target, [PendingEvent(target, EventKind.KILL_RELEASED, canonical_json(payload), at)]
        )
    return ctx.kill_info({**existing, "released_at": at, "released_by": by, "release_reason": reason})


def list_kills(conn: Connection, ctx: PlaneContext, *, engaged_only: bool) -> list[KillSwitchInfo]:
    return [ctx.kill_info(row) for row in kills.list_rows(conn, ctx.tables, engaged_only=engaged_only)]
