"""The sequences as the workspace shows them: how each one is doing, its step funnel, and its unapplied edit.

Nothing is counted here: the numbers are `cadence report --json`'s (`report.build_report`),
the pending edit is `cadence plan`'s (`edit_plan`), and publishing it is `cadence apply
SEQ --yes` (`edit_apply.apply`), so the page and the CLI can never disagree.

**The files are read again on every call** (`App.reread_files`). The CLI reads
`sequences/` once per command; `cadence serve` lives for days while a manager edits those
files, and a page that compared the store with the files as they were at start-up would
say "no changes" about an edit made since, then apply something older than the diff it
showed. Reading them is a few milliseconds for a few dozen files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cadence.manage.chart import reached
from cadence.manage.edit_apply import applied_lines, apply
from cadence.manage.edit_plan import Plan, SequencePlan, compute_plan, make_plan
from cadence.manage.report import build_report

if TYPE_CHECKING:
    from cadence.app import App

MOVES_SHOWN = 200  # the per-lead list of a plan stops here; the counts above it cover every lead
EDIT_WORDS = {
    "published": "up to date",
    "changed": "unapplied edits",
    "new": "not yet published",
    "deleted": "file deleted (not applied)",
    "broken": "file has errors",
}


@dataclass(frozen=True)
class SequenceSummary:
    """One row of the sequences page: the report's counts and whether the file matches the published version."""

    id: str
    name: str | None
    kind: str | None
    enrolled: int
    active: int
    paused: int
    finished: int
    contacted: int
    replied: int
    meetings: int
    reply_rate: float | None  # the report's: leads replied / leads reached
    meeting_rate: float | None  # leads with a meeting / leads reached, rounded as the report rounds
    edits: str  # published (the file is what runs) | changed | new | deleted | broken
    reported: bool = True  # False for a broken file nothing ever ran: no report and no page

    @property
    def unapplied(self) -> bool:
        return self.edits != "published"

    @property
    def edit_words(self) -> str:
        return EDIT_WORDS[self.edits]


@dataclass(frozen=True)
class FunnelRow:
    """A step, or one A/B variant of it, with its counts exactly as `cadence report --json` gives them."""

    step: str
    channel: str | None
    variant: str | None  # None: the step as a whole
    counts: dict[str, Any]

    @property
    def reached(self) -> int:
        """Touches that reached the lead (sent, or done for calls and tasks): the reply rate's denominator."""
        return reached({"channel": self.channel, **self.counts})

    @property
    def logged(self) -> list[tuple[str, int]]:
        """The disposition codes logged on this step (or variant), with how many times."""
        return [(code, n) for code, n in self.counts["dispositions"].items() if n]


@dataclass(frozen=True)
class LeadMove:
    """What applying the edit does to one enrolled lead (only leads it changes something for)."""

    lead_id: str
    old_step: str | None
    new_step: str | None  # None: the lead has no step left and completes
    old_due: datetime | None  # given when the edit re-times the lead's next touch
    new_due: datetime | None
    cancels_pending: bool  # a touch of a removed step in flight is cancelled


@dataclass
class SequenceDetail:
    id: str
    report: dict[str, Any]  # this sequence in `cadence report SEQ --json`
    funnel: list[FunnelRow]
    plan: SequencePlan | None = None  # None: nothing to apply (or not asked for)
    planned: bool = False  # a plan was asked for (a manager's page)
    moves: list[LeadMove] = field(default_factory=list)
    moves_total: int = 0  # leads the edit changes something for (moves holds the first MOVES_SHOWN)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def edit_states(app: App) -> dict[str, str]:
    """sequence id -> changed | new | deleted | broken, for every file that differs from its published version."""
    with app.engine.connect() as conn:
        plan = compute_plan(app, conn, None, app.clock.now(), with_moves=False)
    return {s.sequence: s.status for s in plan.sequences}


def sequence_summaries(app: App) -> list[SequenceSummary]:
    """Every sequence the store or `sequences/` knows, as `cadence report` lists them, with its edit state."""
    app.reread_files()
    states = edit_states(app)
    out = []
    for seq in build_report(app).as_json()["sequences"]:
        sid = seq["sequence"]
        out.append(
            SequenceSummary(
                sid, seq["name"], seq["kind"], seq["enrolled"], seq["active"], seq["paused"],
                sum(seq["finished"].values()), seq["contacted"], seq["replied"], seq["meetings"], seq["reply_rate"],
                _rate(seq["meetings"], seq["contacted"]), states.pop(sid, "published"),
            )
        )  # fmt: skip
    for sid, state in sorted(states.items()):  # a broken file that never ran: no report, only its problem
        out.append(SequenceSummary(sid, None, None, 0, 0, 0, 0, 0, 0, 0, None, None, state, reported=False))
    return out


def funnel(report: dict[str, Any]) -> list[FunnelRow]:
    """The report's steps in file order, each followed by its variants."""
    rows = []
    for step in report["steps"]:
        own = {k: v for k, v in step.items() if k not in ("step", "channel", "variants")}
        rows.append(FunnelRow(step["step"], step["channel"], None, own))
        for variant in step["variants"]:
            counts = {k: v for k, v in variant.items() if k != "variant"}
            rows.append(FunnelRow(step["step"], step["channel"], variant["variant"], counts))
    return rows


def _moves(sp: SequencePlan) -> list[LeadMove]:
    out = []
    for m in sorted(sp.moves, key=lambda m: m.lead_id):
        if not m.moved:
            continue
        retimed = m.at.retime and m.old_due != m.new_due
        out.append(
            LeadMove(
                m.lead_id, m.old_step, m.new_step, m.old_due if retimed else None, m.new_due if retimed else None,
                m.at.cancel_pending,
            )
        )  # fmt: skip
    return out


def sequence_detail(app: App, sequence_id: str, *, with_plan: bool) -> SequenceDetail:
    """One sequence's report and funnel; with `with_plan`, what `cadence plan SEQ` shows. KeyError: unknown."""
    app.reread_files()
    report = build_report(app, sequence_id=sequence_id).as_json()["sequences"][0]
    detail = SequenceDetail(sequence_id, report, funnel(report), planned=with_plan)
    if with_plan:
        try:
            plan = make_plan(app, [sequence_id])
        except KeyError:  # retired and its file gone: nothing left to apply
            plan = Plan([], app.clock.now())
        if plan.sequences:
            detail.plan = plan.sequences[0]
            moves = _moves(detail.plan)
            detail.moves, detail.moves_total = moves[:MOVES_SHOWN], len(moves)
    return detail


def apply_sequence(app: App, sequence_id: str) -> list[str]:
    """`cadence apply SEQ --yes` on the files as they are now; what it did, in the CLI's words.

    KeyError: no such sequence; `edit_apply.ApplyError`: refused, and nothing changed.
    """
    app.reread_files()
    plan = apply(app, [sequence_id])
    return applied_lines(plan)
