"""What happens to a lead when something happens to it: events, rules and built-ins.

Every event is appended to the lead's history, then handled per enrollment it
concerns (its live ones, or the one that just completed or expired):

1. Safety built-ins apply whatever the rules say, because nobody may be contacted
   against their wishes: `unsubscribed` suppresses the email address everywhere,
   `sms_stop` suppresses SMS to the phone everywhere, `bounced` marks the email
   invalid, `phone_invalid` / `not_mobile` mark the phone unusable for SMS.
2. The first configured rule whose `when` matches decides (see `cadence.plan.rules`).
   If the event is in the sequence's `exit_on`, the enrollment ends anyway unless
   the rule says `continue`.
3. With no matching rule: an `exit_on` event ends the enrollment; `out_of_office`
   pauses it until the return date (14 days if none); anything else lets it go on.

Suppression is by address, so it outlives the lead row: importing the same email
again does not make it contactable.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, func, select, update

from cadence.plan.rules import Situation, cool_off, decide
from cadence.plan.timing import parse_duration
from cadence.spec.rules import Then
from cadence.store.queries import EnrollmentT, LeadT, SuppressionT, TouchT
from cadence.store.tables import History, Recycle

if TYPE_CHECKING:
    from cadence.app import App

HistoryT: Any = History.__table__  # type: ignore[attr-defined]
RecycleT: Any = Recycle.__table__  # type: ignore[attr-defined]
LIVE = ("active", "paused")
DEFAULT_OUT_OF_OFFICE = timedelta(days=14)


# The statements written once per finished touch, built once: constructing and coercing
# them per call (`.values(...)`) cost more than running them.
_ADD_HISTORY = HistoryT.insert()
_ADD_RECYCLE = RecycleT.insert()
_LEAD = select(LeadT).where(LeadT.c.id == bindparam("event_lead"))
_FINISH = (
    update(EnrollmentT)
    .where(EnrollmentT.c.id == bindparam("finished_id"))
    .values(
        state="finished",
        outcome=bindparam("finished_outcome"),
        finished_at=bindparam("finished_at"),
        next_due_at=None,
        pending_touch_id=None,
    )
)
_CANCEL_OPEN = (
    update(TouchT)
    .where(TouchT.c.enrollment_id == bindparam("finished_id"), TouchT.c.status.in_(("scheduled", "task_open")))
    .values(status="cancelled", error=bindparam("cancelled_why"))
)
_SET_STAGE = (
    update(LeadT)
    .where(LeadT.c.id == bindparam("staged_lead"))
    .values(stage=bindparam("staged_stage"), updated_at=bindparam("staged_at"))
)


def add_history(
    conn: Connection, lead_id: str, now: datetime, kind: str, detail: dict[str, Any], cause: str | None = None
) -> None:
    conn.execute(_ADD_HISTORY, {"lead_id": lead_id, "at": now, "kind": kind, "detail": detail, "cause": cause})


def suppress(conn: Connection, channel: str, address: str, reason: str, lead_id: str, now: datetime) -> None:
    exists = conn.execute(
        select(SuppressionT.c.address).where(SuppressionT.c.channel == channel, SuppressionT.c.address == address)
    ).first()
    if not exists:
        conn.execute(
            SuppressionT.insert().values(
                channel=channel, address=address, reason=reason, lead_id=lead_id, created_at=now
            )
        )


def finish_enrollment(
    conn: Connection, enrollment_id: int, lead_id: str, outcome: str, now: datetime, cause: str
) -> None:
    """End an enrollment: nothing more is due, open tasks and pending retries are cancelled."""
    conn.execute(_FINISH, {"finished_id": enrollment_id, "finished_outcome": outcome, "finished_at": now})
    conn.execute(_CANCEL_OPEN, {"finished_id": enrollment_id, "cancelled_why": f"enrollment finished: {outcome}"})
    add_history(conn, lead_id, now, "finished", {"enrollment": enrollment_id, "outcome": outcome}, cause)


def set_stage(conn: Connection, lead_id: str, stage: str, now: datetime) -> None:
    conn.execute(_SET_STAGE, {"staged_lead": lead_id, "staged_stage": stage, "staged_at": now})


def _safety(conn: Connection, lead: Any, event: str, now: datetime) -> list[str]:
    done: list[str] = []
    if event == "unsubscribed" and lead.email:
        suppress(conn, "email", lead.email, "unsubscribed", lead.id, now)
        done.append(f"suppressed email {lead.email}")
    elif event == "sms_stop" and lead.phone:
        suppress(conn, "sms", lead.phone, "sms_stop", lead.id, now)
        done.append(f"suppressed SMS to {lead.phone}")
    elif event == "bounced":
        conn.execute(update(LeadT).where(LeadT.c.id == lead.id).values(email_invalid=True, updated_at=now))
        done.append("marked email invalid")
    elif event in ("phone_invalid", "not_mobile"):
        conn.execute(update(LeadT).where(LeadT.c.id == lead.id).values(phone_invalid=True, updated_at=now))
        done.append("marked phone unusable for SMS")
    return done


def on_event(
    conn: Connection,
    app: App,
    lead_id: str,
    event: str,
    now: datetime,
    *,
    cause: str,
    detail: dict[str, Any] | None = None,
    until: datetime | None = None,
    channel: str | None = None,
    enrollments: Sequence[Any] | None = None,
) -> list[str]:
    """Record `event` for a lead and act on it; returns what was done, in words."""
    info = {k: v for k, v in {**(detail or {}), "until": until.isoformat() if until else None}.items() if v is not None}
    add_history(conn, lead_id, now, "event", {"event": event, **info}, cause)
    lead = conn.execute(_LEAD, {"event_lead": lead_id}).first()
    if lead is None:
        return []
    done = _safety(conn, lead, event, now)
    targets = (
        list(enrollments)
        if enrollments is not None
        else list(
            conn.execute(
                select(EnrollmentT).where(EnrollmentT.c.lead_id == lead_id, EnrollmentT.c.state.in_(LIVE))
            ).mappings()
        )
    )
    for enrollment in targets:
        spec, _ = app.specs.get(conn, enrollment["version_id"])
        situation = Situation(event=event, kind=spec.kind, sequence=spec.id, channel=channel)
        decided = decide(app.settings.rules, situation)
        live = enrollment["state"] in LIVE
        if decided is not None:
            index, then = decided
            if live and event in spec.exit_on and not then.continue_ and not (then.finish or then.recycle):
                # The outcome says why the enrollment ended (the reply), not what came next.
                finish_enrollment(conn, enrollment["id"], lead_id, event, now, f"{event} is in exit_on")
                done.append(f"ended {spec.id} ({event})")
                enrollment = {**enrollment, "state": "finished"}
            done += apply_then(conn, app, lead, enrollment, then, now, cause=f"rule {index + 1}: {event}", until=until)
        elif live and event in spec.exit_on:
            finish_enrollment(conn, enrollment["id"], lead_id, event, now, cause)
            done.append(f"ended {spec.id} ({event})")
            # The lead's stage says why it left its sequence (a rep's list of "replied" leads),
            # unless a stage a person or a rule decided (qualified, ...) is already there.
            conn.execute(
                update(LeadT)
                .where(LeadT.c.id == lead_id, LeadT.c.stage.in_(("new", "working", "nurture", "recycled")))
                .values(stage=event, updated_at=now)
            )
        elif live and event == "out_of_office":
            back = until or now + DEFAULT_OUT_OF_OFFICE
            pause_enrollment(conn, enrollment["id"], back)
            done.append(f"paused {spec.id} until {back.date().isoformat()}")
    if done:
        add_history(conn, lead_id, now, "action", {"event": event, "actions": done}, cause)
    return done


def pause_enrollment(conn: Connection, enrollment_id: int, until: datetime | None) -> None:
    conn.execute(
        update(EnrollmentT)
        .where(EnrollmentT.c.id == enrollment_id, EnrollmentT.c.state.in_(LIVE))
        .values(state="paused", paused_until=until, next_due_at=None)
    )


def apply_then(
    conn: Connection,
    app: App,
    lead: Any,
    enrollment: Any,
    then: Then,
    now: datetime,
    *,
    cause: str,
    until: datetime | None = None,
) -> list[str]:
    """Carry out a rule's actions for one lead and one enrollment."""
    done: list[str] = []
    lead_id = lead.id
    live = enrollment is not None and enrollment["state"] in LIVE
    for channel in then.suppress:
        address = lead.email if channel == "email" else lead.phone
        if channel in ("email", "sms", "call") and address:
            suppress(conn, channel, address, f"rule: {cause}", lead_id, now)
            done.append(f"suppressed {channel} to {address}")
    drop = sorted(set(then.drop_channels) | ({"task"} if "task" in then.suppress else set()))
    if drop and enrollment is not None:
        current = set(enrollment["dropped_channels"] or [])
        conn.execute(
            update(EnrollmentT)
            .where(EnrollmentT.c.id == enrollment["id"])
            .values(dropped_channels=sorted(current | set(drop)))
        )
        done.append(f"dropped {', '.join(drop)} steps")
    if then.pause and live:
        if until or then.pause == "until":  # the event's return date; out of office without one: 14 days
            back = until or now + DEFAULT_OUT_OF_OFFICE
        else:
            back = now + parse_duration(then.pause)
        pause_enrollment(conn, enrollment["id"], back)
        done.append(f"paused until {back.date().isoformat()}")
    new_enrollment_id = None
    if then.finish:
        if live:
            finish_enrollment(conn, enrollment["id"], lead_id, then.finish, now, cause)
        set_stage(conn, lead_id, then.finish, now)
        done.append(f"finished as {then.finish}")
    elif then.recycle:
        done += _recycle(conn, app, lead_id, enrollment if live else None, then, now, cause)
    if then.enroll:
        if live and not then.continue_:
            finish_enrollment(conn, enrollment["id"], lead_id, f"moved to {then.enroll}", now, cause)
        from cadence.enrollment.enroll import enroll_in

        enrolled, refused = enroll_in(conn, app, then.enroll, [lead_id], now, cause)
        if enrolled:
            done.append(f"enrolled into {then.enroll}")
            new_enrollment_id = conn.execute(
                select(func.max(EnrollmentT.c.id)).where(
                    EnrollmentT.c.lead_id == lead_id, EnrollmentT.c.sequence_id == then.enroll
                )
            ).scalar()
        else:
            done.append(f"could not enroll into {then.enroll}: {refused[0]['reason']}")
    if then.notify_owner:
        target = new_enrollment_id or (enrollment["id"] if enrollment is not None else None)
        if target is not None:
            open_owner_task(conn, lead, target, f"Follow up with {lead_id}: {cause}", cause, now)
            done.append(f"task opened for {lead.owner}")
    return done


