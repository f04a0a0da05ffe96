"""GET /leads (the list), GET /leads/{id} (the lead) and the lead's actions, each a form POST under /leads/{id}/.

    GET  /leads?q=&stage=&owner=&sequence=&page=   search and filter, 50 a page (signed in)
    GET  /leads/{id}                               the lead: details, what comes next, its story
    POST /leads/{id}/pause     until=YYYY-MM-DD    pause its live sequences (midnight in the lead's zone)
    POST /leads/{id}/resume                        resume them
    POST /leads/{id}/replied                       report a reply (the `replied` event)
    POST /leads/{id}/meeting                       report a booked meeting (`meeting_booked`)
    POST /leads/{id}/enroll    sequence=ID         enroll it, or show the CLI's refusal
    POST /leads/{id}/reassign  owner=ID            give it to another rep (managers only)

An SDR sees and acts on their own leads only: the list is always filtered to them (asking for
someone else's is 403), and another rep's lead answers 403; a manager sees everyone's. Every
action calls the service the CLI calls, then goes back to the lead page (303) where the answer
is shown once, carried in the signed session rather than the address, so a link cannot put
words on the page. POST /leads itself is the inbound-lead API (`cadence.web.api`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_owners import UnknownOwner, assign_owner
from cadence.enrollment.lead_page import UnknownLead, lead_page, owner_of
from cadence.enrollment.lead_search import LeadFilter, leads_page
from cadence.names import Event, Stage
from cadence.outcomes.events import record_event
from cadence.outcomes.pauses import LeadNotFound, pause_lead, resume_lead
from cadence.outcomes.return_dates import lead_zone, return_date
from cadence.web.context import context
from cadence.web.workspace.guard import action, refuse, signed_in
from cadence.web.workspace.identity import Viewer
from cadence.web.workspace.render import local_day, page, place_of

FLASH = "lead_flash"
SOURCE = "workspace"
NEWEST = 100  # moments of the story a lead page opens with; "?story=all" shows every one
LeadAction = Callable[[Request, Viewer, dict[str, str], str], Awaitable[tuple[bool, str]]]


def lead_path(lead_id: str) -> str:
    return "/leads/" + quote(lead_id, safe="")


def _choice(request: Request, name: str) -> str | None:
    return request.query_params.get(name, "").strip() or None


async def leads_list(request: Request, who: Viewer) -> Response:
    app = context(request).app
    owner = _choice(request, "owner")
    if not who.is_manager:
        if owner not in (None, who.id):
            return refuse(request, who, 403, "You can list only your own leads.")
        owner = who.id
    try:
        number = int(request.query_params.get("page", "1") or "1")
        if number < 1:
            raise ValueError
    except ValueError:
        return refuse(request, who, 400, "The page number must be a whole number from 1.")
    where = LeadFilter(owner, _choice(request, "stage"), _choice(request, "sequence"), _choice(request, "q"))
    found = await run_in_threadpool(leads_page, app, where, number)
    kept = {"q": where.search, "stage": where.stage, "sequence": where.sequence}
    if who.is_manager:
        kept["owner"] = where.owner

    def link(to: int) -> str:
        return "/leads?" + urlencode({k: v for k, v in {**kept, "page": str(to)}.items() if v})

    return page(
        request, "leads.html", who, listing=found, where=where, link=link, lead_path=lead_path,
        stages=[s.value for s in Stage], sequences=sorted(app.catalog.sequences),
        owners=[s.id for s in app.settings.senders], default_zone=app.settings.timezone,
    )  # fmt: skip


async def show_lead(request: Request, who: Viewer) -> Response:
    app = context(request).app
    lead_id = request.path_params["lead_id"]
    try:
        whole = request.query_params.get("story") == "all"
        found = await run_in_threadpool(partial(lead_page, app, lead_id, newest=None if whole else NEWEST))
    except UnknownLead:
        return refuse(request, who, 404, f"There is no lead {lead_id}.")
    if not who.may_see(found.lead.owner):
        return refuse(request, who, 403, "This lead belongs to another rep.")
    flash = request.session.pop(FLASH, None)
    said = flash if isinstance(flash, dict) and flash.get("lead") == lead_id else None
    return page(request, "lead.html", who, it=found, lead=found.lead, zone=found.zone, said=said, lead_path=lead_path)


def lead_action(do: LeadAction, *, managers_only: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """A POST on one lead: signed in, CSRF checked, the lead's owner or a manager; the answer shown on its page."""

    async def acted(request: Request, who: Viewer, form: dict[str, str]) -> Response:
        lead_id = request.path_params["lead_id"]
        if managers_only and not who.is_manager:
            return refuse(request, who, 403, "Only managers may do this.")
        try:
            owner = await run_in_threadpool(owner_of, context(request).app, lead_id)
        except UnknownLead:
            return refuse(request, who, 404, f"There is no lead {lead_id}.")
        if not who.may_see(owner):
            return refuse(request, who, 403, "This lead belongs to another rep.")
        try:
            ok, text = await do(request, who, form, lead_id)
        except (UnknownLead, LeadNotFound):  # deleted meanwhile
            return refuse(request, who, 404, f"There is no lead {lead_id}.")
        request.session[FLASH] = {"lead": lead_id, "ok": ok, "text": text[:1000]}
        return RedirectResponse(lead_path(lead_id), status_code=303)

    acted.__name__ = do.__name__
    return action(acted)


