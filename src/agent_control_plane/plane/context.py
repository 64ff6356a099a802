"""What every operation needs besides its Connection: the tables, the clock, and compiled policy snapshots."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection

from agent_control_plane.clock import Clock, from_micros, to_micros
from agent_control_plane.errors import PolicyError, SessionNotFoundError
from agent_control_plane.policy.engine import PolicyEngine
from agent_control_plane.policy.evaluators import EvaluatorRegistry
from agent_control_plane.policy.model import Policy, PolicySource
from agent_control_plane.policy.model_access import ModelGovernor
from agent_control_plane.policy.routing import RiskClassifier
from agent_control_plane.store import sessions
from agent_control_plane.store.statements import CONTROL_KIND
from agent_control_plane.store.tables import ScopedModelRegistry
from agent_control_plane.types.sessions import KillScope, KillSwitchInfo

_SESSION_CACHE_SIZE = 10_000

DEFAULT_RESERVATION_TTL = timedelta(minutes=15)
"""How long a token reservation holds its room before crash recovery gives it back."""


class PlaneContext:
    """Shared, thread-safe state of one control plane instance. Holds no database connection."""

    def __init__(
        self,
        tables: ScopedModelRegistry,
        clock: Clock,
        policy: PolicyEngine,
        *,
        max_payload_bytes: int,
        evaluators: EvaluatorRegistry,
        risk_classifier: RiskClassifier | None = None,
        models: ModelGovernor | None = None,
        reservation_ttl: timedelta = DEFAULT_RESERVATION_TTL,
    ) -> None:
        self.tables = tables
        self.models = models or ModelGovernor()
        self.reservation_ttl_micros = int(reservation_ttl / timedelta(microseconds=1))
        self.evaluators = evaluators
        self.risk_classifier = risk_classifier
        self.clock = clock
        self.policy = policy
        self.max_payload_bytes = max_payload_bytes
        self._lock = threading.Lock()
        self._engines: dict[str, PolicyEngine] = {policy.policy.digest(): policy}
        # A session's policy snapshot never changes after it opens, so caching session → snapshot is always right.
        self._session_policy: OrderedDict[str, str] = OrderedDict()

    def compile(self, policy: PolicySource) -> PolicyEngine:
        """A policy compiled with this control plane's evaluator types and risk classifier."""
        return PolicyEngine(policy, registry=self.evaluators, risk_classifier=self.risk_classifier)

    def now_micros(self) -> int:
        return to_micros(self.clock.now())

    def remember_session_policy(self, session_id: str, digest: str, engine: PolicyEngine) -> None:
        with self._lock:
            self._engines.setdefault(digest, engine)
            self._remember(session_id, digest)

    def _remember(self, session_id: str, digest: str) -> None:
        self._session_policy[session_id] = digest
        self._session_policy.move_to_end(session_id)
        while len(self._session_policy) > _SESSION_CACHE_SIZE:
            self._session_policy.popitem(last=False)

    def cached_policy(self, session_id: str) -> PolicyEngine | None:
        """The session's compiled snapshot if this process has already loaded it (no database access)."""
        with self._lock:
            digest = self._session_policy.get(session_id)
            return self._engines.get(digest) if digest is not None else None

    def policy_for_session(self, conn: Connection, session_id: str) -> PolicyEngine:
        """The compiled policy snapshot a session was opened with. Raises `SessionNotFoundError`."""
        with self._lock:
            digest = self._session_policy.get(session_id)
            engine = self._engines.get(digest) if digest is not None else None
        if engine is not None:
            return engine
        found = sessions.policy_hash_of(conn, self.tables, session_id)
        if found is None:
            raise SessionNotFoundError(f"unknown session id {session_id!r} (see `acp sessions list`)")
        digest, kind = found
        if kind == CONTROL_KIND or digest is None:
            raise SessionNotFoundError(f"{session_id!r} is the control plane's own log, not a session")
        with self._lock:
            engine = self._engines.get(digest)
        if engine is None:
            body = sessions.load_policy_body(conn, self.tables, digest)
            if body is None:
                raise PolicyError(f"session {session_id} refers to policy snapshot {digest} that is not stored")
            engine = self.compile(Policy.model_validate_json(body))
        self.remember_session_policy(session_id, digest, engine)
        return engine

    @staticmethod
    def kill_info(row: Mapping[Any, Any]) -> KillSwitchInfo:
        released = row["released_at"]
        return KillSwitchInfo(
            kill_id=row["id"],
            scope=KillScope(row["scope"]),
            target=row["target"],
            reason=row["reason"],
            engaged_by=row["engaged_by"],
            engaged_at=from_micros(row["engaged_at"]),
            released_at=from_micros(released) if released is not None else None,
            released_by=row["released_by"],
            release_reason=row["release_reason"],
        )
