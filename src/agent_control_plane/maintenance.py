"""Start-up and periodic jobs over a control plane, by the names operators look for.

Both take either facade: with `AsyncControlPlaneFacade`, `run()` returns an awaitable.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta

from agent_control_plane.aio import AsyncControlPlaneFacade
from agent_control_plane.facade import ControlPlaneFacade
from agent_control_plane.plane.recovery import RecoveryReport


class CrashRecovery:
    """Run at start-up: settle what dead workers left open as interrupted (never re-running it), release their
    leases, apply ticket time-outs. `older_than` overrides the policies' `recovery.interrupted_after_seconds`."""

    def __init__(
        self, plane: ControlPlaneFacade | AsyncControlPlaneFacade, *, older_than: timedelta | None = None
    ) -> None:
        self._plane = plane
        self._older_than = older_than

    def run(self) -> RecoveryReport | Awaitable[RecoveryReport]:
        return self._plane.recover(older_than=self._older_than)


class TimeoutEscalation:
    """Run periodically: escalate or expire every overdue approval ticket as its session's policy says."""

    def __init__(self, plane: ControlPlaneFacade | AsyncControlPlaneFacade) -> None:
        self._plane = plane

    def run(self) -> dict[str, str] | Awaitable[dict[str, str]]:
        return self._plane.expire_tickets()
