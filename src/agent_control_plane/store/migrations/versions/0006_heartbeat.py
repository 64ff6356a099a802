"""A proposal's last heartbeat: `heartbeat_at`, when its worker last said the allowed action still runs.

Crash recovery measures an open action's age from it. Existing rows have none, so their age still counts from
`created_at`, as before.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    registry = context.config.attributes["registry"]
    n, schema = registry.name, registry.schema
    with op.batch_alter_table(n("proposals"), schema=schema) as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.BigInteger))


def downgrade() -> None:
    raise NotImplementedError("the control plane's migrations are forward-only")
