"""The workspace's leads list: the `cadence leads list` filters, a numbered page at a time, each lead with
its live sequences and the touch it has next.

A rep scans the list to decide whom to look at, so each row says where the lead stands without
opening it: its stage, owner, live sequence and the next touch (step, channel and when it is
due; the page shows that in the lead's own zone). The next touch is read from the enrollment
(`next_step`, `next_due_at`), the same values the engine claims by, so the list never promises
a touch the engine would not make. Pages are numbered (50 a page) because people say "page 3"
and "showing 101-150 of 761"; past the last page the list is simply empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cadence.names import EnrollmentState
from cadence.store import lead_lists, lead_pages
from cadence.store.lead_lists import LeadFilter
from cadence.store.rows import EnrollmentRow, LeadRow

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cadence.app import App

__all__ = ["PER_PAGE", "LeadFilter", "LeadLine", "LeadsPage", "NextTouch", "leads_page"]

PER_PAGE = 50


@dataclass(frozen=True, slots=True)
class NextTouch:
    """What a live enrollment does next. `due` is None while it is paused or a step is in progress."""

    sequence: str
    step: str | None
    channel: str | None
    due: datetime | None
    state: str  # active or paused
    paused_until: datetime | None = None
    in_progress: bool = False  # its step was claimed: a task is open or a message is being sent


@dataclass(frozen=True, slots=True)
class LeadLine:
    lead: LeadRow
    sequences: list[str]  # its live sequences, in enrollment order
    next: NextTouch | None  # the soonest of them; None when it is in no live sequence


@dataclass(frozen=True, slots=True)
class LeadsPage:
    lines: list[LeadLine]
    total: int  # how many leads match, on every page
    page: int  # 1-based
    per_page: int = PER_PAGE

    @property
    def first(self) -> int:
        """The 1-based position of the first lead shown (0 when none is)."""
        return (self.page - 1) * self.per_page + 1 if self.lines else 0

    @property
    def last(self) -> int:
        return self.first + len(self.lines) - 1 if self.lines else 0

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page * self.per_page < self.total

    @property
    def showing(self) -> str:
        """ "showing 51-100 of 761", as the page says it."""
        if not self.lines:
            return f"none shown of {self.total}"
        return f"showing {self.first}-{self.last} of {self.total}"


def _next_of(app: App, conn: Connection, enrollment: EnrollmentRow) -> NextTouch:
    channel = None
    if enrollment.next_step is not None:
        spec, _ = app.specs.get(conn, enrollment.version_id)
        channel = spec.step(enrollment.next_step).channel
    paused = enrollment.state == EnrollmentState.PAUSED
    return NextTouch(
        enrollment.sequence_id,
        enrollment.next_step,
        channel,
        None if paused else enrollment.next_due_at,
        enrollment.state,
        enrollment.paused_until,
        enrollment.pending_touch_id is not None and enrollment.next_due_at is None,
    )


def _soonest(touches: list[NextTouch]) -> NextTouch | None:
    """A due touch before a paused or in-progress one; among due touches the earliest."""
    if not touches:
        return None
    return min(touches, key=lambda t: (t.due is None, t.due.timestamp() if t.due else 0.0))


def leads_page(app: App, where: LeadFilter, page: int = 1, per_page: int = PER_PAGE) -> LeadsPage:
    """Page `page` (1-based, `per_page` a page) of the leads matching `where`, in id order, and how many match."""
    if page < 1 or per_page < 1:
        raise ValueError("the page number and its size start at 1")
    with app.engine.connect() as conn:
        rows = lead_pages.numbered(conn, where, (page - 1) * per_page, per_page)
        live = lead_pages.live_enrollments(conn, [lead.id for lead in rows])
        nexts: dict[str, list[NextTouch]] = {}
        for enrollment in live:
            nexts.setdefault(enrollment.lead_id, []).append(_next_of(app, conn, enrollment))
        alone = page == 1 and len(rows) < per_page  # the whole list is on this page: no count needed
        total = len(rows) if alone else lead_lists.count(conn, where)
    lines = [
        LeadLine(lead, [t.sequence for t in nexts.get(lead.id, [])], _soonest(nexts.get(lead.id, []))) for lead in rows
    ]
    return LeadsPage(lines, total, page, per_page)
