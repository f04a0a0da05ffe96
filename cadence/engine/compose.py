"""Step 2a of a pass: a claimed touch becomes its message, or a task's title and script; whole or not at all."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cadence.channels.base import OutgoingEmail, OutgoingSms, PermanentError
from cadence.engine.isolation import describe
from cadence.engine.jobs import Job
from cadence.names import TASK_CHANNELS, Channel
from cadence.plan.render import RenderError
from cadence.plan.template_context import template_context
from cadence.plan.tokens import sign
from cadence.plan.variants import assign
from cadence.store import touches
from cadence.store.rows import TouchRow

if TYPE_CHECKING:
    from cadence.app import App


def threads(app: App, jobs: Sequence[Job]) -> dict[int, list[TouchRow]]:
    """Sent emails of the enrollments whose step replies in a thread, oldest first."""
    out: dict[int, list[TouchRow]] = {}
    needs_thread = [j.enrollment.id for j in jobs if j.step.channel == Channel.EMAIL and j.step.reply_to]
    if needs_thread:
        with app.engine.connect() as conn:
            for m in touches.thread_messages(conn, needs_thread):
                out.setdefault(m.enrollment_id, []).append(m)
    return out


def compose_or_fail(app: App, job: Job, sent_emails: list[TouchRow]) -> None:
    """Render one job; a job that cannot be rendered gets a PermanentError and is not sent.

    Whatever rendering raises (a template's own Python error, a bug) fails this touch with the
    reason, and the rest of the batch is sent: one lead's data never stops the others.
    """
    try:
        compose(app, job, sent_emails)
    except RenderError as exc:
        job.error = PermanentError(f"not sent: {exc}")
    except Exception as exc:
        job.error = PermanentError(f"not sent: composing {job.step.id} failed: {describe(exc)}")
    if job.error is not None:
        job.outgoing = None


def compose(app: App, job: Job, sent_emails: list[TouchRow]) -> None:
    step, lead, settings = job.step.variant(job.variant), job.lead, app.settings
    renderer = job.renderer
    job.sender = settings.sender(lead.owner) if lead.owner else None
    extras: dict[str, Any] = {}
    unsubscribe_url = _unsubscribe_url(app, lead.id)
    if unsubscribe_url:
        extras["unsubscribe_url"] = unsubscribe_url
    ctx = template_context(lead, job.sender, job.spec, step, extras)
    if step.channel in TASK_CHANNELS:
        default = f"Call {lead.name}" + (f" ({lead.company})" if lead.company else "")
        job.subject = renderer.subject(step.title, ctx) if step.title else default
        job.body = renderer.text(step.template, ctx) if step.template else None
        return
    assert step.template is not None and job.sender is not None
    if step.channel == Channel.SMS:
        job.body = renderer.text(step.template, ctx)
        callback = f"{settings.public_url.rstrip('/')}/twilio/status" if settings.public_url else None
        job.outgoing = OutgoingSms(job.touch_id, lead.phone or "", job.sender.phone or "", job.body, callback)
        return
    in_reply_to, subject_source = None, step.subject
    references: tuple[str, ...] = ()
    if step.reply_to:
        root = job.spec.thread_root(step.reply_to)
        thread_ids = {s.id for s in job.spec.steps if s.channel == Channel.EMAIL and job.spec.thread_root(s.id) == root}
        chain = [m for m in sent_emails if m.step_id in thread_ids and m.message_id]
        if chain:  # Gmail threads only when both the headers and the subject match
            references = tuple(m.message_id for m in chain if m.message_id)
            in_reply_to = references[-1]
            original = next((m.subject for m in chain if m.step_id == root.id), chain[0].subject) or ""
            job.subject = original if original.lower().startswith("re:") else f"Re: {original}"
        elif subject_source is None:  # the thread never started: this email starts one
            subject_source = root.variant(assign(job.spec.id, root, lead.id)).subject
    if job.subject is None:
        job.subject = renderer.subject(subject_source or "", ctx)
    text, html = renderer.text(step.template, ctx), renderer.html(step.template, ctx)
    job.body = text
    assert job.message_id is not None
    job.outgoing = OutgoingEmail(
        touch_id=job.touch_id,
        to=lead.email or "",
        to_name=" ".join(filter(None, [lead.first_name, lead.last_name])) or None,
        from_addr=job.sender.email,
        from_name=job.sender.name,
        subject=job.subject,
        text=text,
        html=html,
        message_id=job.message_id,
        in_reply_to=in_reply_to,
        references=references,
        unsubscribe_url=unsubscribe_url,
        unsubscribe_mailto=settings.email.unsubscribe_mailto,
        headers={"X-Cadence-Touch": str(job.touch_id)},
    )


def _unsubscribe_url(app: App, lead_id: str) -> str | None:
    public, secret = app.settings.public_url, app.secret
    if not public or not secret:
        return None
    return f"{public.rstrip('/')}/u/{sign(lead_id, secret)}"