async def _pause(request: Request, who: Viewer, form: dict[str, str], lead_id: str) -> tuple[bool, str]:
    app = context(request).app
    try:
        until = await run_in_threadpool(return_date, app, lead_id, form.get("until"))
    except ValueError as exc:
        return False, f"Not paused: {exc}."
    paused = await run_in_threadpool(pause_lead, app, lead_id, until, f"paused by {who.id} ({SOURCE})")
    if not paused:
        return False, "Nothing to pause: the lead is in no live sequence."
    if until is None:
        return True, f"Paused {', '.join(paused)} until someone resumes it."
    zone = await run_in_threadpool(lead_zone, app, lead_id)
    return True, f"Paused {', '.join(paused)} until {local_day(until, zone)} ({place_of(zone)} time)."


async def _resume(request: Request, who: Viewer, form: dict[str, str], lead_id: str) -> tuple[bool, str]:
    resumed = await run_in_threadpool(resume_lead, context(request).app, lead_id)
    if not resumed:
        return False, "Nothing to resume: no sequence of this lead is paused."
    return True, f"Resumed {', '.join(resumed)}."


async def _event(request: Request, who: Viewer, lead_id: str, event: Event, shown: str) -> tuple[bool, str]:
    note = f"marked by {who.id}"
    try:
        done = await run_in_threadpool(record_event, context(request).app, lead_id, event, note=note, source=SOURCE)
    except KeyError as exc:
        raise UnknownLead(lead_id) from exc
    return True, f"Marked {shown}" + (f": {'; '.join(done)}." if done else ".")


async def _replied(request: Request, who: Viewer, form: dict[str, str], lead_id: str) -> tuple[bool, str]:
    return await _event(request, who, lead_id, Event.REPLIED, "replied")


async def _meeting(request: Request, who: Viewer, form: dict[str, str], lead_id: str) -> tuple[bool, str]:
    return await _event(request, who, lead_id, Event.MEETING_BOOKED, "meeting booked")


async def _enroll(request: Request, who: Viewer, form: dict[str, str], lead_id: str) -> tuple[bool, str]:
    sequence = form.get("sequence", "").strip()
    if not sequence:
        return False, "Choose a sequence to enroll the lead into."
    app = context(request).app
    cause = f"enrolled by hand ({SOURCE}, {who.id})"
    try:
        report = await run_in_threadpool(enroll, app, sequence, [lead_id], cause=cause)
    except (KeyError, ValueError) as exc:
        return False, f"Not enrolled: {exc.args[0] if exc.args else exc}"
    if report.refused:
        return False, "Not enrolled: " + "; ".join(r["reason"] for r in report.refused)
    return True, f"Enrolled in {sequence} (version {report.version}); its first step is on the plan below."


async def _reassign(request: Request, who: Viewer, form: dict[str, str], lead_id: str) -> tuple[bool, str]:
    owner = form.get("owner", "").strip()
    try:
        result = await run_in_threadpool(assign_owner, context(request).app, [lead_id], owner)
    except UnknownOwner as exc:
        return False, f"Not reassigned: {exc}"
    if result.refused:
        return False, "Not reassigned: " + "; ".join(r["reason"] for r in result.refused)
    if result.unchanged:
        return True, f"The lead is already {owner}'s."
    moved = result.assigned[0]["tasks_moved"]
    return True, f"Reassigned to {owner}" + (f", with {moved} open task(s)." if moved else ".")


ROUTES: list[BaseRoute] = [
    Route("/leads", signed_in(leads_list), methods=["GET"]),
    Route("/leads/{lead_id}", signed_in(show_lead), methods=["GET"]),
    Route("/leads/{lead_id}/pause", lead_action(_pause), methods=["POST"]),
    Route("/leads/{lead_id}/resume", lead_action(_resume), methods=["POST"]),
    Route("/leads/{lead_id}/replied", lead_action(_replied), methods=["POST"]),
    Route("/leads/{lead_id}/meeting", lead_action(_meeting), methods=["POST"]),
    Route("/leads/{lead_id}/enroll", lead_action(_enroll), methods=["POST"]),
    Route("/leads/{lead_id}/reassign", lead_action(_reassign, managers_only=True), methods=["POST"]),
]
