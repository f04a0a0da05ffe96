"""The tables. The schema itself is created by Alembic migrations, never create_all.

Hot paths: `enrollment.next_due_at` is the one indexed column the engine scans
for due work (an index range scan, not one job per touch); a touch row is
written when a touch is claimed, so its status history is the audit trail.

Plain SQLAlchemy Core tables: every statement in store/ is written against them, and nothing
maps rows to objects. (They were SQLModel classes; building those classes, and importing
sqlmodel and pydantic for them, cost every command that opens the store about a quarter of
a second, and no code used them as models.) Column defaults here are applied by SQLAlchemy
on INSERT, as the classes' defaults were; tests/integration/test_migrations.py holds these
tables equal to what the migrations build.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    text,
)

from cadence.store.types import UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)


def _id() -> Column[int]:
    return Column("id", Integer, primary_key=True)


def _text(name: str, length: int | None = None, *, nullable: bool = True, **kwargs: object) -> Column[str]:
    return Column(name, String(length), nullable=nullable, **kwargs)  # type: ignore[arg-type]


def _utc(name: str, *, nullable: bool = True, index: bool = False) -> Column[object]:
    return Column(name, UTCDateTime(), nullable=nullable, index=index)


def _flag(name: str) -> Column[bool]:
    return Column(name, Boolean, nullable=False, default=False)


def _lead_id(*, nullable: bool = False, index: bool = True) -> Column[str]:
    return Column("lead_id", String(200), ForeignKey("lead.id"), nullable=nullable, index=index)


# The WHERE of each partial index, declared on the metadata only by `schema_metadata()` (the migrations and
# their tests): a `postgresql_where` makes SQLAlchemy import the PostgreSQL dialect (~40-60 ms) to check
# it, and every command, SQLite's included, would pay that for DDL that only migrations run.
PARTIAL_WHERE: dict[str, str] = {}


def _partial(name: str, *columns: str, where: str, unique: bool = False) -> Index:
    PARTIAL_WHERE[name] = where
    return Index(name, *columns, unique=unique)


def schema_metadata() -> MetaData:
    """The tables with every index as the migrations create it, partial indexes' WHERE included."""
    for table in metadata.tables.values():
        for index in table.indexes:
            where = PARTIAL_WHERE.get(str(index.name))
            if where is not None and index.dialect_options["sqlite"].get("where") is None:
                index.dialect_options["sqlite"]["where"] = text(where)
                index.dialect_options["postgresql"]["where"] = text(where)
    return metadata


LeadT = Table(
    "lead",
    metadata,
    _text("id", 200, nullable=False, primary_key=True),
    _text("email", 320, unique=True),
    _text("phone", 32, index=True),
    _text("first_name"),
    _text("last_name"),
    _text("company"),
    _text("title"),
    _text("owner", 100, index=True),
    _text("timezone", 64),
    _text("country", 16),
    _flag("sms_consent"),
    _text("stage", 40, nullable=False, default="new"),
    Column("score", Float, nullable=True),
    _flag("do_not_contact"),
    _flag("email_invalid"),
    _flag("phone_invalid"),
    Column("fields", JSON, nullable=False),
    _utc("created_at", nullable=False),
    _utc("updated_at", nullable=False),
    # ISO 3166-2 subdivision (GB-SCT, US-CA) whose public holidays the lead keeps; None: the country's default.
    _text("region", 16),
)

# A published version of a sequence file: what enrollments actually follow.
VersionT = Table(
    "sequenceversion",
    metadata,
    _id(),
    _text("sequence_id", 100, nullable=False, index=True),
    Column("version", Integer, nullable=False),
    _text("content_hash", 64, nullable=False),
    Column("spec", JSON, nullable=False),
    Column("template_hashes", JSON, nullable=False),
    # The template sources as applied, so an edited template file changes nothing until `cadence apply`.
    # NULL for versions published before templates were stored: those render from the files.
    Column("templates", JSON, nullable=True),
    _text("path"),
    _utc("published_at", nullable=False),
    _flag("retired"),  # the file was deleted: live enrollments finish on it, none start
    UniqueConstraint("sequence_id", "version"),
)

# One lead in one sequence; `next_due_at` is NULL whenever nothing is due to claim.
EnrollmentT = Table(
    "enrollment",
    metadata,
    _id(),
    _lead_id(),
    _text("sequence_id", 100, nullable=False, index=True),
    Column("version_id", Integer, ForeignKey("sequenceversion.id"), nullable=False),
    _text("kind", 20, nullable=False),
    _text("state", 20, nullable=False, default="active"),
    _utc("enrolled_at", nullable=False),
    Column("next_index", Integer, nullable=True),
    _text("next_step", 100),
    _utc("next_due_at", index=True),
    Column("pending_touch_id", Integer, nullable=True),
    _utc("last_touch_at"),
    _utc("paused_until"),
    _utc("finished_at"),
    _text("outcome", 40),
    Column("dropped_channels", JSON, nullable=False),
    _partial(
        "uq_enrollment_one_live_outbound", "lead_id", unique=True,
        where="kind = 'outbound' AND state IN ('active', 'paused')",
    ),
    # Pauses that end (not those set aside until someone looks): the sweep resumes those past `paused_until`.
    _partial("ix_enrollment_paused_until", "paused_until", where="state = 'paused' AND paused_until IS NOT NULL"),
)  # fmt: skip

