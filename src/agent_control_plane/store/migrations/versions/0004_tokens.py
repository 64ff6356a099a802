"""Token governance: budgets, their window totals, the usage ledger, reservations; identity on proposals.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from agent_control_plane.store.types import Money

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _identity() -> list[sa.Column[str]]:
    return [sa.Column(name, sa.String(200)) for name in ("org_id", "team_id", "user_id")]


def upgrade() -> None:
    registry = context.config.attributes["registry"]
    n, schema = registry.name, registry.schema
    fk = f"{schema}.{n('sessions')}.id" if schema else f"{n('sessions')}.id"
    with op.batch_alter_table(n("proposals"), schema=schema) as batch:
        for name in ("org_id", "team_id", "user_id", "model_id"):
            batch.add_column(sa.Column(name, sa.String(200)))
        batch.add_column(sa.Column("estimated_tokens", sa.BigInteger))
    op.create_table(
        n("token_budgets"),
        sa.Column("id", sa.String(64), primary_key=True),
        *_identity(),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("max_tokens", sa.BigInteger),
        sa.Column("max_cost", Money),
        sa.Column("allowed_models", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        schema=schema,
    )
    op.create_table(
        n("token_windows"),
        sa.Column("budget_id", sa.String(64), primary_key=True),
        sa.Column("window_start", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("window_end", sa.BigInteger),
        sa.Column("tokens_used", sa.BigInteger, nullable=False),
        sa.Column("cost_used", Money, nullable=False),
        sa.Column("tokens_reserved", sa.BigInteger, nullable=False),
        sa.Column("cost_reserved", Money, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        schema=schema,
    )
    op.create_table(
        n("token_usage"),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(64), sa.ForeignKey(fk)),
        sa.Column("proposal_id", sa.String(64)),
        sa.Column("reservation_id", sa.String(64)),
        *_identity(),
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("total_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost", Money, nullable=False),
        sa.Column("over_budget", sa.Boolean, nullable=False),
        sa.Column("recorded_at", sa.BigInteger, nullable=False),
        schema=schema,
    )
    op.create_index(n("token_usage_org_ix"), n("token_usage"), ["org_id", "recorded_at"], schema=schema)
    op.create_index(n("token_usage_user_ix"), n("token_usage"), ["user_id", "recorded_at"], schema=schema)
    op.create_index(n("token_usage_time_ix"), n("token_usage"), ["recorded_at"], schema=schema)
    op.create_table(
        n("token_reservations"),
        sa.Column("id", sa.String(64), primary_key=True),
        *_identity(),
        sa.Column("model_id", sa.String(200)),
        sa.Column("session_id", sa.String(64)),
        sa.Column("proposal_id", sa.String(64)),
        sa.Column("tokens", sa.BigInteger, nullable=False),
        sa.Column("cost", Money, nullable=False),
        sa.Column("windows", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("closed_at", sa.BigInteger),
        schema=schema,
    )
    op.create_index(n("token_reservations_open_ix"), n("token_reservations"), ["status", "expires_at"], schema=schema)
    op.create_index(n("token_reservations_proposal_ix"), n("token_reservations"), ["proposal_id"], schema=schema)


def downgrade() -> None:
    raise NotImplementedError("the control plane's migrations are forward-only")
