"""A claimed touch on its way through the pass (claim, compose, send, record), and what a pass did."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any

from cadence.channels.base import OutgoingEmail, OutgoingSms, Receipt, SendError
from cadence.config import Sender
from cadence.plan.planner import Planner
from cadence.plan.render import Renderer
from cadence.spec.model import Sequence, Step
from cadence.store.rows import EnrollmentRow, LeadRow


@dataclass
class Job:
    """One claimed touch: the enrollment and lead as claimed, then its message, then the send's receipt."""

    touch_id: int
    enrollment: EnrollmentRow
    lead: LeadRow
    spec: Sequence
    index: int
    planner: Planner
    renderer: Renderer
    variant: str | None = None
    message_id: str | None = None
    attempts: int = 0
    sender: Sender | None = None
    outgoing: OutgoingEmail | OutgoingSms | None = None
    subject: str | None = None
    body: str | None = None
    receipt: Receipt | None = None
    error: SendError | None = None

    @property
    def step(self) -> Step:
        return self.spec.steps[self.index]

    @property
    def claimed(self) -> EnrollmentRow:
        """The enrollment as the claim left it: waiting on this touch, nothing due."""
        return self.enrollment._replace(pending_touch_id=self.touch_id, next_due_at=None)


@dataclass
class PassReport:
    """Counts of one pass (or several, merged): what `cadence run --json` prints under "dispatch"."""

    claimed: int = 0
    sent: Counter[str] = field(default_factory=Counter)
    tasks_opened: int = 0
    skipped: int = 0
    deferred: int = 0
    failed: int = 0
    retrying: int = 0
    unknown: int = 0
    dropped: int = 0  # results of claims this worker had lost (the touch was claimed again): not recorded
    batches: int = 0
    by_channel: Counter[tuple[str, str]] = field(default_factory=Counter)  # (outcome, channel): what metrics count

    def add(self, outcome: str, channel: str, n: int = 1) -> None:
        """Count `n` touches of `channel` under `outcome` (a field's name: sent, skipped, failed, ...)."""
        if outcome == "sent":
            self.sent[channel] += n
        else:
            setattr(self, outcome, getattr(self, outcome) + n)
        self.by_channel[(outcome, channel)] += n

    def merge(self, other: PassReport) -> None:
        for f in fields(self):
            mine = getattr(self, f.name)
            if isinstance(mine, Counter):
                mine.update(getattr(other, f.name))
            else:
                setattr(self, f.name, mine + getattr(other, f.name))

    def as_json(self) -> dict[str, Any]:
        counts: dict[str, Any] = {
            f.name: dict(self.sent) if f.name == "sent" else getattr(self, f.name)
            for f in fields(self)
            if f.name != "by_channel"
        }
        per_channel: dict[str, dict[str, int]] = {}
        for (outcome, channel), n in sorted(self.by_channel.items()):
            per_channel.setdefault(channel, {})[outcome] = n
        counts["by_channel"] = per_channel
        return counts
