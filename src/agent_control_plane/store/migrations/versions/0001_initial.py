"""Initial schema: policies, sessions (and the control stream), proposals, events, kill switches.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from agent_control_plane.store.types import Money

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade() -> None:
    registry = context.config.attributes["registry"]
    n, schema = registry.name, registry.schema
    fk = f"{schema}.{n('sessions')}.id" if schema else f"{n('sessions')}.id"

    op.create_table(
        n("policies"),
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        schema=schema,
    )
    sessions = op.create_table(
        n("sessions"),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("agent_id", sa.String(200)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("policy_hash", sa.String(64)),
        sa.Column("max_cost", Money),
        sa.Column("spent_cost", Money, nullable=False),
        sa.Column("reserved_cost", Money, nullable=False),
        sa.Column("max_action_count", sa.BigInteger),
        sa.Column("action_count", sa.BigInteger, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        schema=schema,
    )
    op.create_table(
        n("proposals"),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(64), sa.ForeignKey(fk), nullable=False),
        sa.Column("agent_id", sa.String(200)),
        sa.Column("action", sa.String(200), nullable=False),
        sa.Column("resource", sa.String(500)),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("cost", Money, nullable=False),
        sa.Column("actual_cost", Money),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("allowed", sa.Boolean, nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("rule", sa.String(500)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("result", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("settled_at", sa.BigInteger),
        sa.UniqueConstraint("session_id", "idempotency_key", name=n("proposals_idempotency_uq")),
        schema=schema,
    )
    op.create_index(n("proposals_status_ix"), n("proposals"), ["status", "created_at"], schema=schema)
    op.create_table(
        n("events"),
        sa.Column("session_id", sa.String(64), sa.ForeignKey(fk), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.BigInteger, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        schema=schema,
    )
    op.create_table(
        n("kill_switches"),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("target", sa.String(200)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("engaged_by", sa.String(200), nullable=False),
        sa.Column("engaged_at", sa.BigInteger, nullable=False),
        sa.Column("released_at", sa.BigInteger),
        sa.Column("released_by", sa.String(200)),
        sa.Column("release_reason", sa.Text),
        schema=schema,
    )
    op.create_index(n("kill_switches_active_ix"), n("kill_switches"), ["released_at", "scope", "target"], schema=schema)
    # The control stream: where system- and agent-wide changes (kill switches) are logged and hash-chained.
    op.bulk_insert(
        sessions,
        [
            {
                "id": "control",
                "kind": "control",
                "name": "control plane",
                "agent_id": None,
                "status": "active",
                "policy_hash": None,
                "max_cost": None,
                "spent_cost": 0,
                "reserved_cost": 0,
                "max_action_count": None,
                "action_count": 0,
                "last_seq": 0,
                "last_hash": GENESIS,
                "created_at": 0,
                "updated_at": 0,
            }
        ],
    )


def downgrade() -> None:
    raise NotImplementedError("the control plane's migrations are forward-only")
