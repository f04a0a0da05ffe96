"""The exact timeline of a sequence for one lead, before anything is sent (read-only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cadence.enrollment.status import UnknownLead
from cadence.plan.render import RenderError
from cadence.plan.template_context import template_context
from cadence.plan.variants import assign
from cadence.store import leads
from cadence.store.rows import LeadRow

if TYPE_CHECKING:
    from cadence.app import App
    from cadence.config import Sender
    from cadence.spec.model import Sequence, Step


@dataclass(frozen=True)
class Hypothetical:
    timezone: str | None
    country: str | None


def preview(
    app: App,
    sequence_id: str,
    *,
    lead_id: str | None = None,
    hypothetical: Hypothetical | None = None,
    start: datetime | None = None,
    render: bool = False,
) -> dict[str, Any]:
    loaded = app.catalog.get(sequence_id)
    spec = loaded.spec
    lead: LeadRow | None = None
    if lead_id is not None:
        with app.engine.connect() as conn:
            lead = leads.get(conn, lead_id)
        if lead is None:
            raise UnknownLead(lead_id)
        tz, country, region, key = lead.timezone, lead.country, lead.region, lead_id
    else:
        h = hypothetical or Hypothetical(None, None)
        tz, country, region, key = h.timezone, h.country, None, "preview"
    planner = app.planner(spec, tz, country, region)
    begin = start or app.clock.now()
    sender = None
    if lead is not None and lead.owner:
        try:
            sender = app.settings.sender(lead.owner)
        except KeyError:
            sender = None
    steps = []
    for step, day, due in planner.timeline(begin, key):
        item: dict[str, Any] = {
            "step": step.id,
            "day": day,
            "channel": step.channel,
            "due_local": due.astimezone(planner.calendar.tz).isoformat(),
            "due_utc": due.isoformat(),
        }
        variant = assign(spec.id, step, key)
        if variant is not None:
            item["variant"] = variant
        arm = step.variant(variant)
        if arm.title:
            item["title"] = arm.title
        if render:
            item.update(_rendered(app, spec, arm, lead, sender, key))
        steps.append(item)
    return {
        "sequence": spec.id,
        "lead": lead_id,
        "timezone": str(planner.calendar.tz),
        "country": (country or app.settings.country),
        "start": begin.isoformat(),
        "steps": steps,
    }


def _rendered(
    app: App, spec: Sequence, step: Step, lead: LeadRow | None, sender: Sender | None, key: str
) -> dict[str, Any]:
    renderer = app.renderer
    if lead is None:  # a hypothetical lead: show the template with placeholder values
        out: dict[str, Any] = {}
        try:
            if step.template:
                out["body"] = app.templates.sample(step.template, channel=step.channel)
            if step.subject:
                out["subject"] = app.templates.sample_string(step.subject)
        except RenderError as exc:  # bounded like every render: a runaway template is shown as its reason
            return {"render_error": str(exc)}
        return out
    ctx = template_context(lead, sender, spec, step, {"unsubscribe_url": "https://example.invalid/u/preview"})
    try:
        out = {}
        subject = step.subject
        if subject is None and step.reply_to:
            root = spec.thread_root(step.reply_to)
            subject = root.variant(assign(spec.id, root, key)).subject
            out["subject"] = "Re: " + renderer.subject(subject or "", ctx)
        elif subject is not None:
            out["subject"] = renderer.subject(subject, ctx)
        if step.template:
            out["body"] = renderer.text(step.template, ctx)
        return out
    except RenderError as exc:
        return {"render_error": str(exc)}
