"""The control plane's tables, bound to one registry instance (prefix and schema), never to global state."""

from __future__ import annotations

import re
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

from agent_control_plane.errors import InvalidInputError
from agent_control_plane.store.types import Money

if TYPE_CHECKING:
    from agent_control_plane.store.statements import Statements
    from agent_control_plane.store.tokens import TokenStatements

CONTROL_STREAM_ID = "control"
"""The event stream of control-plane-wide changes (system and agent kill switches). Not a session."""

GENESIS_HASH = "0" * 64
"""The `prev_hash` of every stream's first event."""

_PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,29}$|^$")
_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class ScopedModelRegistry:
    """The tables of one control plane: names carry `table_prefix`, and live in `schema` when given.

    Two registries with different prefixes (or schemas) let two control planes, and the host's own tables, share a
    database without seeing each other. Nothing is registered globally.
    """

    def __init__(self, table_prefix: str = "acp_", schema: str | None = None) -> None:
        if not _PREFIX.match(table_prefix):
            raise InvalidInputError(
                f"table_prefix {table_prefix!r} must be lower-case letters, digits and underscores, "
                "starting with a letter, at most 30 characters (e.g. 'acp_')"
            )
        if schema is not None and not _SCHEMA.match(schema):
            raise InvalidInputError(f"schema {schema!r} must be a plain SQL identifier (letters, digits, underscores)")
        self.table_prefix = table_prefix
        self.schema = schema
        self.metadata = MetaData(schema=schema)
        self._define()

    def name(self, base: str) -> str:
        return f"{self.table_prefix}{base}"

    @property
    def version_table(self) -> str:
        """The Alembic version table of this registry, so migrations of several registries never collide."""
        return self.name("alembic_version")

    def _define(self) -> None:
        n, md = self.name, self.metadata
        fk = f"{self.schema}.{n('sessions')}.id" if self.schema else f"{n('sessions')}.id"
        self.policies = Table(
            n("policies"),
            md,
            Column("hash", String(64), primary_key=True),
            Column("body", Text, nullable=False),
            Column("created_at", BigInteger, nullable=False),
        )
        self.sessions = Table(
            n("sessions"),
            md,
            Column("id", String(64), primary_key=True),
            Column("kind", String(16), nullable=False),
            Column("name", String(200), nullable=False),
            Column("agent_id", String(200)),
            Column("status", String(16), nullable=False),
            Column("policy_hash", String(64)),
            Column("max_cost", Money),
            Column("spent_cost", Money, nullable=False),
            Column("reserved_cost", Money, nullable=False),
            Column("max_action_count", BigInteger),
            Column("action_count", BigInteger, nullable=False),
            Column("last_seq", BigInteger, nullable=False),
            Column("last_hash", String(64), nullable=False),
            Column("created_at", BigInteger, nullable=False),
            Column("updated_at", BigInteger, nullable=False),
        )
        self.proposals = Table(
            n("proposals"),
            md,
            Column("id", String(64), primary_key=True),
            Column("session_id", String(64), ForeignKey(fk), nullable=False),
            Column("agent_id", String(200)),
            Column("action", String(200), nullable=False),
            Column("resource", String(500)),
            Column("args", Text, nullable=False),
            Column("cost", Money, nullable=False),
            Column("actual_cost", Money),
            Column("tier", String(32), nullable=False),
            Column("allowed", Boolean, nullable=False),
            Column("code", String(64), nullable=False),
            Column("reason", Text, nullable=False),
            Column("rule", String(500)),
            Column("status", String(16), nullable=False),
            Column("idempotency_key", String(200)),
            Column("result", Text),
            Column("created_at", BigInteger, nullable=False),
            Column("settled_at", BigInteger),
            Column("org_id", String(200)),
            Column("team_id", String(200)),
            Column("user_id", String(200)),
            Column("model_id", String(200)),
            Column("estimated_tokens", BigInteger),
            Column("dry_run", Boolean, nullable=False, server_default=false()),
            # The seq of this proposal's proposal.decided event, so a replay can give back its trace and steering.
            Column("decided_seq", BigInteger),
            # The last heartbeat of its worker (None: never beat); crash recovery measures its age from here.
            Column("heartbeat_at", BigInteger),
            UniqueConstraint("session_id", "idempotency_key", name=n("proposals_idempotency_uq")),
            Index(n("proposals_status_ix"), "status", "created_at"),
        )
        self.events = Table(
            n("events"),
            md,
            Column("session_id", String(64), ForeignKey(fk), primary_key=True),
            Column("seq", BigInteger, primary_key=True, autoincrement=False),
            Column("kind", String(100), nullable=False),
            Column("payload", Text, nullable=False),
            Column("recorded_at", BigInteger, nullable=False),
            Column("prev_hash", String(64), nullable=False),
            Column("hash", String(64), nullable=False),
        )
        self.kill_switches = Table(
            n("kill_switches"),
            md,
            Column("id", String(64), primary_key=True),
            Column("scope", String(16), nullable=False),
            Column("target", String(200)),
            Column("reason", Text, nullable=False),
            Column("engaged_by", String(200), nullable=False),
            Column("engaged_at", BigInteger, nullable=False),
            Column("released_at", BigInteger),
            Column("released_by", String(200)),
            Column("release_reason", Text),
            Index(n("kill_switches_active_ix"), "released_at", "scope", "target"),
        )

        self.tickets = Table(
            n("tickets"),
            md,
            Column("id", String(64), primary_key=True),
            Column("session_id", String(64), ForeignKey(fk), nullable=False),
            Column("proposal_id", String(64), nullable=False),
            Column("digest", String(64), nullable=False),
            Column("agent_id", String(200)),
            Column("action", String(200), nullable=False),
            Column("resource", String(500)),
            Column("args", Text, nullable=False),
            Column("cost", Money, nullable=False),
            Column("reason", Text, nullable=False),
            Column("status", String(16), nullable=False),
            Column("approver_group", String(200)),
            Column("deadline", BigInteger),
            Column("decided_by", String(200)),
            Column("decided_at", BigInteger),
            Column("comment", Text),
            Column("consumed_by", String(64)),
            Column("created_at", BigInteger, nullable=False),
            Index(n("tickets_call_ix"), "session_id", "digest", "status"),
            Index(n("tickets_status_ix"), "status", "deadline"),
        )
        self.grants = Table(
            n("grants"),
            md,
            Column("id", String(64), primary_key=True),
            Column("session_id", String(64), ForeignKey(fk), nullable=False),
            Column("ticket_id", String(64), nullable=False),
            Column("action", String(200), nullable=False),
            Column("resource", String(500)),
            Column("max_uses", BigInteger),
            Column("uses", BigInteger, nullable=False),
            Column("expires_at", BigInteger),
            Column("granted_by", String(200), nullable=False),
            Column("created_at", BigInteger, nullable=False),
            # The call the grant was given on: a dry run's grant covers dry runs only; the identity must match.
            Column("dry_run", Boolean, nullable=False, server_default=false()),
            Column("org_id", String(200)),
            Column("team_id", String(200)),
            Column("user_id", String(200)),
            Index(n("grants_session_ix"), "session_id", "action"),
        )

        self.lease_keys = Table(
            n("lease_keys"),
            md,
            Column("scope", String(16), primary_key=True),
            Column("key", String(500), primary_key=True),
        )
        self.leases = Table(
            n("leases"),
            md,
            Column("id", String(64), primary_key=True),
            Column("proposal_id", String(64), nullable=False),
            Column("scope", String(16), nullable=False),
            Column("key", String(500), nullable=False),
            Column("expires_at", BigInteger, nullable=False),
            Column("released_at", BigInteger),
            Index(n("leases_key_ix"), "scope", "key", "released_at"),
            Index(n("leases_proposal_ix"), "proposal_id"),
        )

        self._define_tokens()

    def _define_tokens(self) -> None:
        n, md = self.name, self.metadata
        fk = f"{self.schema}.{n('sessions')}.id" if self.schema else f"{n('sessions')}.id"
        identity = ("org_id", "team_id", "user_id")
        self.token_budgets = Table(
            n("token_budgets"),
            md,
            Column("id", String(64), primary_key=True),
            *(Column(name, String(200)) for name in identity),
            Column("period", String(16), nullable=False),
            Column("timezone", String(64), nullable=False),
            Column("max_tokens", BigInteger),
            Column("max_cost", Money),
            Column("allowed_models", Text),
            Column("created_at", BigInteger, nullable=False),
            Column("updated_at", BigInteger, nullable=False),
        )
        # Running totals per budget and window, kept by atomic increments, so no check sums the ledger.
        self.token_windows = Table(
            n("token_windows"),
            md,
            Column("budget_id", String(64), primary_key=True),
            Column("window_start", BigInteger, primary_key=True, autoincrement=False),
            Column("window_end", BigInteger),
            Column("tokens_used", BigInteger, nullable=False),
            Column("cost_used", Money, nullable=False),
            Column("tokens_reserved", BigInteger, nullable=False),
            Column("cost_reserved", Money, nullable=False),
            Column("updated_at", BigInteger, nullable=False),
        )
        self.token_usage = Table(
            n("token_usage"),
            md,
            Column("id", String(64), primary_key=True),
            Column("session_id", String(64), ForeignKey(fk)),
            Column("proposal_id", String(64)),
            Column("reservation_id", String(64)),
            *(Column(name, String(200)) for name in identity),
            Column("model_id", String(200), nullable=False),
            Column("input_tokens", BigInteger, nullable=False),
            Column("output_tokens", BigInteger, nullable=False),
            Column("total_tokens", BigInteger, nullable=False),
            Column("cost", Money, nullable=False),
            Column("over_budget", Boolean, nullable=False),
            Column("recorded_at", BigInteger, nullable=False),
            Index(n("token_usage_org_ix"), "org_id", "recorded_at"),
            Index(n("token_usage_user_ix"), "user_id", "recorded_at"),
            Index(n("token_usage_time_ix"), "recorded_at"),
        )
        self.token_reservations = Table(
            n("token_reservations"),
            md,
            Column("id", String(64), primary_key=True),
            *(Column(name, String(200)) for name in identity),
            Column("model_id", String(200)),
            Column("session_id", String(64)),
            Column("proposal_id", String(64)),
            Column("tokens", BigInteger, nullable=False),
            Column("cost", Money, nullable=False),
            Column("windows", Text, nullable=False),
            Column("status", String(16), nullable=False),
            Column("created_at", BigInteger, nullable=False),
            Column("expires_at", BigInteger, nullable=False),
            Column("closed_at", BigInteger),
            Index(n("token_reservations_open_ix"), "status", "expires_at"),
            Index(n("token_reservations_proposal_ix"), "proposal_id"),
        )

    @cached_property
    def statements(self) -> Statements:
        """Prebuilt hot-path statements for these tables (building a statement costs more than running it)."""
        from agent_control_plane.store.statements import Statements

        return Statements(self)

    @cached_property
    def token_statements(self) -> TokenStatements:
        """Prebuilt statements of the token tables."""
        from agent_control_plane.store.tokens import TokenStatements

        return TokenStatements(self)
