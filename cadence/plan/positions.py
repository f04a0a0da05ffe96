"""Where an enrolled lead stands in a new version of its sequence (pure: values in, values out).

Leads migrate by step id, the way a manager reads the file:
- steps the lead already passed stay passed (they are never sent again);
- the lead's position is just after the last passed step that the new version still
  has; the next step is the first step after that position it has not passed, so a
  new step ahead of the position is scheduled in order, a removed step is skipped,
  and a step moved behind the position is skipped too (it would be out of order);
- a touch in flight (an open task, a send whose outcome is unknown) keeps its step
  if the new version still has it; if not, it is cancelled and the lead moves on;
- the next due time is recomputed by the timing rules only when something it depends
  on changed (the step itself, its predecessor's day, the schedule); otherwise the
  stored due time stands, deferrals by caps included.

`position` depends only on the two specs, the lead's step index and what is in flight,
so callers compute it once per distinct (version, index, in-flight) and reuse it for
every lead that shares them.
"""

from __future__ import annotations

from dataclasses import dataclass

from cadence.spec.model import Sequence, Step

# What a pending touch means for the position: None (nothing pending), "retry" (the current
# step is waiting for a retry, nothing went out) or "in_flight" (open task, unknown outcome).
Pending = str | None
TIMING_FIELDS = ("day", "at", "channel", "immediate")


@dataclass(frozen=True)
class Position:
    """Where a lead lands in the new version."""

    new_index: int | None  # None: no step left for it (the enrollment completes)
    keep_pending: bool  # the pending touch's step survives: it stays, pointed at its new index
    cancel_pending: bool  # the pending touch's step is gone: cancel that touch
    retime: bool  # the next due time must be recomputed


def _timing(step: Step | None) -> tuple[object, ...] | None:
    return None if step is None else tuple(getattr(step, k) for k in TIMING_FIELDS)


def position(old: Sequence, new: Sequence, next_index: int, pending: Pending) -> Position:
    old_ids = [s.id for s in old.steps]
    new_ids = [s.id for s in new.steps]
    new_at = {step_id: i for i, step_id in enumerate(new_ids)}
    current = old.steps[next_index] if next_index < len(old.steps) else None
    if pending is not None and current is not None and current.id in new_at:
        return Position(new_at[current.id], keep_pending=True, cancel_pending=False, retime=False)
    passed = set(old_ids[:next_index])
    if pending == "in_flight" and current is not None:
        passed.add(current.id)  # it went out, or may have: the lead is past it
    last = max((new_at[i] for i in passed if i in new_at), default=-1)
    new_index = next((i for i in range(last + 1, len(new_ids)) if new_ids[i] not in passed), None)
    cancel = pending is not None
    same = (
        not cancel
        and new_index is not None
        and current is not None
        and new_ids[new_index] == current.id
        and old.schedule == new.schedule
        and _timing(current) == _timing(new.steps[new_index])
        and (old.steps[next_index - 1].day if next_index > 0 else None)
        == (new.steps[new_index - 1].day if new_index > 0 else None)
    )
    return Position(new_index, keep_pending=False, cancel_pending=cancel, retime=not same)


STEP_FIELDS = ("day", "channel", "template", "subject", "reply_to", "at", "title", "immediate", "variants")
SEQUENCE_FIELDS = ("name", "kind", "description", "schedule", "exit_on", "migrate")


def _plain(value: object) -> object:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)  # type: ignore[union-attr]
    return value


def _diff(old: object, new: object, names: tuple[str, ...]) -> dict[str, list[object]]:
    """field -> [old value, new value] for every named field that differs."""
    out: dict[str, list[object]] = {}
    for name in names:
        a, b = _plain(getattr(old, name)), _plain(getattr(new, name))
        if a != b:
            out[name] = [a, b]
    return out


def step_changes(old: Step, new: Step) -> dict[str, list[object]]:
    return _diff(old, new, STEP_FIELDS)


def sequence_changes(old: Sequence, new: Sequence) -> dict[str, list[object]]:
    return _diff(old, new, SEQUENCE_FIELDS)
