"""The SDR's queue: open call and manual tasks, overdue and due today first, hottest leads first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from cadence.app import App
from cadence.store.queries import EnrollmentT, LeadT, TouchT

DUE_CHOICES = ("today", "overdue", "all")


def task_queue(
    app: App, *, owner: str | None = None, due: str = "all", now: datetime | None = None
) -> list[dict[str, Any]]:
    if due not in DUE_CHOICES:
        raise ValueError(f"--due must be one of {', '.join(DUE_CHOICES)}")
    now = now or app.clock.now()
    query = (
        select(TouchT, LeadT.c.first_name, LeadT.c.last_name, LeadT.c.company, LeadT.c.phone, LeadT.c.email,
               LeadT.c.score, LeadT.c.timezone, LeadT.c.country, EnrollmentT.c.version_id)
        .join(LeadT, LeadT.c.id == TouchT.c.lead_id)
        .join(EnrollmentT, EnrollmentT.c.id == TouchT.c.enrollment_id)
        .where(TouchT.c.status == "task_open")
    )  # fmt: skip
    if owner:
        query = query.where(TouchT.c.owner == owner)
    out = []
    with app.engine.connect() as conn:
        for row in conn.execute(query).mappings():
            spec, _ = app.specs.get(conn, row["version_id"])
            cal = app.planner(spec, row["timezone"], row["country"]).calendar
            due_day, today = cal.local_date(row["due_at"]), cal.local_date(now)
            when = "overdue" if due_day < today else ("today" if due_day == today else "later")
            if due != "all" and when != due:
                continue
            out.append(
                {
                    "id": row["id"], "owner": row["owner"], "due": when, "due_on": due_day.isoformat(),
                    "lead": {
                        "id": row["lead_id"], "name": " ".join(filter(None, [row["first_name"], row["last_name"]])),
                        "company": row["company"], "phone": row["phone"], "email": row["email"], "score": row["score"],
                    },
                    "sequence": row["sequence_id"], "step": row["step_id"], "channel": row["channel"],
                    "title": row["subject"], "script": row["body"],
                }
            )  # fmt: skip
    rank = {"overdue": 0, "today": 1, "later": 2}
    out.sort(key=lambda t: (rank[t["due"]], -(t["lead"]["score"] or 0), t["due_on"], t["id"]))
    return out
