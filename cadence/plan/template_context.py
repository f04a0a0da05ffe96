"""What a template sees: the lead, its owner, the sequence and the step.

Blank lead values are left out on purpose, so strict rendering refuses a message
that would otherwise read "Hi ,". Custom CSV columns are reachable as
`lead.<column>` (standard fields win on a name clash) and as `lead.fields.<column>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from cadence.config import Sender
from cadence.plan.render import clean_context
from cadence.spec.model import Sequence, Step

LEAD_KEYS = (
    "id", "email", "phone", "first_name", "last_name", "company", "title",
    "owner", "timezone", "country", "score", "stage",
)  # fmt: skip


class LeadFields(Protocol):
    """What a template may read of a lead (a `LeadRow` is one): the standard fields and the custom ones."""

    @property
    def id(self) -> str: ...
    @property
    def email(self) -> str | None: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def first_name(self) -> str | None: ...
    @property
    def last_name(self) -> str | None: ...
    @property
    def company(self) -> str | None: ...
    @property
    def title(self) -> str | None: ...
    @property
    def owner(self) -> str | None: ...
    @property
    def timezone(self) -> str | None: ...
    @property
    def country(self) -> str | None: ...
    @property
    def score(self) -> float | None: ...
    @property
    def stage(self) -> str: ...
    @property
    def fields(self) -> dict[str, Any]: ...


def lead_values(lead: LeadFields) -> dict[str, Any]:
    """A lead as plain values: its custom fields, then its standard fields over them."""
    values = {k: getattr(lead, k) for k in LEAD_KEYS}
    fields = lead.fields or {}
    return {**fields, **{k: v for k, v in values.items() if v is not None}, "fields": dict(fields)}


def template_context(
    lead: LeadFields,
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
