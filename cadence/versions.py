"""Published sequence versions: what enrollments follow, whatever the file says today.

Each enrollment points at a `sequenceversion` row holding the full spec and the
hashes of its templates, so an edited file never changes an enrolled lead's
plan behind anyone's back (plan/apply is how edits reach enrolled leads).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from cadence.spec.load import LoadedSequence
from cadence.spec.model import Sequence
from cadence.store.tables import SequenceVersion

VersionTable: Any = SequenceVersion.__table__  # type: ignore[attr-defined]


def latest(conn: Connection, sequence_id: str) -> Any | None:
    return conn.execute(
        select(VersionTable)
        .where(VersionTable.c.sequence_id == sequence_id)
        .order_by(VersionTable.c.version.desc())
        .limit(1)
    ).first()


def publish(conn: Connection, loaded: LoadedSequence, now: datetime) -> tuple[int, int]:
    """(version row id, version number) for the file as loaded; publishes it if new."""
    seq_id = loaded.spec.id
    found = conn.execute(
        select(VersionTable.c.id, VersionTable.c.version).where(
            VersionTable.c.sequence_id == seq_id, VersionTable.c.content_hash == loaded.content_hash
        )
    ).first()
    if found:
        return found.id, found.version
    number = (
        conn.execute(select(func.max(VersionTable.c.version)).where(VersionTable.c.sequence_id == seq_id)).scalar() or 0
    ) + 1
    row_id = conn.execute(
        VersionTable.insert().values(
            sequence_id=seq_id,
            version=number,
            content_hash=loaded.content_hash,
            spec=loaded.spec.model_dump(mode="json"),
            template_hashes=loaded.template_hashes,
            path=loaded.path,
            published_at=now,
        )
    ).inserted_primary_key[0]
    return row_id, number


class SpecCache:
    """Version id -> Sequence, loaded once per process (versions never change)."""

    def __init__(self) -> None:
        self._specs: dict[int, tuple[Sequence, int]] = {}

    def get(self, conn: Connection, version_id: int) -> tuple[Sequence, int]:
        if version_id not in self._specs:
            row = conn.execute(
                select(VersionTable.c.spec, VersionTable.c.version).where(VersionTable.c.id == version_id)
            ).one()
            self._specs[version_id] = (Sequence.model_validate(row.spec), row.version)
        return self._specs[version_id]
