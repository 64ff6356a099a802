"""Typed errors. Every error says what was wrong and, where there is one, what to do about it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent_control_plane.types.tokens import TokenBudgetState


class ControlPlaneError(Exception):
    """Base class of every error the control plane raises."""


class InvalidInputError(ControlPlaneError, ValueError):
    """An argument was refused before anything was written (bad cost, non-JSON payload, too large, …)."""


class PolicyError(ControlPlaneError):
    """A policy could not be read or did not validate. `errors` lists every problem found, not just the first."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        self.errors = list(errors or [])
        detail = "".join(f"\n  - {e}" for e in self.errors)
        super().__init__(f"{message}{detail}")


class NotFoundError(ControlPlaneError, LookupError):
    """A session, proposal or kill switch id that the database does not hold."""


class SessionNotFoundError(NotFoundError):
    """The session id is not known to this control plane."""


class ProposalNotFoundError(NotFoundError):
    """The proposal id is not known to this control plane."""


class SessionStateError(ControlPlaneError):
    """A session lifecycle change that its current status does not allow (e.g. resuming a completed session)."""


class AlreadySettledError(ControlPlaneError):
    """`settle` or `heartbeat` was called for a proposal that was already settled or was never allowed."""


class StorageError(ControlPlaneError):
    """The database failed or was unreachable; the operation did not take effect (nothing was executed)."""


class SchemaNotReadyError(StorageError):
    """The control plane's tables are not in the database it was pointed at.

    Either the schema was never set up there (run `cp.setup()` or `acp db upgrade`), or the database URL, table
    prefix or schema points somewhere else: setting up there would create a second, empty control plane, so the
    message names the database and prefix to check first.
    """


class EventLogError(ControlPlaneError):
    """The event log holds something this version cannot read (e.g. an unknown event kind): refused, not skipped."""


class TokenBudgetExhaustedError(ControlPlaneError):
    """A recorded model call took a token budget past its cap.

    The usage *was* recorded (the ledger matches the provider's bill even for over-budget calls); `states` holds
    every budget covering the identity as it is now, and `over` the ones that are past their cap.
    """

    def __init__(self, message: str, states: tuple[TokenBudgetState, ...], usage_id: str | None = None) -> None:
        self.states = states
        self.usage_id = usage_id
        super().__init__(message)

    @property
    def over(self) -> tuple[TokenBudgetState, ...]:
        return tuple(state for state in self.states if state.over)
