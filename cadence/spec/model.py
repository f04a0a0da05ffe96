"""The sequence file format: what a sales manager writes in `sequences/*.yaml`.

These models check the shape of one file (keys, types, formats). Checks that need
the whole file or the templates folder (duplicate step ids, `reply_to` targets,
day order, missing templates) live in `cadence.spec.load`, where each problem can
be pinned to its line.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cadence import names
from cadence.names import Channel, Event, SequenceKind
from cadence.spec import values

# The words a manager writes, spelled once in cadence.names.
CHANNELS = names.CHANNELS
EVENTS = names.RULE_EVENTS
DEFAULT_EXIT_ON = names.DEFAULT_EXIT_ON


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Schedule(Strict):
    """Every key optional: what is left out comes from config.yaml's `schedule`."""

    window: str | None = Field(None, description='Lead-local send window, "09:00-17:00", or "always"')
    days: list[str] | None = Field(None, description="Allowed weekdays: mon..sun")
    holidays: str | None = Field(
        None, description="lead (the lead's country calendar), a country code like GB or US-CA, or none"
    )
    spread: str | None = Field(
        None, description="How far past the base time leads are spread, deterministically per lead (e.g. 45m)"
    )

    @field_validator("window")
    @classmethod
    def _window(cls, v: str | None) -> str | None:
        if v is not None:
            values.Window.parse(v)
        return v

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            values.parse_weekdays(v)
        return v

    @field_validator("holidays")
    @classmethod
    def _holidays(cls, v: str | None) -> str | None:
        if v is None or v.lower() in ("lead", "none"):
            return None if v is None else v.lower()
        values.holiday_calendar(v)
        return v.upper()

    @field_validator("spread", mode="before")
    @classmethod
    def _spread_zero(cls, v: object) -> object:
        """YAML reads `spread: 0` (the documented "no spread") as a number."""
        return "0" if v == 0 and not isinstance(v, bool) else v

    @field_validator("spread")
    @classmethod
    def _spread(cls, v: str | None) -> str | None:
        if v is not None and str(v).strip() not in ("0", "none"):
            values.parse_duration(v)
        return v


class Variant(Strict):
    """One arm of an A/B test on a step: what it says differently (its subject, its template)."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Variant id, unique within the step")
    subject: str | None = Field(None, description="Email subject of this variant (defaults to the step's)")
    template: str | None = Field(None, description="Template of this variant (defaults to the step's)")
    title: str | None = Field(None, description="Task title of this variant (defaults to the step's)")
    weight: int = Field(1, ge=1, le=1000, description="Relative share of leads that get this variant")


class Step(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Stable step id, unique within the file")
    day: int = Field(ge=1, le=1000, description="Business day of the sequence (1 = the first allowed day)")
    channel: Channel
    template: str | None = Field(None, description="Path under templates/ (email body, SMS text, call script)")
    subject: str | None = Field(None, description="Email subject (a Jinja2 template)")
    reply_to: str | None = Field(None, description="Id of an earlier email step to thread this email under")
    at: str | None = Field(None, description='Lead-local time of day, "10:30"')
    title: str | None = Field(None, description="Task title (call and task steps)")
    immediate: bool = Field(False, description="Go out on the engine's next pass (speed-to-lead)")
    variants: list[Variant] | None = Field(
        None, min_length=2, description="A/B variants: each lead gets one, deterministically, by weight"
    )

    @field_validator("at")
    @classmethod
    def _at(cls, v: str | None) -> str | None:
        if v is not None:
            values.parse_time_of_day(v)
        return v

    def variant(self, variant_id: str | None) -> Step:
        """This step as variant `variant_id` says it (its subject, template and title over the step's)."""
        if variant_id is None or not self.variants:
            return self
        for v in self.variants:
            if v.id == variant_id:
                changes = {k: getattr(v, k) for k in ("subject", "template", "title") if getattr(v, k) is not None}
                return self.model_copy(update=changes)
        raise KeyError(f"step {self.id!r} has no variant {variant_id!r}")

    @property
    def templates(self) -> list[str]:
        """Every template this step may render (its own and its variants')."""
        names = [self.template] if self.template else []
        names += [v.template for v in self.variants or () if v.template]
        return names


class Sequence(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="Unique across sequences/")
    name: str
    kind: SequenceKind = SequenceKind.OUTBOUND
    description: str | None = None
    schedule: Schedule = Schedule()
    exit_on: list[Event] = Field(default_factory=lambda: list(DEFAULT_EXIT_ON))
    migrate: Literal["steps", "pin"] = Field(
        "steps", description="How enrolled leads follow an applied edit: by step id, or pinned to their version"
    )
    steps: list[Step] = Field(min_length=1)

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def thread_root(self, step_id: str) -> Step:
        """The email that starts the thread `step_id` replies into (following reply_to chains)."""
        step = self.step(step_id)
        seen = {step.id}
        while step.reply_to is not None and step.reply_to not in seen:
            seen.add(step.reply_to)
            step = self.step(step.reply_to)
        return step

    def index_of(self, step_id: str) -> int:
        for i, s in enumerate(self.steps):
            if s.id == step_id:
                return i
        raise KeyError(step_id)
