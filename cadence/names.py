"""The words cadence stores and matches on, each spelled once: channels, statuses, events, stages, kinds.

Every value here is a `StrEnum`, so it is the very string the database holds and
config.yaml or a sequence file says (`Channel.EMAIL == "email"`), while code that
names one cannot misspell it. Nothing else in cadence writes these strings.
"""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    """How a step reaches the lead: a message the engine sends, or a task a person does."""

    EMAIL = "email"
    SMS = "sms"
    CALL = "call"
    TASK = "task"


CHANNELS: tuple[Channel, ...] = tuple(Channel)
MESSAGE_CHANNELS: tuple[Channel, ...] = (Channel.EMAIL, Channel.SMS)
TASK_CHANNELS: tuple[Channel, ...] = (Channel.CALL, Channel.TASK)


class SequenceKind(StrEnum):
    OUTBOUND = "outbound"
    NURTURE = "nurture"


class TouchStatus(StrEnum):
    """Where one touch stands. `sending` is a claim in flight; `unknown` may or may not have reached the lead."""

    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    TASK_OPEN = "task_open"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    EXPIRED = "expired"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"


TOUCH_STATUSES: tuple[TouchStatus, ...] = tuple(TouchStatus)
# Touches that reached the lead, are reaching it, or may have: they count towards every cap.
COUNTED_STATUSES: tuple[TouchStatus, ...] = (
    TouchStatus.SENDING,
    TouchStatus.SENT,
    TouchStatus.TASK_OPEN,
    TouchStatus.DONE,
    TouchStatus.UNKNOWN,
)


class EnrollmentState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    FINISHED = "finished"


LIVE_STATES: tuple[EnrollmentState, ...] = (EnrollmentState.ACTIVE, EnrollmentState.PAUSED)


class Event(StrEnum):
    """Something that happened to a lead, as rules (`when: {event: ...}`) and `exit_on` name it."""

    REPLIED = "replied"
    BOUNCED = "bounced"
    UNSUBSCRIBED = "unsubscribed"
    SMS_STOP = "sms_stop"
    SMS_REPLY = "sms_reply"
    MEETING_BOOKED = "meeting_booked"
    OUT_OF_OFFICE = "out_of_office"
    COMPLETED = "completed"
    EXPIRED = "expired"


RULE_EVENTS: tuple[Event, ...] = tuple(Event)


class CarrierEvent(StrEnum):
    """Events a channel or a carrier reports; the safety built-ins act on them, no rule names them."""

    PHONE_INVALID = "phone_invalid"
    NOT_MOBILE = "not_mobile"
    SMS_START = "sms_start"


# What `cadence event` and POST /events may report from outside.
OUTSIDE_EVENTS: tuple[Event, ...] = (
    Event.REPLIED,
    Event.BOUNCED,
    Event.UNSUBSCRIBED,
    Event.SMS_STOP,
    Event.SMS_REPLY,
    Event.MEETING_BOOKED,
    Event.OUT_OF_OFFICE,
)
DEFAULT_EXIT_ON: tuple[Event, ...] = (Event.REPLIED, Event.MEETING_BOOKED, Event.BOUNCED, Event.UNSUBSCRIBED)


class Stage(StrEnum):
    """A lead's place in the funnel. Rules may set others (`finish: STAGE`), and an exit event becomes one."""

    NEW = "new"
    WORKING = "working"
    NURTURE = "nurture"
    RECYCLED = "recycled"
    QUALIFIED = "qualified"
    DISQUALIFIED = "disqualified"
    UNRESPONSIVE = "unresponsive"
    UNSUBSCRIBED = "unsubscribed"
    DO_NOT_CONTACT = "do_not_contact"


# Stages enrolling (or leaving on an exit event) may move a lead out of; a stage a person or
# a rule decided (qualified, ...) stays.
MOVABLE_STAGES: tuple[Stage, ...] = (Stage.NEW, Stage.WORKING, Stage.NURTURE, Stage.RECYCLED)
CLOSED_STAGES: tuple[Stage, ...] = (Stage.UNSUBSCRIBED, Stage.DO_NOT_CONTACT)


class Outcome(StrEnum):
    """Why an enrollment finished, when the engine decided it (a rule's `finish: STAGE` or an event is also one)."""

    COMPLETED = "completed"
    RECYCLED = "recycled"
    UNRESPONSIVE = "unresponsive"


class HistoryKind(StrEnum):
    """The kinds of rows in a lead's story (`cadence history`)."""

    CREATED = "created"
    UPDATED = "updated"
    OWNER_ASSIGNED = "owner_assigned"
    ENROLLED = "enrolled"
    TOUCH = "touch"
    TASK_OPENED = "task_opened"
    DISPOSITION = "disposition"
    EVENT = "event"
    ACTION = "action"
    FINISHED = "finished"
    MIGRATED = "migrated"
    DELIVERY = "delivery"
    SMS_HELP = "sms_help"
    SENDER_FILTERED = "sender_filtered"
    INBOUND_MAIL = "inbound_mail"  # a message read from the inbox that is not an event (auto-reply, soft bounce)


class Delivery(StrEnum):
    """How far a sent SMS got, as the carrier reports it (Twilio's MessageStatus)."""

    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELED = "canceled"


class InboundKind(StrEnum):
    """What an inbound email is, as `cadence inbox list` and `--json` name it.

    The classifier gives the first six; `unmatched` (no lead could be found) and `duplicate`
    (the same message was read before) are what processing it came to.
    """

    BOUNCE = "bounce"  # a hard bounce: the address itself cannot receive mail
    SOFT_BOUNCE = "soft_bounce"  # any other delivery failure: full, delayed, blocked, policy, ...
    OUT_OF_OFFICE = "out_of_office"
    AUTO_REPLY = "auto_reply"  # automatic, but not an absence: ticket receipts, delivery reports
    UNSUBSCRIBE_REQUEST = "unsubscribe_request"
    REPLY = "reply"
    UNMATCHED = "unmatched"
    DUPLICATE = "duplicate"
