"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
"""

from __future__ import annotations

from alembic import context, op
import sqlalchemy as sa

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    registry = context.config.attributes["registry"]
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    raise NotImplementedError("the control plane's migrations are forward-only")
