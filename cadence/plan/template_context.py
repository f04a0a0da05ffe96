"""What a template sees: the lead, its owner, the sequence and the step.

Blank lead values are left out on purpose, so strict rendering refuses a message
that would otherwise read "Hi ,". Custom CSV columns are reachable as
`lead.<column>` (standard fields win on a name clash) and as `lead.fields.<column>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cadence.config import Sender
from cadence.plan.render import clean_context
from cadence.spec.model import Sequence, Step

LEAD_KEYS = (
    "id", "email", "phone", "first_name", "last_name", "company", "title",
    "owner", "timezone", "country", "score", "stage",
)  # fmt: skip


def lead_values(lead: Any) -> dict[str, Any]:
    """A lead row (ORM object, Row or mapping) as plain values."""
    get = lead.get if isinstance(lead, Mapping) else lambda k, d=None: getattr(lead, k, d)
    values = {k: get(k) for k in LEAD_KEYS}
    fields = get("fields") or {}
    return {**fields, **{k: v for k, v in values.items() if v is not None}, "fields": dict(fields)}


def template_context(
    lead: Any,
    sender: Sender | None,
    sequence: Sequence,
    step: Step,
    extras: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    lead_map = lead_values(lead)
    name = lead_map.get("first_name") or ""
    ctx: dict[str, Any] = {
        "lead": {**lead_map, "full_name": " ".join(filter(None, [name, lead_map.get("last_name")])) or None},
        "sender": None
        if sender is None
        else {
            "id": sender.id,
            "name": sender.name,
            "first_name": sender.name.split()[0],
            "email": sender.email,
            "phone": sender.phone,
        },
        "sequence": {"id": sequence.id, "name": sequence.name},
        "step": {"id": step.id, "day": step.day, "channel": step.channel},
        **(extras or {}),
    }
    ctx["owner"] = ctx["sender"]
    return clean_context(ctx)
