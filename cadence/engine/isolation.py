"""One lead never stops the engine: an item that fails is set aside with its reason, and the rest goes on.

Claims, records and housekeeping run optimistically as one batch; when one of them
raises, the batch is redone with each item in its own savepoint (`store.db.isolated`),
and the item that fails again is set aside here: its enrollment is paused with no
return date, so it stops coming back every pass, and the lead's history says what
failed and why (`cadence status` and `cadence history` show it; `cadence resume`
picks it up again once the cause is fixed).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from cadence.names import HistoryKind
from cadence.store import enrollments, history

if TYPE_CHECKING:
    from sqlalchemy import Connection

log = logging.getLogger("cadence.engine")


def describe(exc: BaseException) -> str:
    """An error as a rep can read it in a lead's history: its kind and its message, on one line."""
    text = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {text}"[:500]


def set_aside(
    conn: Connection, lead_id: str, enrollment_id: int | None, now: datetime, what: str, exc: BaseException
) -> str:
    """Pause the enrollment until someone looks, and record why; returns the reason as recorded."""
    reason = f"{what} failed: {describe(exc)}"
    log.warning("lead %s (enrollment %s): %s; set aside until resumed by hand", lead_id, enrollment_id, reason)
    paused = enrollment_id is not None and enrollments.pause(conn, enrollment_id, None)
    detail = {"action": "needs attention", "reason": reason, "enrollment": enrollment_id, "paused": paused}
    history.add(conn, lead_id, now, HistoryKind.ACTION, detail, "engine")
    return reason
