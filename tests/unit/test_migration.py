"""Where a lead lands in an edited sequence: by step id, never repeating a step, never out of order."""

from __future__ import annotations

import pytest

from cadence.plan.positions import Position, position, step_changes
from cadence.spec.model import Sequence


def seq(*steps: tuple[str, int], **extra: object) -> Sequence:
    return Sequence.model_validate(
        {
            "id": "s",
            "name": "S",
            "steps": [{"id": i, "day": d, "channel": "task", "title": i} for i, d in steps],
            **extra,
        }
    )


OLD = seq(("a", 1), ("b", 3), ("c", 5), ("d", 7))


@pytest.mark.parametrize(
    ("new", "next_index", "pending", "expected"),
    [
        pytest.param(OLD, 2, None, Position(2, False, False, False), id="unchanged-file-keeps-everything"),
        pytest.param(
            seq(("a", 1), ("b", 3), ("c", 6), ("d", 7)), 2, None, Position(2, False, False, True),
            id="next-step-re-timed",
        ),
        pytest.param(
            seq(("a", 1), ("b", 4), ("c", 5), ("d", 7)), 2, None, Position(2, False, False, True),
            id="previous-step-day-changes-the-gap",
        ),
        pytest.param(
            seq(("a", 1), ("b", 3), ("c", 5), ("d", 8)), 2, None, Position(2, False, False, False),
            id="a-later-step-changing-leaves-the-next-due-time",
        ),
        pytest.param(seq(("a", 1), ("b", 3), ("d", 7)), 2, None, Position(2, False, False, True), id="next-removed"),
        pytest.param(
            seq(("a", 1), ("b", 3), ("x", 4), ("c", 5), ("d", 7)), 2, None, Position(2, False, False, True),
            id="new-step-ahead-is-next",
        ),
        pytest.param(
            seq(("x", 1), ("a", 1), ("b", 3), ("c", 5), ("d", 7)), 2, None, Position(3, False, False, False),
            id="new-step-behind-the-position-is-not-sent",
        ),
        pytest.param(
            seq(("b", 1), ("a", 2), ("c", 5), ("d", 7)), 1, None, Position(2, False, False, True),
            id="step-moved-behind-a-done-step-is-skipped",
        ),
        pytest.param(seq(("a", 1), ("b", 3)), 2, None, Position(None, False, False, True), id="nothing-left"),
        pytest.param(
            seq(("a", 1), ("b", 4), ("c", 5), ("d", 7)), 1, "in_flight", Position(1, True, False, False),
            id="open-task-keeps-its-step",
        ),
        pytest.param(
            seq(("a", 1), ("c", 5), ("d", 7)), 1, "in_flight", Position(1, False, True, True),
            id="open-task-of-removed-step-is-cancelled-and-the-lead-moves-on",
        ),
        pytest.param(
            seq(("a", 1), ("c", 5), ("d", 7)), 1, "retry", Position(1, False, True, True),
            id="retry-of-removed-step-is-cancelled",
        ),
        pytest.param(
            OLD.model_copy(update={"schedule": OLD.schedule.model_copy(update={"window": "10:00-16:00"})}),
            2, None, Position(2, False, False, True), id="schedule-change-re-times-everyone",
        ),
    ],
)  # fmt: skip
def test_position_in_the_new_version(new: Sequence, next_index: int, pending: str | None, expected: Position) -> None:
    assert position(OLD, new, next_index, pending) == expected


def test_done_steps_are_never_next_whatever_the_edit() -> None:
    """Every reordering of four steps: no step the lead already passed is ever ahead of it again."""
    from itertools import permutations

    for order in permutations("abcd"):
        new = seq(*((s, 1) for s in order))
        for next_index in range(5):
            at = position(OLD, new, next_index, None)
            passed = {s.id for s in OLD.steps[:next_index]}
            if at.new_index is not None:
                assert all(new.steps[i].id not in passed for i in range(at.new_index, len(new.steps)))


def test_step_changes_lists_old_and_new_values() -> None:
    old, new = OLD.steps[1], OLD.steps[1].model_copy(update={"day": 4, "title": "call"})
    assert step_changes(old, new) == {"day": [3, 4], "title": ["b", "call"]}
