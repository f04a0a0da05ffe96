"""What happens to a lead when something happens to it: events, the safety built-ins, rules, exit_on.

Every event is appended to the lead's history, then handled per enrollment it
concerns (its live ones, or the one that just completed or expired):

1. Safety built-ins apply whatever the rules say, because nobody may be contacted
   against their wishes: `unsubscribed` suppresses the email address everywhere,
   `sms_stop` suppresses SMS to the phone everywhere, `bounced` marks the email
   invalid, `phone_invalid` / `not_mobile` mark the phone unusable for SMS.
2. The first configured rule whose `when` matches decides (`cadence.plan.rules`),
   and `cadence.outcomes.actions` carries it out. If the event is in the sequence's
   `exit_on`, the enrollment ends anyway unless the rule says `continue`.
3. With no matching rule: an `exit_on` event ends the enrollment; `out_of_office`
   pauses it until the return date (14 days if none); anything else lets it go on.

Suppression is by address, so it outlives the lead row: importing the same email
again does not make it contactable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cadence.enrollment.enroll import cancel_pending_recycles
from cadence.enrollment.inbound import find_lead_in
from cadence.names import (
    LIVE_STATES,
    MOVABLE_STAGES,
    OUTSIDE_EVENTS,
    CarrierEvent,
    Channel,
    EnrollmentState,
    Event,
    HistoryKind,
    Outcome,
)
from cadence.outcomes.actions import DEFAULT_OUT_OF_OFFICE, apply_then, recycle_many
from cadence.outcomes.return_dates import local_day, read_return_date
from cadence.plan.rules import Situation, decide
from cadence.store import enrollments as enrollment_rows
from cadence.store import history, leads, suppressions
from cadence.store.rows import EnrollmentRow, LeadRow

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cadence.app import App
    from cadence.spec.rules import Then

__all__ = [
    "DEFAULT_OUT_OF_OFFICE", "OUTSIDE_EVENTS", "on_completed_many", "on_event", "record_event", "record_event_by_ref",
    "tell_completed",
]  # fmt: skip


def _safety(conn: Connection, lead: LeadRow, event: str, now: datetime) -> list[str]:
    done: list[str] = []
    if event == Event.UNSUBSCRIBED:
        if lead.email:
            suppressions.add(conn, Channel.EMAIL, lead.email, Event.UNSUBSCRIBED, lead.id, now)
            done.append(f"suppressed email {lead.email}")
        done += cancel_pending_recycles(conn, lead.id, now, Event.UNSUBSCRIBED)
    elif event == Event.SMS_STOP and lead.phone:
        suppressions.add(conn, Channel.SMS, lead.phone, Event.SMS_STOP, lead.id, now)
        done.append(f"suppressed SMS to {lead.phone}")
    elif event == Event.BOUNCED:
        leads.mark_email_invalid(conn, lead.id, now)
        done.append("marked email invalid")
    elif event in (CarrierEvent.PHONE_INVALID, CarrierEvent.NOT_MOBILE):
        leads.mark_phone_invalid(conn, lead.id, now)
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
    enrollments: Sequence[EnrollmentRow] | None = None,
    task: str | None = None,
) -> list[str]:
    """Record `event` for a lead and act on it; returns what was done, in words.

    `enrollments` names the enrollments concerned (one that just completed, say);
    by default they are the lead's live ones. `task` is the title of the owner's task
    when a rule notifies them ("Reply from Ann Lee (Acme): ..."), instead of the generic one.
    """
    info = {k: v for k, v in {**(detail or {}), "until": until.isoformat() if until else None}.items() if v is not None}
    history.add(conn, lead_id, now, HistoryKind.EVENT, {"event": event, **info}, cause)
    lead = leads.get(conn, lead_id)
    if lead is None:
        return []
    done = _safety(conn, lead, event, now)
    targets = list(enrollments) if enrollments is not None else enrollment_rows.live_of_lead(conn, lead_id)
    if enrollments is None and not targets:
        # A lead in no live sequence (finished, or waiting out a recycle) still answers: the rules
        # decide what that means in the light of the sequence it was last in (notify its owner, ...).
        last = enrollment_rows.latest_of_lead(conn, lead_id)
        targets = [last] if last is not None else []
    for enrollment in targets:
        done += _for_enrollment(conn, app, lead, enrollment, event, now, cause, until, channel, task)
    if done:
        history.add(conn, lead_id, now, HistoryKind.ACTION, {"event": event, "actions": done}, cause)
    return done


def on_completed_many(conn: Connection, app: App, finished: Sequence[EnrollmentRow], now: datetime) -> None:
    """`on_event(completed)` for enrollments that completed together (a pass's last steps): the same
    rows and actions, in a few statements rather than several a lead.

    The event rows go out in one statement. A rule that only recycles (the usual end of an
    outbound sequence) is carried out for all its leads at once (`recycle_many`); any other
    rule, and a lead with two enrollments here, goes lead by lead through `on_event`.
    """
    per_lead = Counter(e.lead_id for e in finished)
    alone = [e for e in finished if per_lead[e.lead_id] == 1]
    for enrollment in finished:
        if per_lead[enrollment.lead_id] > 1:
            tell_completed(conn, app, enrollment, now)
    rows = [(e.lead_id, {"event": Event.COMPLETED, "sequence": e.sequence_id}, _completed(e)) for e in alone]
    history.add_many(conn, now, HistoryKind.EVENT, rows)
    decided: list[tuple[EnrollmentRow, int, Then]] = []
    for enrollment in alone:
        spec, _ = app.specs.get(conn, enrollment.version_id)
        decision = decide(app.settings.rules, Situation(event=Event.COMPLETED, kind=spec.kind, sequence=spec.id))
        if decision is not None:
            decided.append((enrollment, *decision))
    if not decided:
        return  # a finished enrollment with no rule: nothing more to do (as in `_for_enrollment`)
    lead_rows = leads.by_ids(conn, [e.lead_id for e, _, _ in decided])
    recycling: list[tuple[LeadRow, Then, str]] = []
    actions: list[tuple[str, dict[str, Any], str | None]] = []
    for enrollment, index, then in decided:
        lead = lead_rows.get(enrollment.lead_id)
        if lead is None:
            continue
        if _only_recycles(then):
            recycling.append((lead, then, _completed(enrollment)))
            continue
        done = apply_then(conn, app, lead, enrollment, then, now, cause=f"rule {index + 1}: {Event.COMPLETED}")
        if done:
            actions.append((lead.id, {"event": Event.COMPLETED, "actions": done}, _completed(enrollment)))
    for (lead, _, cause), done in zip(recycling, recycle_many(conn, app, recycling, now), strict=True):
        actions.append((lead.id, {"event": Event.COMPLETED, "actions": done}, cause))
    history.add_many(conn, now, HistoryKind.ACTION, actions)


def _completed(enrollment: EnrollmentRow) -> str:
    return f"{enrollment.sequence_id} completed"


def tell_completed(conn: Connection, app: App, enrollment: EnrollmentRow, now: datetime) -> None:
    """The `completed` event of an enrollment that ran out of steps, for the rules to act on."""
    finished = enrollment._replace(state=EnrollmentState.FINISHED, outcome=Outcome.COMPLETED)
    detail = {"sequence": enrollment.sequence_id}
    on_event(
        conn, app, enrollment.lead_id, Event.COMPLETED, now, cause=_completed(enrollment), detail=detail,
        enrollments=[finished],
    )  # fmt: skip


def _only_recycles(then: Then) -> bool:
    """A rule whose sole action is a recycle with no cap, which `recycle_many` carries out for many leads at once."""
    ends = (then.continue_, then.finish, then.pause, then.enroll, then.notify_owner)
    return (
        then.recycle is not None
        and then.max_recycles is None
        and not any(ends)
        and not (then.suppress or then.drop_channels)
    )


def _for_enrollment(
    conn: Connection,
    app: App,
    lead: LeadRow,
    enrollment: EnrollmentRow,
    event: str,
    now: datetime,
    cause: str,
    until: datetime | None,
    channel: str | None,
    task: str | None = None,
) -> list[str]:
    spec, _ = app.specs.get(conn, enrollment.version_id)
    decided = decide(app.settings.rules, Situation(event=event, kind=spec.kind, sequence=spec.id, channel=channel))
    live = enrollment.state in LIVE_STATES
    done: list[str] = []
    if decided is not None:
        index, then = decided
        if live and event in spec.exit_on and not then.continue_ and not (then.finish or then.recycle):
            # The outcome says why the enrollment ended (the reply), not what came next; a rule that
            # enrolls elsewhere sets the stage itself.
            done += _leave(conn, lead, enrollment, event, now, f"{event} is in exit_on", stage=not then.enroll)
            enrollment = enrollment._replace(state=EnrollmentState.FINISHED)
        done += apply_then(
            conn, app, lead, enrollment, then, now, cause=f"rule {index + 1}: {event}", until=until, task=task
        )
    elif live and event in spec.exit_on:
        done += _leave(conn, lead, enrollment, event, now, cause, stage=True)
    elif live and event == Event.OUT_OF_OFFICE:
        back = until or now + DEFAULT_OUT_OF_OFFICE
        enrollment_rows.pause(conn, enrollment.id, back)
        done.append(f"paused {spec.id} until {local_day(back, lead.timezone or app.settings.timezone)}")
    return done


def _leave(
    conn: Connection, lead: LeadRow, enrollment: EnrollmentRow, event: str, now: datetime, cause: str, *, stage: bool
) -> list[str]:
    """End an enrollment on an `exit_on` event, the event as its outcome.

    With `stage`, the lead's stage says why it left (a rep's list of "replied" leads), unless a
    stage a person or a rule decided (qualified, ...) is already there.
    """
    if not enrollment_rows.finish(conn, enrollment, event, now, cause):
        return []
    if stage:
        leads.set_stage(conn, lead.id, event, now, only_from=MOVABLE_STAGES)
    return [f"ended {enrollment.sequence_id} ({event})"]


def record_event(
    app: App, lead_id: str, event: str, *, until: datetime | None = None, note: str | None = None, source: str = "cli"
) -> list[str]:
    """An event reported from outside (the inbox, a calendar, a webhook), in its own transaction."""
    if event not in OUTSIDE_EVENTS:
        raise ValueError(f"unknown event {event!r}; use one of {', '.join(OUTSIDE_EVENTS)}")
    now = app.clock.now()
    with app.engine.begin() as conn:
        if not leads.exists(conn, lead_id):
            raise KeyError(f"no lead with id {lead_id!r}")
        detail = {"note": note, "source": source}
        return on_event(conn, app, lead_id, event, now, cause=f"{event} ({source})", detail=detail, until=until)


def record_event_by_ref(
    app: App, ref: str, event: str, *, until: str | None, note: str | None, source: str
) -> tuple[str, list[str]]:
    """`record_event` for a lead named by id or email, with its return date as written ("2026-12-09"):
    found, read and recorded in one transaction (POST /events). Returns the lead's id and what was done.

    KeyError: no such lead. ValueError: an unknown event, or an `until` that is no date or time.
    """
    if event not in OUTSIDE_EVENTS:
        raise ValueError(f"unknown event {event!r}; use one of {', '.join(OUTSIDE_EVENTS)}")
    now = app.clock.now()
    with app.engine.begin() as conn:
        lead_id = find_lead_in(conn, ref)
        if lead_id is None:
            raise KeyError(f"no lead with id or email {ref!r}")
        try:
            when = read_return_date(until, lambda: leads.timezone_of(conn, lead_id) or app.settings.timezone)
        except ValueError as exc:
            raise ValueError(f"until: {exc}") from exc
        detail = {"note": note, "source": source}
        done = on_event(conn, app, lead_id, event, now, cause=f"{event} ({source})", detail=detail, until=when)
        return lead_id, done
