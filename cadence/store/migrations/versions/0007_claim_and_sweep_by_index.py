"""claim and sweep by index: task deadlines, pause ends, a lead's and a mailbox's touches by status and time

Nothing on the claim or sweep path may read what grows with history
(tests/integration/test_explain.py explains every statement they run):

- `touch.expires_at`: an open task's deadline, the end of the window on the
  `tasks.expire_after_days`-th allowed day after its due date, in the lead's calendar.
  It is computed when the task opens (`engine.record`) or is snoozed (`outcomes.snooze`),
  and the sweep expires every task past it with one UPDATE on `ix_touch_open_expires_at`
  (partial: open tasks only), instead of listing every open task each minute.
- Existing open tasks are left NULL here. Their deadline needs the lead's calendar
  (zone, working days, holidays of the lead's country and region, the sequence's
  schedule), which SQL cannot compute; an estimate in SQL could expire a task before
  the deadline its rep was promised. So the sweep dates them instead, a bounded batch
  each minute, found through the same partial index (`expires_at IS NULL`), using the
  very computation the task would have had on opening; a task is dated before it is
  expired in the same sweep, so none expires late by more than the batches it waits.
  This also catches a task opened by code that does not date it.
- `ix_touch_lead_id_status_sent_at`, `ix_touch_sender_status_sent_at`: a claim counts
  a lead's recent touches and a mailbox's emails today by these, one status at a time,
  never every sent touch.
- `ix_enrollment_paused_until` (partial: enrollments paused until a date): pauses that end.

Lost leases already have `ix_touch_status_lease` (status, lease_until), recycles due
`ix_recycle_due_at`, and suppressions their (channel, address) primary key.

On a large PostgreSQL store the three new touch indexes take a while to build and block
writes to `touch` meanwhile: run the upgrade with the engine stopped.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cadence.store.types


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_TASK = "status = 'task_open'"
PAUSED_UNTIL = "state = 'paused' AND paused_until IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table('touch', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', cadence.store.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_touch_lead_id_status_sent_at', ['lead_id', 'status', 'sent_at'], unique=False)
        batch_op.create_index('ix_touch_sender_status_sent_at', ['sender', 'status', 'sent_at', 'channel'], unique=False)
        batch_op.create_index(
            'ix_touch_open_expires_at', ['status', 'expires_at'], unique=False,
            sqlite_where=sa.text(OPEN_TASK), postgresql_where=sa.text(OPEN_TASK),
        )
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.create_index(
            'ix_enrollment_paused_until', ['paused_until'], unique=False,
            sqlite_where=sa.text(PAUSED_UNTIL), postgresql_where=sa.text(PAUSED_UNTIL),
        )


def downgrade() -> None:
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.drop_index('ix_enrollment_paused_until')
    with op.batch_alter_table('touch', schema=None) as batch_op:
        batch_op.drop_index('ix_touch_open_expires_at')
        batch_op.drop_index('ix_touch_sender_status_sent_at')
        batch_op.drop_index('ix_touch_lead_id_status_sent_at')
        batch_op.drop_column('expires_at')
