"""Handing leads to another rep (`cadence leads assign`): the lead, its open tasks and its story move together.

The new owner must be a sender in config.yaml. Each lead changes hands by compare-and-set
on its current owner, so two people reassigning the same lead at once cannot both record a
change; its open tasks (calls and manual steps waiting for a rep) go to the new owner, so
they show in that rep's `cadence tasks`; and the lead's history records `{"owner": [old, new]}`.
A lead that is not in the store is refused by name and the others are still assigned,
all in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cadence.names import HistoryKind
from cadence.store import history, leads

if TYPE_CHECKING:
    from cadence.app import App

ASSIGN_CAUSE = "leads assign"


class UnknownOwner(ValueError):
    """The owner named is not a sender in config.yaml; nothing was changed."""


@dataclass
class Assignment:
    owner: str
    assigned: list[dict[str, Any]] = field(default_factory=list)  # {"lead", "from", "tasks_moved"}
    unchanged: list[str] = field(default_factory=list)  # already the owner's
    refused: list[dict[str, str]] = field(default_factory=list)  # {"lead", "reason"}

    def as_json(self) -> dict[str, Any]:
        return {"owner": self.owner, "assigned": self.assigned, "unchanged": self.unchanged, "refused": self.refused}


def assign_owner(app: App, lead_ids: list[str], owner: str) -> Assignment:
    """Give these leads (and their open tasks) to `owner`; unknown leads are refused, the rest assigned."""
    known = [s.id for s in app.settings.senders]
    if owner not in known:
        raise UnknownOwner(f"owner {owner!r} is not a sender in config.yaml (known: {', '.join(sorted(known))})")
    result = Assignment(owner)
    now = app.clock.now()
    wanted = list(dict.fromkeys(lead_ids))
    with app.engine.begin() as conn:
        stored = leads.by_ids(conn, wanted)
        for lead_id in wanted:
            lead = stored.get(lead_id)
            if lead is None:
                result.refused.append({"lead": lead_id, "reason": f"no lead with id {lead_id!r}"})
                continue
            if lead.owner == owner:
                leads.move_open_tasks(conn, lead_id, owner)  # a task left with someone else still comes along
                result.unchanged.append(lead_id)
                continue
            if not leads.reassign(conn, lead_id, lead.owner, owner, now):
                result.refused.append({"lead": lead_id, "reason": "its owner was changed meanwhile; try again"})
                continue
            moved = leads.move_open_tasks(conn, lead_id, owner)
            history.add(conn, lead_id, now, HistoryKind.UPDATED, {"owner": [lead.owner, owner]}, ASSIGN_CAUSE)
            result.assigned.append({"lead": lead_id, "from": lead.owner, "tasks_moved": moved})
    return result
