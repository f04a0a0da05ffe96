"""Lead import: every good row in, every bad row reported with all its problems, or nothing at all.

Good rows create a lead or update the one matched by id or email (empty cells never
erase what the store knows). A rejected row is reported with its spreadsheet row number
and every problem it has; the good rows still go in. Two rows of one file naming the
same lead (the same id, the same email in any case, or the same lead matched by email)
are duplicates: the first row stands and the later one is rejected, naming both rows.

The whole import is one transaction, on SQLite and PostgreSQL alike: a file that turns out
unreadable halfway (a quote never closed), an error, or `dry_run` leaves the store exactly
as it was. Rows are written in chunks of `CHUNK`, each in a savepoint; only when the
database refuses a chunk is it written again row by row, so the one row it refuses becomes
a reject with the database's reason and the others go in.

A re-import that changes a lead's owner hands its open tasks to the new owner and records
the change in the lead's history, as `cadence leads assign` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from cadence.enrollment.lead_columns import (
    STANDARD,
    CheckedRow,
    LeadError,
    check_row,
    clean_row,
    columns_of,
    new_lead,
    normalize_email,
    normalize_phone,
    owner_for,
    zone_for,
)
from cadence.enrollment.lead_csv import CsvRefused, Unreadable, count_rows, read_rows
from cadence.names import HistoryKind
from cadence.store import history, leads
from cadence.store.db import is_transient, isolated
from cadence.store.rows import LeadRow

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from cadence.config import Settings

CHUNK = 1000
IMPORT_CAUSE = "leads import"
Rows = Iterable[tuple[int, Mapping[Any, Any] | Unreadable]]


@dataclass
class ImportReport:
    imported: int = 0
    updated: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    custom_fields: list[str] = field(default_factory=list)  # the headers kept as custom fields, as written
    timezone_fallbacks: int = 0  # leads left without a time zone: config.yaml's `timezone` applies
    dry_run: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "imported": self.imported, "updated": self.updated, "rejected": self.rejected,
            "custom_fields": self.custom_fields, "timezone_fallbacks": self.timezone_fallbacks,
            "dry_run": self.dry_run,
        }  # fmt: skip


class _Update(NamedTuple):
    """One good row's changes to a stored lead (a new lead is written as its LeadRow)."""

    lead_id: str
    changes: dict[str, Any]
    owner_change: tuple[str | None, str] | None
    falls_back: bool  # the lead stays without a time zone


_Write = LeadRow | _Update


def _chunks(rows: Rows, size: int) -> Iterator[list[tuple[int, Mapping[Any, Any] | Unreadable]]]:
    chunk: list[tuple[int, Mapping[Any, Any] | Unreadable]] = []
    for item in rows:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def import_leads(
    engine: Engine,
    rows: Rows,
    settings: Settings,
    now: datetime,
    progress: Callable[[int], None] | None = None,
    *,
    dry_run: bool = False,
) -> ImportReport:
    """Create or update leads from rows (as `read_rows` gives them), in one transaction.

    With `dry_run` everything is checked and written, then rolled back: the report says what an
    import would do, database refusals included, and the store is unchanged.
    """
    if not settings.senders:
        raise LeadError("config.yaml has no senders: leads need an owner")
    batch = _Import(settings, now, ImportReport(dry_run=dry_run))
    try:
        with engine.connect() as conn, conn.begin() as transaction:
            for chunk in _chunks(rows, CHUNK):
                batch.take(conn, chunk)
                if progress:
                    progress(len(chunk))
            if dry_run:
                transaction.rollback()
    except Exception as exc:
        if is_transient(exc):  # the database went away or stayed locked: say so, not with a traceback
            raise LeadError(f"the database failed ({_reason(exc)}); nothing was imported, try again") from exc
        raise
    report = batch.report
    report.rejected.sort(key=lambda r: r["row"])
    return report


