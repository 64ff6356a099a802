"""Approval tickets and session-scoped grants.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from agent_control_plane.store.types import Money

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    registry = context.config.attributes["registry"]
    n, schema = registry.name, registry.schema
    fk = f"{schema}.{n('sessions')}.id" if schema else f"{n('sessions')}.id"
    op.create_table(
        n("tickets"),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(64), sa.ForeignKey(fk), nullable=False),
        sa.Column("proposal_id", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("agent_id", sa.String(200)),
        sa.Column("action", sa.String(200), nullable=False),
        sa.Column("resource", sa.String(500)),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("cost", Money, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("approver_group", sa.String(200)),
        sa.Column("deadline", sa.BigInteger),
        sa.Column("decided_by", sa.String(200)),
        sa.Column("decided_at", sa.BigInteger),
        sa.Column("comment", sa.Text),
        sa.Column("consumed_by", sa.String(64)),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        schema=schema,
    )
    op.create_index(n("tickets_call_ix"), n("tickets"), ["session_id", "digest", "status"], schema=schema)
    op.create_index(n("tickets_status_ix"), n("tickets"), ["status", "deadline"], schema=schema)
    op.create_table(
        n("grants"),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(64), sa.ForeignKey(fk), nullable=False),
        sa.Column("ticket_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(200), nullable=False),
        sa.Column("resource", sa.String(500)),
        sa.Column("max_uses", sa.BigInteger),
        sa.Column("uses", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger),
        sa.Column("granted_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        schema=schema,
    )
    op.create_index(n("grants_session_ix"), n("grants"), ["session_id", "action"], schema=schema)


def downgrade() -> None:
    raise NotImplementedError("the control plane's migrations are forward-only")
