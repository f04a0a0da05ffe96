"""Where the database's schema stands against this release, and the explicit upgrade.

In production the schema moves once per release, by `cadence db upgrade`, and the workers
then restart one by one; a `cadence run` that finds the schema behind head refuses to start
(unless told `--migrate`) rather than run new code on an old schema, or migrate under the
feet of workers still running the old release.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cadence.store.db import current_revision, head_revision, upgrade

if TYPE_CHECKING:
    from cadence.app import App


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # None: no schema yet (a new database)
    head: str

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        if self.at_head:
            return f"schema at {self.head} (head: this release's)"
        found = self.current or "none (a new database)"
        return f"schema at {found}; this release needs {self.head}"

    def as_json(self) -> dict[str, Any]:
        return {"current": self.current, "head": self.head, "at_head": self.at_head}


def schema_state(app: App) -> SchemaState:
    return SchemaState(current_revision(app.engine), head_revision())


def upgrade_schema(app: App) -> tuple[SchemaState, SchemaState]:
    """Run the migrations to head (under PostgreSQL's advisory lock, so concurrent upgrades queue)."""
    before = schema_state(app)
    if not before.at_head:
        upgrade(app.engine)
    return before, schema_state(app)
