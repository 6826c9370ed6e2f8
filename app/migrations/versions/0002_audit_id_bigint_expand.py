"""audit_events.id to 64 bits, expand: a BIGINT copy of the id, kept filled.

Revision ID: 0002_audit_id_bigint_expand
Revises: 0001_initial
Create Date: 2026-12-01

Migrations are expand/contract: the code of the previous release must keep working
on the schema this revision leaves behind.

A 32-bit id runs out after 2^31 audit rows. Changing the column's type in place
rewrites the table under an exclusive lock, which stops every audit write (and,
once their queue is full, the requests that make them) for as long as the rewrite
takes. Instead, on Postgres:

- here (expand): a nullable ``id_bigint`` column; a trigger that copies ``id`` into
  it on every insert, whichever release inserts; the existing rows copied over in
  batches; a unique index, and a validated check that it is never null (so that the
  contract step needs no scan);
- in 0003 (contract): a short swap of the two columns.

Nothing here changes what the previous release reads or writes. SQLite's integer
primary key is already 64 bits (it is the rowid): there is nothing to do there.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_audit_id_bigint_expand"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 50_000


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.add_column("audit_events", sa.Column("id_bigint", sa.BigInteger(), nullable=True))
    op.execute(
        """
        CREATE FUNCTION audit_events_copy_id() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.id_bigint := NEW.id;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_events_copy_id BEFORE INSERT OR UPDATE ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION audit_events_copy_id()"
    )
    bind = op.get_bind()
    last = bind.execute(sa.text("SELECT coalesce(max(id), 0) FROM audit_events")).scalar_one()
    for start in range(0, int(last) + 1, BATCH):
        # Row locks on one batch at a time; inserts go on meanwhile.
        bind.execute(
            sa.text(
                "UPDATE audit_events SET id_bigint = id "
                "WHERE id >= :start AND id < :end AND id_bigint IS NULL"
            ),
            {"start": start, "end": start + BATCH},
        )
    op.execute(
        "ALTER TABLE audit_events ADD CONSTRAINT ck_audit_events_id_bigint_not_null "
        "CHECK (id_bigint IS NOT NULL) NOT VALID"
    )
    # Blocks inserts while it builds (audit rows wait in the writer's queue meanwhile).
    # CREATE INDEX CONCURRENTLY would not, but it waits for every open transaction,
    # and a concurrent `migrate` waits for the migration lock inside one: the two
    # would deadlock.
    op.execute("CREATE UNIQUE INDEX uq_audit_events_id_bigint ON audit_events (id_bigint)")
    # Scans without blocking writes (it takes no lock that inserts conflict with).
    op.execute("ALTER TABLE audit_events VALIDATE CONSTRAINT ck_audit_events_id_bigint_not_null")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER audit_events_copy_id ON audit_events")
    op.execute("DROP FUNCTION audit_events_copy_id()")
    op.execute("DROP INDEX uq_audit_events_id_bigint")
    op.execute("ALTER TABLE audit_events DROP CONSTRAINT ck_audit_events_id_bigint_not_null")
    op.drop_column("audit_events", "id_bigint")
