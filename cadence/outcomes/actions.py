"""Carrying out a rule's `then`: suppress, drop channels, pause, finish, recycle, enroll, notify the owner."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cadence.enrollment.enroll import cancel_pending_recycles, enroll_in
from cadence.names import LIVE_STATES, Channel, HistoryKind, Outcome, SequenceKind, Stage
from cadence.outcomes.return_dates import local_day
from cadence.plan.rules import cool_off
from cadence.spec.rules import Then
from cadence.spec.values import parse_duration
from cadence.store import enrollments, history, leads, recycles, suppressions, tasks
from cadence.store.rows import EnrollmentRow, LeadRow

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cadence.app import App

DEFAULT_OUT_OF_OFFICE = timedelta(days=14)
_SUPPRESSIBLE = (Channel.EMAIL, Channel.SMS, Channel.CALL)


def apply_then(
    conn: Connection,
    app: App,
    lead: LeadRow,
    enrollment: EnrollmentRow | None,
    then: Then,
    now: datetime,
    *,
    cause: str,
    until: datetime | None = None,
    task: str | None = None,
) -> list[str]:
    """Carry out a rule's actions for one lead and one enrollment (None: the lead has none live).

    `task` titles the owner's task when the rule notifies them; by default it names the lead and the cause.
    """
    done: list[str] = []
    live = enrollment is not None and enrollment.state in LIVE_STATES
    for channel in then.suppress:
        address = lead.email if channel == Channel.EMAIL else lead.phone
        if channel in _SUPPRESSIBLE and address:
            suppressions.add(conn, Channel(channel), address, f"rule: {cause}", lead.id, now)
            done.append(f"suppressed {channel} to {address}")
    drop = sorted(set(then.drop_channels) | ({Channel.TASK} if Channel.TASK in then.suppress else set()))
    if drop and enrollment is not None:
        enrollments.drop_channels(conn, enrollment.id, drop)
        done.append(f"dropped {', '.join(drop)} steps")
    if then.pause and live and enrollment is not None:
        if until or then.pause == "until":  # the event's return date; out of office without one: 14 days
            back = until or now + DEFAULT_OUT_OF_OFFICE
        else:
            back = now + parse_duration(then.pause)
        enrollments.pause(conn, enrollment.id, back)
        done.append(f"paused until {local_day(back, lead.timezone or app.settings.timezone)}")
    new_enrollment_id = None
    if then.finish:
        if live and enrollment is not None:
            enrollments.finish(conn, enrollment, then.finish, now, cause)
        leads.set_stage(conn, lead.id, then.finish, now)
        done.append(f"finished as {then.finish}")
        done += cancel_pending_recycles(conn, lead.id, now, f"finished as {then.finish} ({cause})")
    elif then.recycle:
        done += _recycle(conn, app, lead, enrollment if live else None, then, now, cause)
    if then.enroll:
        if live and enrollment is not None and not then.continue_:
            enrollments.finish(conn, enrollment, f"moved to {then.enroll}", now, cause)
        enrolled, refused = enroll_in(conn, app, then.enroll, [lead.id], now, cause)
        if enrolled:
            done.append(f"enrolled into {then.enroll}")
            new_enrollment_id = enrollments.newest_into(conn, lead.id, then.enroll)
        else:
            done.append(f"could not enroll into {then.enroll}: {refused[0]['reason']}")
    if then.notify_owner:
        target = new_enrollment_id or (enrollment.id if enrollment is not None else None)
        if target is not None:
            notify_owner(conn, lead, target, task or f"Follow up with {lead.id}: {cause}", cause, now)
            done.append(f"task opened for {lead.owner}")
    return done


def _recycle(
    conn: Connection, app: App, lead: LeadRow, enrollment: EnrollmentRow | None, then: Then, now: datetime, cause: str
) -> list[str]:
    target = then.recycle
    assert target is not None
    if then.max_recycles is not None:
        count = enrollments.count_into(conn, lead.id, target)
        if count >= then.max_recycles:
            if enrollment is not None:
                enrollments.finish(conn, enrollment, Outcome.UNRESPONSIVE, now, cause)
            leads.set_stage(conn, lead.id, Stage.UNRESPONSIVE, now)
            return [f"closed as unresponsive ({count} recycles into {target} already)"]
    if enrollment is not None:
        enrollments.finish(conn, enrollment, Outcome.RECYCLED, now, cause)
    due = now + cool_off(then)
    recycles.add(conn, lead.id, target, due, cause, enrollment.id if enrollment is not None else None, now)
    loaded = app.catalog.sequences.get(target)  # a missing file is refused, with the reason, when the recycle is due
    nurture = loaded is not None and loaded.spec.kind == SequenceKind.NURTURE
    leads.set_stage(conn, lead.id, Stage.NURTURE if nurture else Stage.RECYCLED, now)
    return [f"recycled into {target} on {local_day(due, lead.timezone or app.settings.timezone)}"]


def notify_owner(conn: Connection, lead: LeadRow, enrollment_id: int, title: str, note: str, now: datetime) -> int:
    """A task for the lead's owner outside the sequence's steps (it never moves a sequence)."""
    touch_id = tasks.open_for_owner(conn, lead.id, lead.owner, enrollment_id, title, note, now)
    history.add(
        conn, lead.id, now, HistoryKind.TASK_OPENED, {"touch": touch_id, "title": title, "owner": lead.owner}, note
    )
    return touch_id


def recycle_many(
    conn: Connection, app: App, recycling: Sequence[tuple[LeadRow, Then, str]], now: datetime
) -> list[list[str]]:
    """`_recycle` of leads whose enrollment has already ended (a completion), for rules with no
    `max_recycles`: their pending recycles and stages in one statement each. Returns what was done, per lead.

    As in `_recycle` with no live enrollment, the recycle names no enrollment it came from.
    """
    pending: list[tuple[str, str, datetime, str | None, int | None]] = []
    stages: list[tuple[str, str]] = []
    done: list[list[str]] = []
    for lead, then, cause in recycling:
        target = then.recycle
        assert target is not None and then.max_recycles is None
        due = now + cool_off(then)
        pending.append((lead.id, target, due, cause, None))
        loaded = app.catalog.sequences.get(target)  # a missing file is refused when due, as in `_recycle`
        nurture = loaded is not None and loaded.spec.kind == SequenceKind.NURTURE
        stages.append((lead.id, Stage.NURTURE if nurture else Stage.RECYCLED))
        done.append([f"recycled into {target} on {local_day(due, lead.timezone or app.settings.timezone)}"])
    recycles.add_many(conn, pending, now)
    leads.set_stages(conn, stages, now)
    return done