# One step carried out (or being carried out) for one lead. An open task expires at `expires_at`, its
# deadline in the lead's calendar, set when it opens or is snoozed (NULL until the sweep dates it, for
# tasks opened before the column).
TouchT = Table(
    "touch",
    metadata,
    _id(),
    Column("enrollment_id", Integer, ForeignKey("enrollment.id"), nullable=False, index=True),
    _lead_id(),
    _text("sequence_id", 100, nullable=False),
    _text("step_id", 100, nullable=False),
    Column("step_index", Integer, nullable=False),
    _text("channel", 10, nullable=False),
    _text("status", 20, nullable=False),
    _text("owner", 100, index=True),
    _text("sender", 100),
    _utc("due_at", nullable=False),
    _text("claimed_by", 100),
    _utc("lease_until"),
    _utc("sent_at", index=True),
    _utc("done_at"),
    Column("attempts", Integer, nullable=False, default=0),
    _text("variant", 40),
    _text("subject"),
    _text("body"),
    _text("message_id", 300, index=True),
    _text("provider_id", 100, index=True),
    _text("delivery", 20),
    _text("error"),
    _text("disposition", 60),
    _text("note"),
    _utc("expires_at"),
    Index("ix_touch_status_lease", "status", "lease_until"),  # lost claims: sending, lease run out
    # A claim's caps count a lead's touches and a mailbox's emails, of one status, since a moment.
    Index("ix_touch_lead_id_status_sent_at", "lead_id", "status", "sent_at"),
    Index("ix_touch_sender_status_sent_at", "sender", "status", "sent_at", "channel"),
    # Open tasks by deadline (NULL: not dated yet): the sweep expires those past it in one UPDATE.
    _partial("ix_touch_open_expires_at", "status", "expires_at", where="status = 'task_open'"),
)

# Global do-not-contact: an address here is never contacted by any sequence.
SuppressionT = Table(
    "suppression",
    metadata,
    _text("channel", 10, nullable=False, primary_key=True),
    _text("address", 320, nullable=False, primary_key=True),
    _text("reason", 200, nullable=False),
    _text("lead_id", 200),
    _utc("created_at", nullable=False),
)

# The story of a lead: every enrollment, touch outcome, event, disposition and action.
HistoryT = Table(
    "history",
    metadata,
    _id(),
    _lead_id(),
    _utc("at", nullable=False),
    _text("kind", 40, nullable=False),
    Column("detail", JSON, nullable=False),
    _text("cause"),
)

# A lead waiting out a cool-off before it is enrolled again (survives restarts).
RecycleT = Table(
    "recycle",
    metadata,
    _id(),
    _lead_id(),
    _text("sequence_id", 100, nullable=False),
    _utc("due_at", nullable=False, index=True),
    _text("cause"),
    Column("from_enrollment_id", Integer, ForeignKey("enrollment.id"), nullable=True),
    _utc("created_at", nullable=False),
)

# An inbound SMS already acted on, by Twilio's MessageSid: Twilio retries a webhook it thinks was lost,
# and the unique key makes the replay record nothing.
SmsReceiptT = Table(
    "smsreceipt",
    metadata,
    _text("message_sid", 64, nullable=False, primary_key=True),
    _utc("received_at", nullable=False),
)

# A message read from a mailbox (or handed in as a file or over HTTP), once: the unique `message_id`
# (the inbound Message-ID, or a hash of the raw bytes) makes a second reading of the same message a
# duplicate that changes nothing.
InboundMessageT = Table(
    "inboundmessage",
    metadata,
    _id(),
    _text("message_id", 400, nullable=False, unique=True),
    _utc("read_at", nullable=False, index=True),
    _text("source", 20, nullable=False),  # imap, file, http
    _text("mailbox", 200),
    _text("folder", 200),
    Column("uid", BigInteger, nullable=True),  # IMAP UIDs are 32-bit unsigned
    _text("sender", 320),
    _text("subject"),
    _text("kind", 30, nullable=False, index=True),  # an InboundKind, or unmatched
    _text("classified_as", 30, nullable=False),  # what the classifier said, even when no lead matched
    _text("reason", nullable=False),
    _text("bounce_reason", 30),
    _flag("retrying"),  # a delay warning: the sending server still tries, so it counts towards no limit
    _text("address", 320),  # the lead address it concerns (bounced, replying)
    _text("lead_id", 200, index=True),
    Column("touch_id", Integer, nullable=True),
    _text("matched_by", 40),
    _text("action"),
    _utc("until"),
    _text("text"),
    Index("ix_inboundmessage_address_read_at", "address", "read_at"),
)

# How far a mailbox folder has been read: only UIDs above `last_uid` are new while the folder's
# UIDVALIDITY stays the same (a change means the server renumbered: read it all again).
MailboxCursorT = Table(
    "mailboxcursor",
    metadata,
    _text("mailbox", 200, nullable=False, primary_key=True),
    _text("folder", 200, nullable=False, primary_key=True),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("last_uid", BigInteger, nullable=False),
    _utc("updated_at", nullable=False),
)

# Which worker reads a mailbox now: one reader per mailbox, taken over when its lease runs out.
MailboxLeaseT = Table(
    "mailboxlease",
    metadata,
    _text("mailbox", 200, nullable=False, primary_key=True),
    _text("holder", 100, nullable=False),
    _utc("expires_at", nullable=False),
)
