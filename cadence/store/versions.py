"""Published sequence versions: what enrollments follow, whatever the file says today.

Each enrollment points at a `sequenceversion` row holding the full spec and the
text of its templates, so an edited file never changes an enrolled lead's plan or
messages behind anyone's back: `cadence plan` shows what an edit would do and
`cadence apply` publishes it. The published version of a sequence is its newest
row; a row marked `retired` records that the file was deleted (live enrollments
finish on their version, nobody new enrolls).

A sequence that has never been published is published from its file the first
time anything enrolls into it, so a new file works without a ceremony.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, func, select

from cadence.spec.model import Sequence
from cadence.store.rows import VersionRow
from cadence.store.tables import VersionT

if TYPE_CHECKING:  # annotations only: `cadence tasks` and `status` never load the template machinery
    from cadence.spec.load import Catalog, LoadedSequence

V = VersionT.c
_SPEC = select(V.spec, V.version, V.templates).where(V.id == bindparam("version_id"))


class NotPublishedError(KeyError):
    """A sequence that cannot be enrolled into (unknown, broken and never published, or retired)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not published"


@dataclass(frozen=True)
class Published:
    """The version enrollments into a sequence follow now."""

    id: int
    sequence_id: str
    version: int
    content_hash: str
    spec: Sequence
    retired: bool = False


def latest(conn: Connection, sequence_id: str) -> VersionRow | None:
    """The newest version row of a sequence (retired or not), or None if it was never published."""
    row = conn.execute(select(*V).where(V.sequence_id == sequence_id).order_by(V.version.desc()).limit(1)).first()
    return VersionRow._make(row) if row is not None else None


def published(conn: Connection, sequence_ids: Iterable[str] | None = None) -> dict[str, VersionRow]:
    """sequence id -> its newest version row (retired ones included), for all or some sequences."""
    newest = select(V.sequence_id, func.max(V.version).label("version")).group_by(V.sequence_id)
    if sequence_ids is not None:
        newest = newest.where(V.sequence_id.in_(list(sequence_ids)))
    sub = newest.subquery()
    rows = conn.execute(select(*V).join(sub, (V.sequence_id == sub.c.sequence_id) & (V.version == sub.c.version))).all()
    return {row.sequence_id: VersionRow._make(row) for row in rows}


def _insert(conn: Connection, sequence_id: str, values: dict[str, Any]) -> tuple[int, int]:
    number = (conn.execute(select(func.max(V.version)).where(V.sequence_id == sequence_id)).scalar() or 0) + 1
    row_id: int = conn.execute(
        VersionT.insert().values(sequence_id=sequence_id, version=number, **values).returning(V.id)
    ).scalar_one()
    return row_id, number


def publish(conn: Connection, loaded: LoadedSequence, now: datetime) -> tuple[int, int]:
    """(version row id, version number) of the file as loaded: the published one if equal, else a new one."""
    current = latest(conn, loaded.spec.id)
    if current is not None and not current.retired and current.content_hash == loaded.content_hash:
        return current.id, current.version
    return _insert(
        conn,
        loaded.spec.id,
        {
            "content_hash": loaded.content_hash,
            "spec": loaded.spec.model_dump(mode="json"),
            "template_hashes": loaded.template_hashes,
            "templates": loaded.templates,
            "path": loaded.path,
            "published_at": now,
            "retired": False,
        },
    )


def retire(conn: Connection, row: VersionRow, now: datetime) -> tuple[int, int]:
    """Record that a published sequence's file is gone (its spec kept for the enrollments still on it)."""
    return _insert(
        conn,
        row.sequence_id,
        {
            "content_hash": row.content_hash,
            "spec": row.spec,
            "template_hashes": row.template_hashes,
            "templates": row.templates,
            "path": row.path,
            "published_at": now,
            "retired": True,
        },
    )


def for_enrollment(
    conn: Connection, catalog: Catalog, sequence_id: str, now: datetime, *, publish_now: bool = True
) -> Published:
    """The version a new enrollment into `sequence_id` follows (publishing a never-published file).

    With `publish_now=False` a never-published file is not written yet: the result has id 0
    and version 1, and `publish_first` publishes it once an enrollment really goes in, so a
    refused enrollment publishes nothing.
    """
    row = latest(conn, sequence_id)
    if row is None:
        loaded = catalog.get(sequence_id)  # KeyError with the reason when the file is unknown or broken
        if not publish_now:
            return Published(0, sequence_id, 1, loaded.content_hash, loaded.spec)
        version_id, number = publish(conn, loaded, now)
        return Published(version_id, sequence_id, number, loaded.content_hash, loaded.spec)
    if row.retired:
        raise NotPublishedError(f"sequence {sequence_id!r} was deleted (retired in version {row.version})")
    return Published(row.id, sequence_id, row.version, row.content_hash, Sequence.model_validate(row.spec))


class SpecCache:
    """Version id -> Sequence (and its templates), loaded once per process (versions never change)."""

    def __init__(self) -> None:
        self._specs: dict[int, tuple[Sequence, int]] = {}
        self._templates: dict[int, dict[str, str]] = {}

    def get(self, conn: Connection, version_id: int) -> tuple[Sequence, int]:
        if version_id not in self._specs:
            row = conn.execute(_SPEC, {"version_id": version_id}).one()
            self._specs[version_id] = (Sequence.model_validate(row.spec), row.version)
            self._templates[version_id] = dict(row.templates or {})
        return self._specs[version_id]

    def templates(self, conn: Connection, version_id: int) -> dict[str, str]:
        self.get(conn, version_id)
        return self._templates[version_id]
