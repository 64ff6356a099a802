"""Start-up and periodic jobs over a control plane, by the names operators look for.

Both take either facade, and are typed by it: with `ControlPlaneFacade`, `run()` returns the result; with
`AsyncControlPlaneFacade`, an awaitable of it (`CrashRecovery(plane).run()` is a `RecoveryReport`,
`await CrashRecovery(async_plane).run()` too).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial
from typing import Generic, TypeVar, cast, overload

from agent_control_plane.aio import AsyncControlPlaneFacade
from agent_control_plane.facade import ControlPlaneFacade
from agent_control_plane.plane.recovery import RecoveryReport

R = TypeVar("R")

_AnyPlane = ControlPlaneFacade | AsyncControlPlaneFacade


class CrashRecovery(Generic[R]):
    """Run at start-up: settle what dead workers left open as interrupted (never re-running it), release their
    leases, apply ticket time-outs. `older_than` overrides the policies' `recovery.interrupted_after_seconds`."""

    @overload
    def __init__(
        self: CrashRecovery[RecoveryReport], plane: ControlPlaneFacade, *, older_than: timedelta | None = None
    ) -> None: ...
    @overload
    def __init__(
        self: CrashRecovery[Awaitable[RecoveryReport]],
        plane: AsyncControlPlaneFacade,
        *,
        older_than: timedelta | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: CrashRecovery[RecoveryReport | Awaitable[RecoveryReport]],
        plane: _AnyPlane,
        *,
        older_than: timedelta | None = None,
    ) -> None: ...
    def __init__(self, plane: _AnyPlane, *, older_than: timedelta | None = None) -> None:
        # The overloads tie R to the facade; the union of both facades' methods cannot say so by itself.
        self._recover = cast(Callable[[], R], partial(plane.recover, older_than=older_than))

    def run(self) -> R:
        """The `RecoveryReport` (with the async facade, an awaitable of it)."""
        return self._recover()


class TimeoutEscalation(Generic[R]):
    """Run periodically: escalate or expire every overdue approval ticket as its session's policy says."""

    @overload
    def __init__(self: TimeoutEscalation[dict[str, str]], plane: ControlPlaneFacade) -> None: ...
    @overload
    def __init__(self: TimeoutEscalation[Awaitable[dict[str, str]]], plane: AsyncControlPlaneFacade) -> None: ...
    @overload
    def __init__(self: TimeoutEscalation[dict[str, str] | Awaitable[dict[str, str]]], plane: _AnyPlane) -> None: ...
    def __init__(self, plane: _AnyPlane) -> None:
        self._expire = cast(Callable[[], R], plane.expire_tickets)

    def run(self) -> R:
        """Ticket id → "escalated" or "expired" (with the async facade, an awaitable of it)."""
        return self._expire()
