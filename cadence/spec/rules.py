"""Rules as a manager writes them in config.yaml: `when` something happens, `then` these actions.

config.yaml lists rules top to bottom; the first whose `when` matches wins:

    rules:
      - when: {disposition: [connected_interested, meeting_booked]}
        then: {finish: qualified}
      - when: {disposition: not_now}
        then: {recycle: nurture-quarterly, after: 30d}
      - when: {event: replied, kind: nurture}
        then: {enroll: outbound-hot, notify_owner: true}

`when` matches on `disposition`, `event`, `kind` (outbound | nurture), `sequence` and
`channel`; each takes one value or a list. `then` is `continue` or a mapping of
actions (see `Then`). When no rule matches, the built-in behaviour applies
(`cadence.outcomes.events`), and safety built-ins (suppression on unsubscribe or STOP, a
bounced address marked invalid) apply whatever the rules say.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cadence.names import RULE_EVENTS, Channel, SequenceKind
from cadence.spec import values

OneOrMany = str | list[str]


def as_set(value: OneOrMany | None) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset([value] if isinstance(value, str) else value)


class When(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    disposition: OneOrMany | None = None
    event: OneOrMany | None = None
    kind: OneOrMany | None = None
    sequence: OneOrMany | None = None
    channel: OneOrMany | None = None

    @field_validator("event")
    @classmethod
    def _events(cls, v: OneOrMany | None) -> OneOrMany | None:
        for name in as_set(v) or ():
            if name not in RULE_EVENTS:
                raise ValueError(f"unknown event {name!r}; events are {', '.join(RULE_EVENTS)}")
        return v

    @field_validator("kind")
    @classmethod
    def _kinds(cls, v: OneOrMany | None) -> OneOrMany | None:
        for name in as_set(v) or ():
            if name not in tuple(SequenceKind):
                raise ValueError(f"kind must be {' or '.join(SequenceKind)}, not {name!r}")
        return v

    @model_validator(mode="after")
    def _something(self) -> When:
        if self.disposition is None and self.event is None:
            raise ValueError("a rule's `when` needs a disposition or an event")
        return self


class Then(BaseModel):
    """The actions of a rule. `continue` lets the sequence go on (with the other actions applied)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)
    continue_: bool = Field(False, alias="continue")
    finish: str | None = Field(None, description="End the enrollment and set the lead's stage")
    drop_channels: list[Channel] = Field(default_factory=list, description="Skip these steps for this lead")
    suppress: list[Channel] = Field(default_factory=list, description="Do-not-contact on these channels, everywhere")
    pause: str | None = Field(None, description="Pause for a duration (14d), or until the event's date when `until`")
    recycle: str | None = Field(None, description="End now and enroll into this sequence after `after`")
    after: str | None = Field(None, description="Cool-off before a recycle")
    max_recycles: int | None = Field(None, ge=0, description="Past this many recycles the lead closes as unresponsive")
    enroll: str | None = Field(None, description="Enroll into this sequence now")
    notify_owner: bool = Field(False, description="Open a task for the lead's owner with the reason")

    @field_validator("pause", "after")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        if v is not None and v != "until":
            values.parse_duration(v)
        return v

    @model_validator(mode="after")
    def _coherent(self) -> Then:
        ends = [k for k in ("finish", "recycle") if getattr(self, k)]
        if len(ends) > 1:
            raise ValueError("a rule cannot both finish and recycle")
        if ends and self.continue_:
            raise ValueError(f"`continue` contradicts `{ends[0]}`")
        if self.after and not self.recycle:
            raise ValueError("`after` only applies to `recycle`")
        if self.max_recycles is not None and not self.recycle:
            raise ValueError("`max_recycles` only applies to `recycle`")
        return self

    @property
    def ends_enrollment(self) -> bool:
        return bool(self.finish or self.recycle or (self.enroll and not self.continue_))


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    when: When
    then: Then

    @field_validator("then", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if v == "continue":
            return {"continue": True}
        if isinstance(v, str):
            raise ValueError(f"then must be `continue` or a mapping of actions, not {v!r}")
        return v
