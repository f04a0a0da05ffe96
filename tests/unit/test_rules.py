"""The rules table: first match wins, `when` filters, `then` shorthand and coherence (pure)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cadence.plan.rules import Situation, decide
from cadence.spec.rules import Rule

ISSUE_RULES = [
    {"when": {"disposition": ["connected_interested", "meeting_booked"]}, "then": {"finish": "qualified"}},
    {"when": {"disposition": "not_now"}, "then": {"recycle": "nurture-quarterly", "after": "30d"}},
    {"when": {"disposition": ["left_voicemail", "no_answer"]}, "then": "continue"},
    {"when": {"disposition": "wrong_number"}, "then": {"continue": True, "drop_channels": ["call", "sms"]}},
    {"when": {"disposition": "not_interested"}, "then": {"finish": "disqualified"}},
    {"when": {"disposition": "do_not_call"}, "then": {"continue": True, "suppress": ["call", "sms"]}},
    {"when": {"event": "replied", "kind": "nurture"}, "then": {"enroll": "outbound-hot", "notify_owner": True}},
    {"when": {"event": "completed", "kind": "outbound"}, "then": {"recycle": "nurture-monthly", "after": "14d"}},
    {
        "when": {"event": "completed", "kind": "nurture"},
        "then": {"recycle": "outbound-reengage", "after": "90d", "max_recycles": 2},
    },
]
RULES = [Rule.model_validate(r) for r in ISSUE_RULES]


@pytest.mark.parametrize(
    ("situation", "rule_number"),
    [
        (Situation(disposition="meeting_booked", kind="outbound"), 1),
        (Situation(disposition="not_now", kind="outbound"), 2),
        (Situation(disposition="no_answer", kind="outbound"), 3),
        (Situation(disposition="wrong_number"), 4),
        (Situation(disposition="not_interested"), 5),
        (Situation(disposition="do_not_call"), 6),
        (Situation(event="replied", kind="nurture"), 7),
        (Situation(event="completed", kind="outbound"), 8),
        (Situation(event="completed", kind="nurture"), 9),
    ],
)
def test_each_issue_rule_matches_its_situation(situation: Situation, rule_number: int) -> None:
    decided = decide(RULES, situation)
    assert decided is not None and decided[0] + 1 == rule_number


@pytest.mark.parametrize(
    "situation",
    [
        Situation(event="replied", kind="outbound"),  # kind filter: only nurture replies re-enroll
        Situation(event="bounced", kind="outbound"),
        Situation(disposition="unknown_code"),
        Situation(event="completed"),  # no kind: neither completed rule applies
    ],
)
def test_no_rule_means_built_in_behaviour(situation: Situation) -> None:
    assert decide(RULES, situation) is None


def test_first_matching_rule_wins() -> None:
    rules = [
        Rule.model_validate({"when": {"event": "replied"}, "then": {"finish": "qualified"}}),
        Rule.model_validate({"when": {"event": "replied", "kind": "nurture"}, "then": {"enroll": "x"}}),
    ]
    assert decide(rules, Situation(event="replied", kind="nurture"))[0] == 0  # type: ignore[index]


def test_a_disposition_rule_never_fires_on_an_event_and_vice_versa() -> None:
    assert decide(RULES[:1], Situation(event="meeting_booked")) is None
    assert decide(RULES[6:7], Situation(disposition="replied", kind="nurture")) is None


def test_sequence_and_channel_filters() -> None:
    rule = Rule.model_validate(
        {"when": {"event": "sms_reply", "sequence": ["a", "b"], "channel": "sms"}, "then": {"pause": "14d"}}
    )
    assert decide([rule], Situation(event="sms_reply", sequence="b", channel="sms")) is not None
    assert decide([rule], Situation(event="sms_reply", sequence="c", channel="sms")) is None
    assert decide([rule], Situation(event="sms_reply", sequence="a", channel="email")) is None


def test_continue_shorthand_and_ends_enrollment() -> None:
    assert RULES[2].then.continue_ and not RULES[2].then.ends_enrollment
    assert RULES[0].then.ends_enrollment and RULES[1].then.ends_enrollment
    assert RULES[6].then.ends_enrollment  # enroll without continue moves the lead


@pytest.mark.parametrize(
    ("then", "message"),
    [
        ({"finish": "qualified", "recycle": "x"}, "cannot both finish and recycle"),
        ({"continue": True, "finish": "qualified"}, "contradicts"),
        ({"after": "30d"}, "only applies to `recycle`"),
        ({"recycle": "x", "after": "soon"}, "duration"),
        ({"drop_channels": ["fax"]}, "drop_channels"),
        ({"explode": True}, "explode"),
    ],
)
def test_incoherent_actions_are_refused(then: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError, match=message):
        Rule.model_validate({"when": {"event": "replied"}, "then": then})


def test_when_needs_an_event_or_disposition_and_known_events() -> None:
    with pytest.raises(ValidationError, match="needs a disposition or an event"):
        Rule.model_validate({"when": {"kind": "nurture"}, "then": "continue"})
    with pytest.raises(ValidationError, match="unknown event 'exploded'"):
        Rule.model_validate({"when": {"event": "exploded"}, "then": "continue"})
    with pytest.raises(ValidationError, match="then must be `continue`"):
        Rule.model_validate({"when": {"event": "replied"}, "then": "stop"})
