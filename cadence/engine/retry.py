"""`cadence retry`: a person decides about an `unknown` touch, to resend it or to move the lead on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cadence.names import EnrollmentState, HistoryKind, TouchStatus
from cadence.outcomes.completion import move_on
from cadence.store import enrollments, history, leads, touches

if TYPE_CHECKING:
    from cadence.app import App


class RetryError(ValueError):
    """A touch that cannot be retried, with the reason."""


def retry(app: App, touch_id: int, *, skip: bool = False) -> str:
    """Resend an `unknown` touch (or, with skip, record it as not resent and move the lead on)."""
    now = app.clock.now()
    with app.engine.begin() as conn:
        touch = touches.get(conn, touch_id)
        if touch is None:
            raise RetryError(f"no touch {touch_id}")
        if touch.status != TouchStatus.UNKNOWN:
            raise RetryError(f"touch {touch_id} is {touch.status}; only unknown touches can be retried")
        enrollment = enrollments.get(conn, touch.enrollment_id)
        lead = leads.get(conn, touch.lead_id)
        assert enrollment is not None and lead is not None
        if enrollment.state != EnrollmentState.ACTIVE:
            raise RetryError(f"enrollment {enrollment.id} is {enrollment.state}; nothing to resend into")
        if skip:
            if not touches.skip_unknown(conn, touch_id, now, "not resent (by hand)"):
                raise RetryError(f"touch {touch_id} changed meanwhile; look again")
            spec, _ = app.specs.get(conn, enrollment.version_id)
            planner = app.planner(spec, lead.timezone, lead.country, lead.region)
            move_on(conn, app, enrollment, planner, touch.step_index, now, now)
            detail = {"touch": touch_id, "status": TouchStatus.SKIPPED}
            history.add(conn, lead.id, now, HistoryKind.TOUCH, detail, "cadence retry --skip")
            return f"touch {touch_id} recorded as not resent; {lead.id} moves on"
        if not touches.reschedule_unknown(conn, touch_id):
            raise RetryError(f"touch {touch_id} changed meanwhile; look again")
        enrollments.set_pending(conn, enrollment.id, enrollment.pending_touch_id, touch_id, now)
        history.add(
            conn, lead.id, now, HistoryKind.TOUCH, {"touch": touch_id, "status": TouchStatus.SCHEDULED}, "cadence retry"
        )
    return f"touch {touch_id} will be resent on the next pass (inside the lead's window)"