def _recycle(
    conn: Connection, app: App, lead_id: str, enrollment: Any, then: Then, now: datetime, cause: str
) -> list[str]:
    target = then.recycle
    assert target is not None
    if then.max_recycles is not None:
        count = conn.execute(
            select(func.count())
            .select_from(EnrollmentT)
            .where(EnrollmentT.c.lead_id == lead_id, EnrollmentT.c.sequence_id == target)
        ).scalar_one()
        if count >= then.max_recycles:
            if enrollment is not None:
                finish_enrollment(conn, enrollment["id"], lead_id, "unresponsive", now, cause)
            set_stage(conn, lead_id, "unresponsive", now)
            return [f"closed as unresponsive ({count} recycles into {target} already)"]
    if enrollment is not None:
        finish_enrollment(conn, enrollment["id"], lead_id, "recycled", now, cause)
    due = now + cool_off(then)
    conn.execute(
        _ADD_RECYCLE,
        {
            "lead_id": lead_id,
            "sequence_id": target,
            "due_at": due,
            "cause": cause,
            "from_enrollment_id": enrollment["id"] if enrollment is not None else None,
            "created_at": now,
        },
    )
    kind = app.catalog.get(target).spec.kind
    set_stage(conn, lead_id, "nurture" if kind == "nurture" else "recycled", now)
    return [f"recycled into {target} on {due.date().isoformat()}"]


