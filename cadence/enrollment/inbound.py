"""Inbound leads (a web form, a CRM): create or update the lead, give it an owner, enroll it at once.

All in one transaction, so a lead is never saved half-assigned. The owner is the
one given, else the lead's current owner, else the next sender in turn: the
rotation follows config.yaml's `senders` order, starting after the owner of the
last lead it assigned. Each assignment is stored in the history (kind
`owner_assigned`), so a restarted server continues the rotation where it stopped;
on PostgreSQL an advisory lock makes concurrent requests take turns, and SQLite
serializes writers anyway.

Enrollment goes into the sequence named in the request, else config.yaml's
`inbound_sequence`. A refusal (already active elsewhere, opted out) leaves the
lead saved and says why; a step marked `immediate: true` is due on the engine's
next pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cadence.enrollment.enroll import enroll_in
from cadence.enrollment.lead_import import LeadError, clean_row, new_lead, normalize_email
from cadence.names import HistoryKind
from cadence.store import enrolling, history, leads
from cadence.store.errors import Conflict

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cadence.app import App
    from cadence.config import Settings


class IntakeError(ValueError):
    """A request that cannot be taken as it is (the message says why); nothing was saved."""


@dataclass
class Intake:
    lead: str
    owner: str | None
    created: bool
    enrolled: dict[str, Any] | None
    refused: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "lead": self.lead, "owner": self.owner, "created": self.created, "enrolled": self.enrolled,
            "refused": self.refused,
        }  # fmt: skip


def find_lead_in(conn: Connection, ref: str) -> str | None:
    """A lead's id from its id or its email address, inside the caller's transaction (POST /events
    finds the lead and acts on it in one)."""
    ref = ref.strip()
    if not ref:
        return None
    if leads.exists(conn, ref):
        return ref
    if "@" not in ref:
        return None
    try:
        email = normalize_email(ref)
    except LeadError:
        return None
    return leads.id_by_email(conn, email)


def _as_cells(payload: dict[str, Any]) -> dict[str, str | None]:
    """JSON values -> CSV-like cells for `clean_row` (which also names the bad field)."""
    cells: dict[str, str | None] = {}
    for key, value in payload.items():
        if value is None:
            cells[key] = None
        elif isinstance(value, bool):
            cells[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            cells[key] = str(value)
        else:
            raise IntakeError(f"field {key!r} must be a string, a number or true/false")
    return cells


def next_owner(conn: Connection, settings: Settings) -> str:
    """The sender after the one the rotation picked last (the first sender to begin with)."""
    ids = [s.id for s in settings.senders]
    previous = (history.last_detail(conn, HistoryKind.OWNER_ASSIGNED) or {}).get("owner")
    return ids[(ids.index(previous) + 1) % len(ids)] if previous in ids else ids[0]


def take_lead(app: App, payload: dict[str, Any]) -> Intake:
    """Create or update a lead from a JSON object (CSV column names), assign it, enroll it."""
    settings = app.settings
    if not settings.senders:
        raise IntakeError("config.yaml has no senders: leads need an owner")
    body = dict(payload)
    requested = body.pop("sequence", None)
    if requested is not None and not isinstance(requested, str):
        raise IntakeError("sequence must be a sequence id")
    sequence = requested or settings.inbound_sequence
    if sequence:
        try:
            app.catalog.get(sequence)
        except KeyError as exc:
            raise IntakeError(str(exc.args[0])) from exc
    try:
        values = clean_row(_as_cells(body), settings)
    except LeadError as exc:
        raise IntakeError(str(exc)) from exc
    custom = values.pop("fields", {})
    now = app.clock.now()
    with app.engine.begin() as conn:
        leads.take_rotation_turn(conn)
        lead_id, created, owner = _save(conn, settings, values, custom, now)
        result = Intake(lead_id, owner, created, None, None)
        if not sequence:
            result.refused = "no sequence named in the request and no inbound_sequence in config.yaml"
            return result
        try:
            with enrolling.savepoint(conn):
                enrolled, refused = enroll_in(conn, app, sequence, [lead_id], now, "inbound lead")
        except Conflict:  # a concurrent enrollment won the race for this lead: the lead stays saved
            enrolled, refused = [], [{"reason": f"lead {lead_id} was enrolled elsewhere meanwhile"}]
        if enrolled:
            first = enrolled[0]
            result.enrolled = {
                "sequence": sequence,
                "next_step": first["next_step"],
                "next_due_at": first["next_due_at"],
            }
        else:
            result.refused = refused[0]["reason"]
    return result


def _save(
    conn: Connection, settings: Settings, values: dict[str, Any], custom: dict[str, Any], now: datetime
) -> tuple[str, bool, str | None]:
    """Insert or update (matched by id, then email); returns (lead id, created, owner).

    A new lead's custom fields carry `source: inbound` unless the request says otherwise.
    """
    email = values.get("email")
    matches = {lead.id: lead for lead in leads.matching(conn, [values["id"]], [email] if email else [])}
    existing = matches.get(values["id"])
    holder = next((lead for lead in matches.values() if email and lead.email == email), None)
    if holder is not None and existing is not None and holder.id != existing.id:
        raise IntakeError(f"email {email} already belongs to lead {holder.id}")
    existing = existing or holder
    if existing is not None:
        lead_id = existing.id
        owner = values.get("owner") or existing.owner
        changes = {**values, "fields": {**(existing.fields or {}), **custom}, "updated_at": now}
        changes.pop("id")
        rotated = not owner
        if rotated:
            owner = changes["owner"] = next_owner(conn, settings)
        if email and email != existing.email:
            changes["email_invalid"] = False
        leads.change(conn, lead_id, changes)
        if rotated:
            _assigned(conn, lead_id, owner, now)
        history.add(conn, lead_id, now, HistoryKind.UPDATED, {"source": "inbound"}, "inbound lead")
        return lead_id, False, owner
    if "email" not in values and "phone" not in values:
        raise IntakeError("a new lead needs an email or a phone")
    lead_id = values["id"]
    given = values.get("owner")
    owner = given or next_owner(conn, settings)
    leads.add_many(conn, [new_lead({**values, "fields": {"source": "inbound", **custom}}, owner, now)])
    history.add(conn, lead_id, now, HistoryKind.CREATED, {"source": "inbound", "owner": owner}, "inbound lead")
    if not given:
        _assigned(conn, lead_id, owner, now)
    return lead_id, True, owner


def _assigned(conn: Connection, lead_id: str, owner: str | None, now: datetime) -> None:
    """Remember the rotation's pick (the next request starts after it)."""
    detail = {"owner": owner, "rotation": "inbound"}
    history.add(conn, lead_id, now, HistoryKind.OWNER_ASSIGNED, detail, "round-robin")
