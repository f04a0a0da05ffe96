"""What the workspace's leads pages read: a numbered page of the `leads list` filters, the live enrollments
of that page, and one lead's whole story in a handful of statements.

Read-only. The list is numbered ("showing 51-100 of 761"), so it pages by offset over the same
filters as `cadence leads list` (one `_where`, shared with `cadence.store.lead_lists`), in id
order. A lead's story is read with one statement per table (lead, enrollments, history,
touches, inbound mail), never one per row, so a lead with hundreds of history rows costs the
same five round trips as a new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import Connection, select

from cadence.names import LIVE_STATES
from cadence.store import history, inbound, leads, views
from cadence.store.lead_lists import LeadFilter, _where
from cadence.store.rows import EnrollmentRow, HistoryRow, InboundRow, LeadRow, TouchRow
from cadence.store.tables import EnrollmentT, LeadT
from cadence.store.views import Enrolled

E = EnrollmentT.c
MAIL_SHOWN = 1000  # the inbound messages one lead page reads; far more than any lead ever sends


class Story(NamedTuple):
    """One lead and everything recorded about it, each list oldest first."""

    lead: LeadRow
    enrollments: list[Enrolled]
    history: list[HistoryRow]
    touches: list[TouchRow]
    mail: list[InboundRow]


def numbered(conn: Connection, f: LeadFilter, offset: int, limit: int) -> list[LeadRow]:
    """At most `limit` matching leads in id order, skipping the first `offset`."""
    query = _where(select(*LeadT.c), f).order_by(LeadT.c.id).offset(offset).limit(limit)
    return [LeadRow._make(row) for row in conn.execute(query)]


def live_enrollments(conn: Connection, lead_ids: Sequence[str]) -> list[EnrollmentRow]:
    """The live (active or paused) enrollments of these leads, in enrollment order."""
    if not lead_ids:
        return []
    query = (
        select(*EnrollmentT.c)
        .where(E.lead_id.in_(list(lead_ids)), E.state.in_(list(LIVE_STATES)))
        .order_by(E.enrolled_at, E.id)
    )
    return [EnrollmentRow._make(row) for row in conn.execute(query)]


def story(conn: Connection, lead_id: str) -> Story | None:
    """The lead with its enrollments, history, touches and inbound mail; None when there is no such lead."""
    lead = leads.get(conn, lead_id)
    if lead is None:
        return None
    mail = inbound.of_lead(conn, lead_id, limit=MAIL_SHOWN)
    mail.reverse()  # of_lead gives the newest first
    return Story(
        lead, views.enrollments_of(conn, lead_id), history.of_lead(conn, lead_id), views.touches_of(conn, lead_id), mail
    )


def owner_of(conn: Connection, lead_id: str) -> tuple[bool, str | None]:
    """(whether the lead exists, its owner)."""
    row = conn.execute(select(LeadT.c.owner).where(LeadT.c.id == lead_id)).first()
    return (False, None) if row is None else (True, row[0])
