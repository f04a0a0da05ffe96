"""Typed rows: what the store hands the rest of cadence, one named tuple per table, fields in column order.

Callers read `lead.email`, never `row["email"]`, so a renamed column is a type error
rather than a KeyError in production. Each tuple's fields match its table's columns
one for one (a test keeps them equal), which lets `select(*columns(LEAD))` build
them with `LeadRow._make(row)` at the cost of a plain tuple.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple


class LeadRow(NamedTuple):
    id: str
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    company: str | None
    title: str | None
    owner: str | None
    timezone: str | None
    country: str | None
    sms_consent: bool
    stage: str
    score: float | None
    do_not_contact: bool
    email_invalid: bool
    phone_invalid: bool
    fields: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    region: str | None

    @property
    def name(self) -> str:
        """ "Ann Lee", or the lead's id when it has no name."""
        return " ".join(filter(None, [self.first_name, self.last_name])) or self.id


class EnrollmentRow(NamedTuple):
    id: int
    lead_id: str
    sequence_id: str
    version_id: int
    kind: str
    state: str
    enrolled_at: datetime
    next_index: int | None
    next_step: str | None
    next_due_at: datetime | None
    pending_touch_id: int | None
    last_touch_at: datetime | None
    paused_until: datetime | None
    finished_at: datetime | None
    outcome: str | None
    dropped_channels: list[str]


class TouchRow(NamedTuple):
    id: int
    enrollment_id: int
    lead_id: str
    sequence_id: str
    step_id: str
    step_index: int
    channel: str
    status: str
    owner: str | None
    sender: str | None
    due_at: datetime
    claimed_by: str | None
    lease_until: datetime | None
    sent_at: datetime | None
    done_at: datetime | None
    attempts: int
    variant: str | None
    subject: str | None
    body: str | None
    message_id: str | None
    provider_id: str | None
    delivery: str | None
    error: str | None
    disposition: str | None
    note: str | None
    expires_at: datetime | None = None  # an open task's deadline (store/tasks.py)


class HistoryRow(NamedTuple):
    id: int
    lead_id: str
    at: datetime
    kind: str
    detail: dict[str, Any]
    cause: str | None


class RecycleRow(NamedTuple):
    id: int
    lead_id: str
    sequence_id: str
    due_at: datetime
    cause: str | None
    from_enrollment_id: int | None
    created_at: datetime


class VersionRow(NamedTuple):
    id: int
    sequence_id: str
    version: int
    content_hash: str
    spec: dict[str, Any]
    template_hashes: dict[str, str]
    templates: dict[str, str] | None
    path: str | None
    published_at: datetime
    retired: bool


class InboundRow(NamedTuple):
    id: int
    message_id: str
    read_at: datetime
    source: str
    mailbox: str | None
    folder: str | None
    uid: int | None
    sender: str | None
    subject: str | None
    kind: str
    classified_as: str
    reason: str
    bounce_reason: str | None
    retrying: bool
    address: str | None
    lead_id: str | None
    touch_id: int | None
    matched_by: str | None
    action: str | None
    until: datetime | None
    text: str | None
