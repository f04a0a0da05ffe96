"""What was read from the inbox, for `cadence inbox list` / `unmatched`, the report and the web."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cadence.store import inbound

if TYPE_CHECKING:
    from cadence.app import App


@dataclass(frozen=True)
class MessageRead:
    read_at: datetime
    message_id: str
    source: str
    sender: str | None
    subject: str | None
    kind: str
    classified_as: str
    lead: str | None
    touch: int | None
    action: str | None
    until: datetime | None
    reason: str
    text: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "read_at": self.read_at.isoformat(),
            "message_id": self.message_id,
            "source": self.source,
            "from": self.sender,
            "subject": self.subject,
            "kind": self.kind,
            "classified_as": self.classified_as,
            "lead": self.lead,
            "touch": self.touch,
            "action": self.action,
            "until": self.until.isoformat() if self.until else None,
            "reason": self.reason,
            "text": self.text,
        }


def _fields(r: inbound.InboundRow) -> tuple[Any, ...]:
    return (r.read_at, r.message_id, r.source, r.sender, r.subject, r.kind, r.classified_as, r.lead_id, r.touch_id,
            r.action, r.until, r.reason, r.text)  # fmt: skip


def messages_read(app: App, *, kinds: list[str], since: datetime | None, limit: int) -> tuple[list[MessageRead], int]:
    """Newest first, at most `limit`, and how many there are in all."""
    with app.engine.connect() as conn:
        rows = inbound.listing(conn, kinds=kinds, since=since, limit=limit + 1)
        total = len(rows) if len(rows) <= limit else inbound.count(conn, kinds=kinds, since=since)
    shown = [MessageRead(*_fields(r)) for r in rows[:limit]]
    return shown, total