class _Import:
    """The state one import carries across its chunks: the first row naming each lead, the headers seen."""

    def __init__(self, settings: Settings, now: datetime, report: ImportReport) -> None:
        self.settings, self.now, self.report = settings, now, report
        self.first_by_lead: dict[str, int] = {}  # lead id -> the first row naming it
        self.first_by_email: dict[str, int] = {}
        self.matched_by_email: dict[int, str] = {}  # row -> the stored lead it named by an email it holds
        self.headers: tuple[Any, ...] = ()

    def reject(self, row: int, problems: list[str]) -> None:
        self.report.rejected.append({"row": row, "error": "; ".join(problems)})

    def take(self, conn: Connection, chunk: list[tuple[int, Mapping[Any, Any] | Unreadable]]) -> None:
        checked: list[CheckedRow] = []
        for number, raw in chunk:
            if isinstance(raw, Unreadable):
                self.reject(number, [raw.reason])
                continue
            self._note_headers(raw)
            c = check_row(raw, self.settings)
            c.row = number
            checked.append(c)
        if not checked:
            return
        ids = [c.lead_id for c in checked if c.lead_id]
        emails = [c.email for c in checked if c.email]
        existing = {lead.id: lead for lead in leads.matching(conn, ids, emails)}
        by_email = {lead.email: lead.id for lead in existing.values() if lead.email}
        writes: list[_Write] = []
        rows: list[int] = []
        for c in checked:
            write = self._plan(c, existing, by_email)
            if write is not None:
                writes.append(write)
                rows.append(c.row)
        self._write(conn, writes, rows)

    def _note_headers(self, raw: Mapping[Any, Any]) -> None:
        keys = tuple(raw)
        if keys != self.headers:
            self.headers = keys
            known = set(self.report.custom_fields)
            self.report.custom_fields += [h for h, _ in columns_of(keys).custom if h not in known]

    def _duplicates(self, number: int, c: CheckedRow, holder: str | None) -> list[str]:
        """Remember the first row naming each id, email and lead; a later row naming one is a duplicate.

        A row matched to a stored lead by its email names that lead too, so a later row with its id
        (or its email) is a duplicate of it. (Plain strings and ints only: 100,000 rows' worth of
        tuples would keep the garbage collector busy for the whole import.)
        """
        firsts: list[tuple[int, str, str]] = []
        if c.lead_id:
            first = self.first_by_lead.setdefault(c.lead_id, number)
            if first != number:
                firsts.append((first, "id" if c.id_given else "email", c.lead_id))
        if c.email:
            first = self.first_by_email.setdefault(c.email, number)
            if first != number:
                firsts.append((first, "email", c.email))
        if holder:
            first = self.first_by_lead.setdefault(holder, number)
            if first == number:
                self.matched_by_email[number] = holder
            else:
                firsts.append((first, "lead", holder))
        found: dict[int, str] = {}
        for row, named, value in firsts:
            if row not in found:
                if named == "lead" or self.matched_by_email.get(row) == value:
                    found[row] = f"updates lead {value}, as does row {row} (the first row stands)"
                else:
                    found[row] = f"same {named} {value} as row {row} (the first row stands)"
        return list(found.values())

    def _plan(self, c: CheckedRow, existing: dict[str, LeadRow], by_email: dict[str, str]) -> _Write | None:
        number, values, problems = c.row, c.values, list(c.problems)
        lead_id = values.get("id") or c.lead_id or ""
        email = values.get("email")
        holder = by_email.get(email) if email else None
        if holder == lead_id:
            holder = None
        elif holder and lead_id in existing:
            problems.append(f"email {email} already belongs to lead {holder}")
            holder = None
        elif holder:
            lead_id = values["id"] = holder  # matched by email: this row updates that lead
        problems += self._duplicates(number, c, holder)
        stored = existing.get(lead_id)
        if stored is None and c.lead_id and not c.reachable:
            # an update may leave both blank (blank keeps what is stored); a new lead needs a way to reach it
            problems.append("row needs an email or a phone")
        if problems:
            self.reject(number, problems)
            return None
        if email:
            by_email[email] = lead_id
        if stored is None:
            return new_lead(values, values.get("owner") or owner_for(lead_id, self.settings), self.now)
        return self._update(stored, values)

    def _update(self, stored: LeadRow, values: dict[str, Any]) -> _Update:
        changes = {k: v for k, v in values.items() if k != "id"}
        changes["fields"] = {**(stored.fields or {}), **values.get("fields", {})}
        changes["updated_at"] = self.now
        if "email" in values and values["email"] != stored.email:
            changes["email_invalid"] = False  # a new address has not bounced yet
        country = values.get("country")
        if country and "region" not in values and stored.region and not stored.region.startswith(f"{country}-"):
            changes["region"] = None  # a region of the country the lead left
        falls_back = False
        if "timezone" not in values and stored.timezone is None:
            inferred = zone_for(values.get("phone") or stored.phone, country or stored.country)
            if inferred:
                changes["timezone"] = inferred
            falls_back = inferred is None
        owner = values.get("owner")
        owner_change = (stored.owner, owner) if owner and owner != stored.owner else None
        return _Update(stored.id, changes, owner_change, falls_back)

    def _apply(self, conn: Connection, writes: list[_Write]) -> None:
        leads.add_many(conn, [w for w in writes if isinstance(w, LeadRow)])
        for w in writes:
            if isinstance(w, LeadRow):
                continue
            leads.change(conn, w.lead_id, w.changes)
            if w.owner_change is not None:
                old, new = w.owner_change
                leads.move_open_tasks(conn, w.lead_id, new)
                history.add(conn, w.lead_id, self.now, HistoryKind.UPDATED, {"owner": [old, new]}, IMPORT_CAUSE)

    def _write(self, conn: Connection, writes: list[_Write], rows: list[int]) -> None:
        """The chunk in one savepoint; if the database refuses it, row by row, each refused row a reject."""
        try:
            with isolated(conn):
                self._apply(conn, writes)
        except Exception as exc:
            if is_transient(exc):
                raise
            done: list[_Write] = []
            for write, row in zip(writes, rows, strict=True):
                try:
                    with isolated(conn):
                        self._apply(conn, [write])
                except Exception as refused:
                    if is_transient(refused):
                        raise
                    self.reject(row, [f"the database refused it: {_reason(refused)}"])
                else:
                    done.append(write)
            writes = done
        for w in writes:
            if isinstance(w, LeadRow):
                self.report.imported += 1
                self.report.timezone_fallbacks += w.timezone is None
            else:
                self.report.updated += 1
                self.report.timezone_fallbacks += w.falls_back


def _reason(exc: BaseException) -> str:
    """The driver's own words (not the SQL statement SQLAlchemy wraps them in), on one line."""
    original = getattr(exc, "orig", None) or exc
    return " ".join(str(original).split())[:300] or type(original).__name__


__all__ = [
    "CHUNK", "STANDARD", "CsvRefused", "ImportReport", "LeadError", "clean_row", "count_rows", "import_leads",
    "new_lead", "normalize_email", "normalize_phone", "owner_for", "read_rows",
]  # fmt: skip
