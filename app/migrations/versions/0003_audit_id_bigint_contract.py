"""audit_events.id to 64 bits, contract: the BIGINT copy becomes the id.

Revision ID: 0003_audit_id_bigint_contract
Revises: 0002_audit_id_bigint_expand
Create Date: 2026-12-01

Migrations are expand/contract: the code of the previous release must keep working
on the schema this revision leaves behind.

On Postgres, one short transaction under an exclusive lock on ``audit_events``, with
no table rewrite and no scan (0002 prepared the column, its unique index and a
validated not-null check): the sequence becomes 64-bit and moves to the new column,
which takes the old one's name and primary key. The previous release inserts audit
rows without an id, so the sequence's default serves it as before; it never reads
the id. Nothing happens on SQLite (see 0002).

Downgrading converts the ids back to 32 bits, which fails, saying so, once an id
is past 2^31 - 1.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_audit_id_bigint_contract"
down_revision: str | None = "0002_audit_id_bigint_expand"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEQUENCE = "pg_get_serial_sequence('audit_events', 'id')"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    sequence = op.get_bind().exec_driver_sql(f"SELECT {_SEQUENCE}").scalar_one()
    for statement in (
        "LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE",
        "DROP TRIGGER audit_events_copy_id ON audit_events",
        "DROP FUNCTION audit_events_copy_id()",
        # Uses the validated check instead of scanning the table.
        "ALTER TABLE audit_events ALTER COLUMN id_bigint SET NOT NULL",
        "ALTER TABLE audit_events DROP CONSTRAINT ck_audit_events_id_bigint_not_null",
        f"ALTER SEQUENCE {sequence} AS bigint NO MAXVALUE",
        f"ALTER SEQUENCE {sequence} OWNED BY audit_events.id_bigint",
        f"ALTER TABLE audit_events ALTER COLUMN id_bigint SET DEFAULT nextval('{sequence}')",
        "ALTER TABLE audit_events DROP CONSTRAINT pk_audit_events",
        "ALTER TABLE audit_events DROP COLUMN id",
        "ALTER TABLE audit_events RENAME COLUMN id_bigint TO id",
        "ALTER TABLE audit_events ADD CONSTRAINT pk_audit_events "
        "PRIMARY KEY USING INDEX uq_audit_events_id_bigint",
    ):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    bind = op.get_bind()
    sequence = bind.exec_driver_sql(f"SELECT {_SEQUENCE}").scalar_one()
    highest = bind.execute(
        sa.text(
            "SELECT greatest((SELECT coalesce(max(id), 0) FROM audit_events), "
            "coalesce(pg_sequence_last_value(CAST(:sequence AS regclass)), 0))"
        ),
        {"sequence": sequence},
    ).scalar_one()
    if highest > 2**31 - 1:
        raise RuntimeError(
            "audit_events holds ids past 2^31 - 1, which a 32-bit id cannot hold: "
            "delete or archive those rows (and reset the sequence) before downgrading"
        )
    for statement in (
        "LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE",
        "ALTER TABLE audit_events RENAME COLUMN id TO id_bigint",
        "ALTER TABLE audit_events ADD COLUMN id integer",
        "UPDATE audit_events SET id = id_bigint",
        "ALTER TABLE audit_events ALTER COLUMN id SET NOT NULL",
        f"ALTER SEQUENCE {sequence} AS integer",
        f"ALTER SEQUENCE {sequence} OWNED BY audit_events.id",
        f"ALTER TABLE audit_events ALTER COLUMN id SET DEFAULT nextval('{sequence}')",
        "ALTER TABLE audit_events ALTER COLUMN id_bigint DROP DEFAULT",
        "ALTER TABLE audit_events DROP CONSTRAINT pk_audit_events",
        "ALTER TABLE audit_events ADD CONSTRAINT pk_audit_events PRIMARY KEY (id)",
        "CREATE UNIQUE INDEX uq_audit_events_id_bigint ON audit_events (id_bigint)",
        "ALTER TABLE audit_events ALTER COLUMN id_bigint DROP NOT NULL",
        "ALTER TABLE audit_events ADD CONSTRAINT ck_audit_events_id_bigint_not_null "
        "CHECK (id_bigint IS NOT NULL)",
        """
        CREATE FUNCTION audit_events_copy_id() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.id_bigint := NEW.id;
            RETURN NEW;
        END
        $$
        """,
        "CREATE TRIGGER audit_events_copy_id BEFORE INSERT OR UPDATE ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION audit_events_copy_id()",
    ):
        op.execute(statement)