def open_owner_task(conn: Connection, lead: Any, enrollment_id: int, title: str, note: str, now: datetime) -> int:
    """A task for the lead's owner outside the sequence's steps (it never moves a sequence)."""
    touch_id: int = conn.execute(
        TouchT.insert()
        .values(
            enrollment_id=enrollment_id, lead_id=lead.id, sequence_id="-", step_id="notify-owner", step_index=-1,
            channel="task", status="task_open", owner=lead.owner, due_at=now, sent_at=now, attempts=0,
            subject=title, body=note,
        )
        .returning(TouchT.c.id)
    ).scalar_one()  # fmt: skip
    add_history(conn, lead.id, now, "task_opened", {"touch": touch_id, "title": title, "owner": lead.owner}, note)
    return touch_id


OUTSIDE_EVENTS = ("replied", "bounced", "unsubscribed", "sms_stop", "sms_reply", "meeting_booked", "out_of_office")


def record_event(
    app: App, lead_id: str, event: str, *, until: datetime | None = None, note: str | None = None, source: str = "cli"
) -> list[str]:
    """An event reported from outside (the inbox, a calendar, a webhook), in its own transaction."""
    if event not in OUTSIDE_EVENTS:
        raise ValueError(f"unknown event {event!r}; use one of {', '.join(OUTSIDE_EVENTS)}")
    now = app.clock.now()
    with app.engine.begin() as conn:
        if conn.execute(select(LeadT.c.id).where(LeadT.c.id == lead_id)).first() is None:
            raise KeyError(f"no lead with id {lead_id!r}")
        detail = {"note": note, "source": source}
        return on_event(conn, app, lead_id, event, now, cause=f"{event} ({source})", detail=detail, until=until)
