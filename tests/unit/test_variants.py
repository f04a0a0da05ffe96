"""A/B variants: deterministic per lead and step, and shared out by weight."""

from __future__ import annotations

from collections import Counter

from cadence.plan.variants import assign
from cadence.spec.model import Step

STEP = Step.model_validate(
    {
        "id": "intro",
        "day": 1,
        "channel": "email",
        "variants": [
            {"id": "a", "subject": "Quick question", "template": "t/a.md.j2"},
            {"id": "b", "subject": "{{ lead.company }} + Acme", "template": "t/b.md.j2", "weight": 2},
        ],
    }
)


def test_assignment_is_stable_for_a_lead_and_step() -> None:
    first = [assign("outbound-saas", STEP, f"L{i}") for i in range(500)]
    again = [assign("outbound-saas", STEP, f"L{i}") for i in range(500)]
    assert first == again
    assert assign("outbound-saas", STEP.model_copy(update={"variants": None}), "L1") is None


def test_weights_are_honoured_on_10000_leads() -> None:
    """Chi-square goodness of fit against 1:2, one degree of freedom: below 10.83 is p > 0.001."""
    counts = Counter(assign("outbound-saas", STEP, f"lead-{i}") for i in range(10_000))
    expected = {"a": 10_000 / 3, "b": 20_000 / 3}
    chi2 = sum((counts[k] - e) ** 2 / e for k, e in expected.items())
    assert set(counts) == {"a", "b"}
    assert chi2 < 10.83, (counts, chi2)


def test_steps_are_assigned_independently() -> None:
    other = STEP.model_copy(update={"id": "bump"})
    pairs = Counter((assign("s", STEP, f"L{i}"), assign("s", other, f"L{i}")) for i in range(9_000))
    # independent 1:2 x 1:2 -> 1:2:2:4; each cell within 10% of its expectation
    for (x, y), n in pairs.items():
        share = (1 if x == "a" else 2) * (1 if y == "a" else 2) / 9
        assert abs(n - 9_000 * share) < 0.1 * 9_000 * share, pairs


def test_a_variant_overrides_the_step_fields_it_names() -> None:
    arm = STEP.variant("b")
    assert (arm.subject, arm.template, arm.id) == ("{{ lead.company }} + Acme", "t/b.md.j2", "intro")
    assert STEP.variant(None) is STEP
