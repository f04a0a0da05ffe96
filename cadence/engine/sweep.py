"""Housekeeping that keeps every lead moving: lost claims, expired tasks, retries by hand.

- A `sending` touch whose lease ran out belonged to a worker that died mid-send.
  We cannot know whether the prospect got it, so it becomes `unknown` and waits
  for a person (`cadence retry`), unless `engine.resend_unknown` says to resend.
- An open task nobody worked for `tasks.expire_after_days` allowed days expires,
  so no lead stalls for ever; the sequence moves on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from cadence.app import App
from cadence.enrollment.progression import advance
from cadence.outcomes.events import RecycleT, add_history, on_event
from cadence.store.queries import EnrollmentT, LeadT, TouchT


@dataclass
class SweepReport:
    unknown: int = 0
    resent: int = 0
    expired: int = 0
    resumed: int = 0
    recycled: int = 0

    def as_json(self) -> dict[str, int]:
        return {
            "unknown": self.unknown, "resent": self.resent, "expired": self.expired,
            "resumed": self.resumed, "recycled": self.recycled,
        }  # fmt: skip


class RetryError(ValueError):
    """A touch that cannot be retried, with the reason."""


def sweep(app: App, now: datetime) -> SweepReport:
    report = SweepReport()
    with app.engine.begin() as conn:
        _expire_leases(app, conn, now, report)
        _expire_tasks(app, conn, now, report)
        _end_pauses(app, conn, now, report)
        _recycles_due(app, conn, now, report)
    return report


def _end_pauses(app: App, conn: Connection, now: datetime, report: SweepReport) -> None:
    from cadence.outcomes.pauses import resume_enrollment

    due = conn.execute(
        select(EnrollmentT).where(EnrollmentT.c.state == "paused", EnrollmentT.c.paused_until <= now)
    ).mappings()
    for enrollment in list(due):
        resume_enrollment(conn, app, enrollment, now, "pause ended")
        report.resumed += 1


def _recycles_due(app: App, conn: Connection, now: datetime, report: SweepReport) -> None:
    """Leads whose cool-off is over are enrolled into their recycle sequence (stored, so restarts keep them)."""
    from cadence.enrollment.enroll import enroll_in

    for recycle in list(conn.execute(select(RecycleT).where(RecycleT.c.due_at <= now)).mappings()):
        enrolled, refused = enroll_in(
            conn, app, recycle["sequence_id"], [recycle["lead_id"]], now, f"recycle: {recycle['cause']}"
        )
        conn.execute(RecycleT.delete().where(RecycleT.c.id == recycle["id"]))
        if enrolled:
            report.recycled += 1
        else:
            add_history(
                conn, recycle["lead_id"], now, "action",
                {"action": "recycle refused", "sequence": recycle["sequence_id"], "reason": refused[0]["reason"]},
                "recycle",
            )  # fmt: skip


def _expire_leases(app: App, conn: Connection, now: datetime, report: SweepReport) -> None:
    lost = conn.execute(
        select(TouchT.c.id, TouchT.c.lead_id, TouchT.c.enrollment_id, TouchT.c.step_id, TouchT.c.claimed_by).where(
            TouchT.c.status == "sending", TouchT.c.lease_until < now
        )
    ).all()
    for touch_id, lead_id, enrollment_id, step_id, worker in lost:
        if app.settings.engine.resend_unknown:
            conn.execute(
                update(TouchT)
                .where(TouchT.c.id == touch_id)
                .values(status="scheduled", claimed_by=None, lease_until=None, error=f"worker {worker} lost; resending")
            )
            conn.execute(update(EnrollmentT).where(EnrollmentT.c.id == enrollment_id).values(next_due_at=now))
            report.resent += 1
        else:
            conn.execute(
                update(TouchT)
                .where(TouchT.c.id == touch_id)
                .values(
                    status="unknown",
                    claimed_by=None,
                    lease_until=None,
                    error=f"worker {worker} stopped before recording the result; "
                    f"check, then `cadence retry {touch_id}`",
                )
            )
            report.unknown += 1
        add_history(conn, lead_id, now, "touch", {"touch": touch_id, "step": step_id, "status": "unknown"})


def _expire_tasks(app: App, conn: Connection, now: datetime, report: SweepReport) -> None:
    days = app.settings.tasks.expire_after_days
    open_tasks = conn.execute(
        select(TouchT.c.id, TouchT.c.enrollment_id, TouchT.c.due_at).where(
            TouchT.c.status == "task_open", TouchT.c.due_at < now - timedelta(days=1)
        )
    ).all()
    for touch_id, enrollment_id, opened_at in open_tasks:
        enrollment, lead = _enrollment_and_lead(conn, enrollment_id)
        spec, _ = app.specs.get(conn, enrollment["version_id"])
        planner = app.planner(spec, lead["timezone"], lead["country"])
        cal = planner.calendar
        last_day = cal.add_allowed_days(cal.local_date(opened_at), days)
        deadline = cal.bounds(last_day)[1]
        if now < deadline:
            continue
        conn.execute(
            update(TouchT)
            .where(TouchT.c.id == touch_id)
            .values(status="expired", done_at=now, error=f"not worked within {days} allowed days")
        )
        report.expired += 1
        on_event(
            conn, app, lead["id"], "expired", now, cause="task expired", detail={"touch": touch_id},
            channel="task", enrollments=[enrollment] if enrollment["state"] in ("active", "paused") else [],
        )  # fmt: skip
        enrollment = conn.execute(select(EnrollmentT).where(EnrollmentT.c.id == enrollment_id)).mappings().one()
        if enrollment["state"] in ("active", "paused") and enrollment["pending_touch_id"] == touch_id:
            index = enrollment["next_index"]
            advance(conn, app, enrollment, planner, index, now, now)
            if enrollment["state"] == "paused":  # the step is over; nothing is due until the pause ends
                conn.execute(update(EnrollmentT).where(EnrollmentT.c.id == enrollment_id).values(next_due_at=None))


def _enrollment_and_lead(conn: Connection, enrollment_id: int) -> tuple[Any, Any]:
    enrollment = conn.execute(select(EnrollmentT).where(EnrollmentT.c.id == enrollment_id)).mappings().one()
    lead = conn.execute(select(LeadT).where(LeadT.c.id == enrollment["lead_id"])).mappings().one()
    return enrollment, lead


def retry(app: App, touch_id: int, *, skip: bool = False) -> str:
    """Resend an `unknown` touch (or, with skip, record it as not resent and move the lead on)."""
    now = app.clock.now()
    with app.engine.begin() as conn:
        touch = conn.execute(select(TouchT).where(TouchT.c.id == touch_id)).mappings().first()
        if touch is None:
            raise RetryError(f"no touch {touch_id}")
        if touch["status"] != "unknown":
            raise RetryError(f"touch {touch_id} is {touch['status']}; only unknown touches can be retried")
        enrollment, lead = _enrollment_and_lead(conn, touch["enrollment_id"])
        if enrollment["state"] != "active":
            raise RetryError(f"enrollment {enrollment['id']} is {enrollment['state']}; nothing to resend into")
        if skip:
            conn.execute(
                update(TouchT)
                .where(TouchT.c.id == touch_id)
                .values(status="skipped", done_at=now, error="not resent (by hand)")
            )
            spec, _ = app.specs.get(conn, enrollment["version_id"])
            planner = app.planner(spec, lead["timezone"], lead["country"])
            advance(conn, app, enrollment, planner, touch["step_index"], now, now)
            add_history(
                conn, lead["id"], now, "touch", {"touch": touch_id, "status": "skipped"}, "cadence retry --skip"
            )
            return f"touch {touch_id} recorded as not resent; {lead['id']} moves on"
        conn.execute(update(TouchT).where(TouchT.c.id == touch_id).values(status="scheduled", error=None))
        conn.execute(
            update(EnrollmentT)
            .where(EnrollmentT.c.id == enrollment["id"])
            .values(next_due_at=now, pending_touch_id=touch_id)
        )
        add_history(conn, lead["id"], now, "touch", {"touch": touch_id, "status": "scheduled"}, "cadence retry")
    return f"touch {touch_id} will be resent on the next pass (inside the lead's window)"
