"""Rules decided: which configured rule a disposition or an event meets (pure: values in, an action out).

The first rule whose `when` matches wins; None means the built-in behaviour applies
(`cadence.outcomes.events`). The rules themselves are read and checked in `cadence.spec.rules`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from cadence.spec.rules import OneOrMany, Rule, Then, as_set
from cadence.spec.values import parse_duration


@dataclass(frozen=True)
class Situation:
    """What happened, to which kind of enrollment, on which channel."""

    event: str | None = None
    disposition: str | None = None
    kind: str | None = None
    sequence: str | None = None
    channel: str | None = None


def _matches(allowed: OneOrMany | None, value: str | None) -> bool:
    options = as_set(allowed)
    return options is None or (value is not None and value in options)


def decide(rules: list[Rule], situation: Situation) -> tuple[int, Then] | None:
    """(index, actions) of the first rule whose `when` matches, or None for the built-in behaviour."""
    for index, rule in enumerate(rules):
        w = rule.when
        if w.disposition is not None and not _matches(w.disposition, situation.disposition):
            continue
        if w.event is not None and not _matches(w.event, situation.event):
            continue
        if (
            _matches(w.kind, situation.kind)
            and _matches(w.sequence, situation.sequence)
            and _matches(w.channel, situation.channel)
        ):
            return index, rule.then
    return None


def cool_off(then: Then) -> timedelta:
    return parse_duration(then.after) if then.after else timedelta(0)
