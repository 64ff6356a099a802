"""The whole call on proposals and grants: each proposal's mode (dry run or live) and the seq of its decision
event; each grant's mode and identity, taken from the call it was given on.

Existing rows get their mode from their `proposal.decided` events (which always recorded it), and existing grants
the mode and identity of their ticket's proposal, so an approval given on a dry run stays a dry run's approval.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import json
from collections.abc import Callable

import sqlalchemy as sa
from alembic import context, op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BATCH = 500


def upgrade() -> None:
    registry = context.config.attributes["registry"]
    n, schema = registry.name, registry.schema
    with op.batch_alter_table(n("proposals"), schema=schema) as batch:
        batch.add_column(sa.Column("dry_run", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("decided_seq", sa.BigInteger))
    with op.batch_alter_table(n("grants"), schema=schema) as batch:
        batch.add_column(sa.Column("dry_run", sa.Boolean, nullable=False, server_default=sa.false()))
        for name in ("org_id", "team_id", "user_id"):
            batch.add_column(sa.Column(name, sa.String(200)))
    _mark_dry_runs(n, schema)
    _bind_grants(n, schema)


def _mark_dry_runs(name: Callable[[str], str], schema: str | None) -> None:
    """Set `dry_run` on the proposals whose decision event says `mode: dry_run`."""
    events = sa.table(name("events"), sa.column("kind"), sa.column("payload"), schema=schema)
    proposals = sa.table(name("proposals"), sa.column("id"), sa.column("dry_run", sa.Boolean), schema=schema)
    conn = op.get_bind()
    # The LIKE only narrows the scan (payloads are canonical JSON); each candidate is parsed to be sure.
    found = conn.execute(
        sa.select(events.c.payload).where(
            events.c.kind == "proposal.decided", events.c.payload.like('%"mode":"dry_run"%')
        )
    )
    ids = [payload["proposal_id"] for (text,) in found if (payload := json.loads(text)).get("mode") == "dry_run"]
    for start in range(0, len(ids), _BATCH):
        chunk = ids[start : start + _BATCH]
        conn.execute(sa.update(proposals).where(proposals.c.id.in_(chunk)).values(dry_run=True))


def _bind_grants(name: Callable[[str], str], schema: str | None) -> None:
    """Give each grant the mode and identity of the proposal its ticket was asked by."""
    identity = ("org_id", "team_id", "user_id")
    proposals = sa.table(
        name("proposals"), sa.column("id"), sa.column("dry_run", sa.Boolean), *map(sa.column, identity), schema=schema
    )
    tickets = sa.table(name("tickets"), sa.column("id"), sa.column("proposal_id"), schema=schema)
    grants = sa.table(
        name("grants"),
        sa.column("ticket_id"),
        sa.column("dry_run", sa.Boolean),
        *map(sa.column, identity),
        schema=schema,
    )

    def of_asker(column: str) -> sa.ScalarSelect[object]:
        return (
            sa.select(proposals.c[column])
            .select_from(tickets.join(proposals, proposals.c.id == tickets.c.proposal_id))
            .where(tickets.c.id == grants.c.ticket_id)
            .scalar_subquery()
        )

    conn = op.get_bind()
    conn.execute(sa.update(grants).values({column: of_asker(column) for column in identity}))
    conn.execute(sa.update(grants).where(of_asker("dry_run") == sa.true()).values(dry_run=True))


def downgrade() -> None:
    raise NotImplementedError("the control plane's migrations are forward-only")
