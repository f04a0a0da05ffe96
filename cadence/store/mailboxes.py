"""Where each mailbox folder was read up to, and which worker reads a mailbox now.

The cursor moves only past messages that were recorded, and only forward while the folder's
UIDVALIDITY is unchanged; a new UIDVALIDITY (the server renumbered its messages) starts the
folder again from the beginning, which is safe because every message is recorded once by its
Message-ID. The lease is one row per mailbox, taken by compare-and-set: a worker takes it when
nobody holds it, when it holds it already, or when the holder's lease has run out (it died).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from cadence.store.tables import MailboxCursorT, MailboxLeaseT

C = MailboxCursorT.c
L = MailboxLeaseT.c


def _dialect(conn: Connection):  # type: ignore[no-untyped-def]
    return postgresql if conn.dialect.name == "postgresql" else sqlite


def cursor(conn: Connection, mailbox: str, folder: str) -> tuple[int, int] | None:
    """(UIDVALIDITY, last UID recorded) of a folder, or None when it was never read."""
    row = conn.execute(select(C.uidvalidity, C.last_uid).where(C.mailbox == mailbox, C.folder == folder)).first()
    return (int(row[0]), int(row[1])) if row is not None else None


def _advance(dialect: Any) -> Any:
    insert = dialect.insert(MailboxCursorT)
    excluded = insert.excluded
    return insert.on_conflict_do_update(
        index_elements=["mailbox", "folder"],
        set_={"uidvalidity": excluded.uidvalidity, "last_uid": excluded.last_uid, "updated_at": excluded.updated_at},
        where=or_(C.uidvalidity != excluded.uidvalidity, C.last_uid < excluded.last_uid),
    )


_ADVANCE = {"postgresql": _advance(postgresql), "sqlite": _advance(sqlite)}  # built once: it runs per message


def advance(conn: Connection, mailbox: str, folder: str, uidvalidity: int, last_uid: int, now: datetime) -> None:
    """Record that a folder was read up to `last_uid`; never moves back within one UIDVALIDITY."""
    params = {"mailbox": mailbox, "folder": folder, "uidvalidity": uidvalidity, "last_uid": last_uid, "updated_at": now}
    conn.execute(_ADVANCE[conn.dialect.name], params)


def take_lease(conn: Connection, mailbox: str, holder: str, now: datetime, until: datetime) -> bool:
    """Hold `mailbox` until `until`; False when another worker holds a lease that has not run out."""
    insert = _dialect(conn).insert(MailboxLeaseT).values(mailbox=mailbox, holder=holder, expires_at=until)
    statement = insert.on_conflict_do_update(
        index_elements=["mailbox"],
        set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at},
        where=or_(L.holder == holder, L.expires_at < now),
    ).returning(L.holder)
    return conn.execute(statement).scalar() == holder


def release_lease(conn: Connection, mailbox: str, holder: str) -> None:
    conn.execute(delete(MailboxLeaseT).where(L.mailbox == mailbox, L.holder == holder))


def holder_of(conn: Connection, mailbox: str, now: datetime) -> str | None:
    row = conn.execute(select(L.holder).where(L.mailbox == mailbox, L.expires_at >= now)).first()
    return row[0] if row is not None else None
