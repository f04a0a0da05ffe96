"""The SDR's queue: open call and manual tasks, overdue and due today first, hottest leads first."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from cadence.spec.values import zone
from cadence.store import views

if TYPE_CHECKING:
    from cadence.app import App

DUE_CHOICES = ("today", "overdue", "all")


def task_queue(
    app: App, *, owner: str | None = None, due: str = "all", now: datetime | None = None
) -> list[dict[str, Any]]:
    if due not in DUE_CHOICES:
        raise ValueError(f"--due must be one of {', '.join(DUE_CHOICES)}")
    now = now or app.clock.now()
    out: list[dict[str, Any]] = []
    with app.engine.connect() as conn:
        for task, lead, _version_id in views.open_tasks(conn, owner):
            # The lead's own day decides overdue and today: its zone, as the planner resolves it. Not the
            # planner itself, which would build the lead's holiday calendar for nothing (`cadence tasks`).
            tz = zone(lead.timezone or app.settings.timezone)
            due_day, today = task.due_at.astimezone(tz).date(), now.astimezone(tz).date()
            when = "overdue" if due_day < today else ("today" if due_day == today else "later")
            if due != "all" and when != due:
                continue
            out.append(
                {
                    "id": task.id, "owner": task.owner, "due": when, "due_on": due_day.isoformat(),
                    "lead": {
                        "id": task.lead_id, "name": " ".join(filter(None, [lead.first_name, lead.last_name])),
                        "company": lead.company, "phone": lead.phone, "email": lead.email, "score": lead.score,
                    },
                    "sequence": task.sequence_id, "step": task.step_id, "channel": task.channel,
                    "title": task.subject, "script": task.body,
                }
            )  # fmt: skip
    rank = {"overdue": 0, "today": 1, "later": 2}
    out.sort(key=lambda t: (rank[t["due"]], -(t["lead"]["score"] or 0), t["due_on"], t["id"]))
    return out
