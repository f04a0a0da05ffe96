"""The tables. The schema itself is created by Alembic migrations, never create_all.

Hot paths: `enrollment.next_due_at` is the one indexed column the engine scans
for due work (an index range scan, not one job per touch); a touch row is
written when a touch is claimed, so its status history is the audit trail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, MetaData, Table, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from cadence.store.types import UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata = MetaData(naming_convention=NAMING)


def _utc(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class Lead(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=200)
    email: str | None = Field(default=None, max_length=320, unique=True)
    phone: str | None = Field(default=None, max_length=32, index=True)
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    title: str | None = None
    owner: str | None = Field(default=None, max_length=100, index=True)
    timezone: str | None = Field(default=None, max_length=64)
    country: str | None = Field(default=None, max_length=16)
    sms_consent: bool = False
    stage: str = Field(default="new", max_length=40)
    score: float | None = None
    do_not_contact: bool = False
    email_invalid: bool = False
    phone_invalid: bool = False
    fields: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _utc(nullable=False)
    updated_at: datetime = _utc(nullable=False)
    # ISO 3166-2 subdivision (GB-SCT, US-CA) whose public holidays the lead keeps; None: the country's default.
    region: str | None = Field(default=None, max_length=16)


class SequenceVersion(SQLModel, table=True):
    """A published version of a sequence file: what enrollments actually follow."""

    __table_args__ = (UniqueConstraint("sequence_id", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    sequence_id: str = Field(max_length=100, index=True)
    version: int
    content_hash: str = Field(max_length=64)
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    template_hashes: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The template sources as applied, so an edited template file changes nothing until `cadence apply`.
    # NULL for versions published before templates were stored: those render from the files.
    templates: dict[str, str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    path: str | None = None
    published_at: datetime = _utc(nullable=False)
    retired: bool = Field(default=False, description="The file was deleted: live enrollments finish on it, none start")


class Enrollment(SQLModel, table=True):
    """One lead in one sequence; `next_due_at` is NULL whenever nothing is due to claim."""

    __table_args__ = (
        Index(
            "uq_enrollment_one_live_outbound",
            "lead_id",
            unique=True,
            sqlite_where=text("kind = 'outbound' AND state IN ('active', 'paused')"),
            postgresql_where=text("kind = 'outbound' AND state IN ('active', 'paused')"),
        ),
        # Pauses that end (not those set aside until someone looks): the sweep resumes those past `paused_until`.
        Index(
            "ix_enrollment_paused_until",
            "paused_until",
            sqlite_where=text("state = 'paused' AND paused_until IS NOT NULL"),
            postgresql_where=text("state = 'paused' AND paused_until IS NOT NULL"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    lead_id: str = Field(foreign_key="lead.id", max_length=200, index=True)
    sequence_id: str = Field(max_length=100, index=True)
    version_id: int = Field(foreign_key="sequenceversion.id")
    kind: str = Field(max_length=20)
    state: str = Field(default="active", max_length=20)
    enrolled_at: datetime = _utc(nullable=False)
    next_index: int | None = None
    next_step: str | None = Field(default=None, max_length=100)
    next_due_at: datetime | None = _utc(index=True)
    pending_touch_id: int | None = None
    last_touch_at: datetime | None = _utc()
    paused_until: datetime | None = _utc()
    finished_at: datetime | None = _utc()
    outcome: str | None = Field(default=None, max_length=40)
    dropped_channels: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class Touch(SQLModel, table=True):
    """One step carried out (or being carried out) for one lead.

    An open task expires at `expires_at`, its deadline in the lead's calendar, set when it
    opens or is snoozed (NULL until the sweep dates it, for tasks opened before the column).
    """

    __table_args__ = (
        Index("ix_touch_status_lease", "status", "lease_until"),  # lost claims: sending, lease run out
        # A claim's caps count a lead's touches and a mailbox's emails, of one status, since a moment.
        Index("ix_touch_lead_id_status_sent_at", "lead_id", "status", "sent_at"),
        Index("ix_touch_sender_status_sent_at", "sender", "status", "sent_at", "channel"),
        # Open tasks by deadline (NULL: not dated yet): the sweep expires those past it in one UPDATE.
        Index(
            "ix_touch_open_expires_at",
            "status",
            "expires_at",
            sqlite_where=text("status = 'task_open'"),
            postgresql_where=text("status = 'task_open'"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    enrollment_id: int = Field(foreign_key="enrollment.id", index=True)
    lead_id: str = Field(foreign_key="lead.id", max_length=200, index=True)
    sequence_id: str = Field(max_length=100)
    step_id: str = Field(max_length=100)
    step_index: int
    channel: str = Field(max_length=10)
    status: str = Field(max_length=20)
    owner: str | None = Field(default=None, max_length=100, index=True)
    sender: str | None = Field(default=None, max_length=100)
    due_at: datetime = _utc(nullable=False)
    claimed_by: str | None = Field(default=None, max_length=100)
    lease_until: datetime | None = _utc()
    sent_at: datetime | None = _utc(index=True)
    done_at: datetime | None = _utc()
    attempts: int = 0
    variant: str | None = Field(default=None, max_length=40)
    subject: str | None = None
    body: str | None = None
    message_id: str | None = Field(default=None, max_length=300, index=True)
    provider_id: str | None = Field(default=None, max_length=100, index=True)
    delivery: str | None = Field(default=None, max_length=20)
    error: str | None = None
    disposition: str | None = Field(default=None, max_length=60)
    note: str | None = None
    expires_at: datetime | None = _utc()


class Suppression(SQLModel, table=True):
    """Global do-not-contact: an address here is never contacted by any sequence."""

    channel: str = Field(primary_key=True, max_length=10)
    address: str = Field(primary_key=True, max_length=320)
    reason: str = Field(max_length=200)
    lead_id: str | None = Field(default=None, max_length=200)
    created_at: datetime = _utc(nullable=False)


class History(SQLModel, table=True):
    """The story of a lead: every enrollment, touch outcome, event, disposition and action."""

    id: int | None = Field(default=None, primary_key=True)
    lead_id: str = Field(foreign_key="lead.id", max_length=200, index=True)
    at: datetime = _utc(nullable=False)
    kind: str = Field(max_length=40)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    cause: str | None = None


class Recycle(SQLModel, table=True):
    """A lead waiting out a cool-off before it is enrolled again (survives restarts)."""

    id: int | None = Field(default=None, primary_key=True)
    lead_id: str = Field(foreign_key="lead.id", max_length=200, index=True)
    sequence_id: str = Field(max_length=100)
    due_at: datetime = _utc(nullable=False, index=True)
    cause: str | None = None
    from_enrollment_id: int | None = Field(default=None, foreign_key="enrollment.id")
    created_at: datetime = _utc(nullable=False)


class SmsReceipt(SQLModel, table=True):
    """An inbound SMS already acted on, by Twilio's MessageSid: Twilio retries a webhook it thinks was lost,
    and the unique key makes the replay record nothing."""

    message_sid: str = Field(primary_key=True, max_length=64)
    received_at: datetime = _utc(nullable=False)


class InboundMessage(SQLModel, table=True):
    """A message read from a mailbox (or handed in as a file or over HTTP), once: the unique
    `message_id` (the inbound Message-ID, or a hash of the raw bytes) makes a second reading of
    the same message a duplicate that changes nothing."""

    __table_args__ = (Index("ix_inboundmessage_address_read_at", "address", "read_at"),)
    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=400, unique=True)
    read_at: datetime = _utc(nullable=False, index=True)
    source: str = Field(max_length=20)  # imap, file, http
    mailbox: str | None = Field(default=None, max_length=200)
    folder: str | None = Field(default=None, max_length=200)
    uid: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))  # IMAP UIDs are 32-bit unsigned
    sender: str | None = Field(default=None, max_length=320)
    subject: str | None = None
    kind: str = Field(max_length=30, index=True)  # an InboundKind, or unmatched
    classified_as: str = Field(max_length=30)  # what the classifier said, even when no lead matched
    reason: str
    bounce_reason: str | None = Field(default=None, max_length=30)
    retrying: bool = False  # a delay warning: the sending server still tries, so it counts towards no limit
    address: str | None = Field(default=None, max_length=320)  # the lead address it concerns (bounced, replying)
    lead_id: str | None = Field(default=None, max_length=200, index=True)
    touch_id: int | None = None
    matched_by: str | None = Field(default=None, max_length=40)
    action: str | None = None
    until: datetime | None = _utc()
    text: str | None = None


class MailboxCursor(SQLModel, table=True):
    """How far a mailbox folder has been read: only UIDs above `last_uid` are new while the
    folder's UIDVALIDITY stays the same (a change means the server renumbered: read it all again)."""

    mailbox: str = Field(primary_key=True, max_length=200)
    folder: str = Field(primary_key=True, max_length=200)
    uidvalidity: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_uid: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = _utc(nullable=False)


