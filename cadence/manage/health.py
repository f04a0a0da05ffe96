"""Is this process fit to take work? What `GET /readyz` answers a load balancer or an orchestrator.

Ready means the database answers and its schema is at this release's head: a `cadence serve`
started before `cadence db upgrade` ran, or one whose database went away, says so (503, with
the reason) instead of answering requests it would fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cadence.manage.schema import schema_state
from cadence.store.db import head_revision

if TYPE_CHECKING:
    from cadence.app import App


@dataclass(frozen=True)
class Readiness:
    ready: bool
    database: str  # "ok", or why it could not be reached
    schema: str | None  # the revision the database is at
    head: str

    def as_json(self) -> dict[str, Any]:
        return {"ready": self.ready, "database": self.database, "schema": self.schema, "head": self.head}


def readiness(app: App) -> Readiness:
    try:
        found = schema_state(app)
    except Exception as exc:  # any failure to reach the store is the answer, not an error of ours
        reason = f"unreachable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return Readiness(False, reason, None, head_revision())
    if not found.at_head:
        return Readiness(False, f"{found.describe()}: run the migrations", found.current, found.head)
    return Readiness(True, "ok", found.current, found.head)
