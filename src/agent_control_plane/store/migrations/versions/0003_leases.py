"""Concurrency leases, and one lock row per lease key.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    registry = context.config.attributes["registry"]
    n, schema = registry.name, registry.schema
    op.create_table(
        n("lease_keys"),
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("key", sa.String(500), primary_key=True),
        schema=schema,
    )
    op.create_table(
        n("leases"),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("proposal_id", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key", sa.String(500), nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("released_at", sa.BigInteger),
        schema=schema,
    )
    op.create_index(n("leases_key_ix"), n("leases"), ["scope", "key", "released_at"], schema=schema)
    op.create_index(n("leases_proposal_ix"), n("leases"), ["proposal_id"], schema=schema)


def downgrade() -> None:
    raise NotImplementedError("the control plane's migrations are forward-only")