class MailboxLease(SQLModel, table=True):
    """Which worker reads a mailbox now: one reader per mailbox, taken over when its lease runs out."""

    mailbox: str = Field(primary_key=True, max_length=200)
    holder: str = Field(max_length=100)
    expires_at: datetime = _utc(nullable=False)


# The tables as SQLAlchemy Core sees them: every statement in store/ is written against these.
LeadT: Table = Lead.__table__  # type: ignore[attr-defined]
EnrollmentT: Table = Enrollment.__table__  # type: ignore[attr-defined]
TouchT: Table = Touch.__table__  # type: ignore[attr-defined]
HistoryT: Table = History.__table__  # type: ignore[attr-defined]
RecycleT: Table = Recycle.__table__  # type: ignore[attr-defined]
SuppressionT: Table = Suppression.__table__  # type: ignore[attr-defined]
VersionT: Table = SequenceVersion.__table__  # type: ignore[attr-defined]
SmsReceiptT: Table = SmsReceipt.__table__  # type: ignore[attr-defined]
InboundMessageT: Table = InboundMessage.__table__  # type: ignore[attr-defined]
MailboxCursorT: Table = MailboxCursor.__table__  # type: ignore[attr-defined]
MailboxLeaseT: Table = MailboxLease.__table__  # type: ignore[attr-defined]
