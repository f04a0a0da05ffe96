"""Lead validation and CSV import.

Every row is checked on its own (email syntax, phone, time zone, country, known
owner); a bad row is reported with its row number and imports nothing, good rows
are created or update the lead matched by id or email. Empty cells never erase
what the store already knows. Columns that are not standard fields become custom
fields, usable in templates as `lead.<column>`.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from cadence.names import Stage
from cadence.plan import timing
from cadence.store import leads
from cadence.store.rows import LeadRow

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from cadence.config import Settings

STANDARD = (
    "id", "email", "phone", "first_name", "last_name", "company", "title",
    "owner", "timezone", "country", "sms_consent", "score",
)  # fmt: skip
_TRUE = {"1", "true", "yes", "y", "t", "x"}
_FALSE = {"0", "false", "no", "n", "f", ""}
CHUNK = 1000


class LeadError(ValueError):
    """A lead value that cannot be used; the message names the field."""


@dataclass
class ImportReport:
    imported: int = 0
    updated: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"imported": self.imported, "updated": self.updated, "rejected": self.rejected}


def normalize_email(value: str) -> str:
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise LeadError(f"email {value!r} is invalid: {exc}") from exc


def normalize_phone(value: str, region: str | None) -> str:
    try:
        number = phonenumbers.parse(value.strip(), region)
    except phonenumbers.NumberParseException as exc:
        raise LeadError(f"phone {value!r} cannot be read: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise LeadError(f"phone {value!r} is not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _country(value: str) -> str:
    code = value.strip().upper()
    if code.partition("-")[0] not in phonenumbers.SUPPORTED_REGIONS:
        raise LeadError(f"country {value!r} is not an ISO 3166 two-letter code")
    return code


def _bool(value: str, name: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise LeadError(f"{name} {value!r} must be yes/no, true/false or 1/0")


def owner_for(lead_id: str, settings: Settings) -> str:
    """A stable owner for a lead without one: the same lead always lands with the same SDR."""
    digest = hashlib.blake2b(lead_id.encode(), digest_size=4).digest()
    return settings.senders[int.from_bytes(digest, "big") % len(settings.senders)].id


def clean_row(raw: dict[str, str | None], settings: Settings) -> dict[str, Any]:
    """Validate one CSV row; returns the lead's values (blank cells left out) or raises LeadError."""
    row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
    if None in raw:
        raise LeadError("row has more cells than the header")
    out: dict[str, Any] = {}
    country = _country(row["country"]) if row.get("country") else None
    if country:
        out["country"] = country
    if row.get("email"):
        out["email"] = normalize_email(row["email"])
    if row.get("phone"):
        out["phone"] = normalize_phone(row["phone"], (country or settings.country).partition("-")[0])
    lead_id = row.get("id") or out.get("email")
    if not lead_id:
        raise LeadError("row needs an id or an email")
    if len(lead_id) > 200:
        raise LeadError("id is longer than 200 characters")
    out["id"] = lead_id
    if row.get("timezone"):
        try:
            timing.zone(row["timezone"])
        except ValueError as exc:
            raise LeadError(str(exc)) from exc
        out["timezone"] = row["timezone"]
    if row.get("owner"):
        known = {s.id for s in settings.senders}
        if row["owner"] not in known:
            raise LeadError(
                f"owner {row['owner']!r} is not a sender in config.yaml (known: {', '.join(sorted(known))})"
            )
        out["owner"] = row["owner"]
    if row.get("sms_consent"):
        out["sms_consent"] = _bool(row["sms_consent"], "sms_consent")
    if row.get("score"):
        try:
            out["score"] = float(row["score"])
        except ValueError as exc:
            raise LeadError(f"score {row['score']!r} is not a number") from exc
    for name in ("first_name", "last_name", "company", "title"):
        if row.get(name):
            out[name] = row[name]
    custom = {k: v for k, v in row.items() if k not in STANDARD and k and v}
    if custom:
        out["fields"] = custom
    return out


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str | None]]]:
    """(row number as a spreadsheet shows it, cells); the header is row 1.

    Rows are counted as records, not file lines: a quoted cell spanning several
    lines is still one row. A row whose cells are all blank (a blank line, or the
    ",,,," spreadsheets export) is counted and skipped. Cells beyond the header
    go under the key None, as with `csv.DictReader`.
    """
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            return
        for number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            raw: dict[Any, Any] = dict.fromkeys(header)
            raw.update(zip(header, cells, strict=False))
            if len(cells) > len(header):
                raw[None] = cells[len(header) :]
            yield number, raw


def count_rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return max(0, sum(1 for _ in csv.reader(fh)) - 1)


def _chunks(
    rows: Iterable[tuple[int, dict[str, str | None]]], size: int
) -> Iterator[list[tuple[int, dict[str, str | None]]]]:
    chunk: list[tuple[int, dict[str, str | None]]] = []
    for item in rows:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def import_leads(
    engine: Engine,
    rows: Iterable[tuple[int, dict[str, str | None]]],
    settings: Settings,
    now: datetime,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Create or update leads from CSV rows; one transaction per chunk of rows."""
    if not settings.senders:
        raise LeadError("config.yaml has no senders: leads need an owner")
    report = ImportReport()
    for chunk in _chunks(rows, CHUNK):
        cleaned: list[tuple[int, dict[str, Any]]] = []
        for row_number, raw in chunk:
            try:
                cleaned.append((row_number, clean_row(raw, settings)))
            except LeadError as exc:
                report.rejected.append({"row": row_number, "error": str(exc)})
        with engine.begin() as conn:
            _upsert_chunk(conn, cleaned, settings, now, report)
        if progress:
            progress(len(chunk))
    report.rejected.sort(key=lambda r: r["row"])
    return report


def new_lead(values: dict[str, Any], owner: str, now: datetime) -> LeadRow:
    """A lead to insert: `values` (as `clean_row` gives them) over the blanks, in stage `new`, with no flag set."""
    blank: dict[str, Any] = {
        "id": values["id"], "email": None, "phone": None, "first_name": None, "last_name": None, "company": None,
        "title": None, "timezone": None, "country": None, "score": None, "sms_consent": False, "stage": Stage.NEW,
        "do_not_contact": False, "email_invalid": False, "phone_invalid": False, "fields": {},
        "created_at": now, "updated_at": now, "region": None,
    }  # fmt: skip
    return LeadRow(**{**blank, **values, "owner": owner})


def _upsert_chunk(
    conn: Connection, cleaned: list[tuple[int, dict[str, Any]]], settings: Settings, now: datetime, report: ImportReport
) -> None:
    ids = [v["id"] for _, v in cleaned]
    emails = [v["email"] for _, v in cleaned if "email" in v]
    existing: dict[str, dict[str, Any]] = {}
    by_email: dict[str, str] = {}
    if cleaned:
        for lead in leads.matching(conn, ids, emails):
            existing[lead.id] = {"email": lead.email, "fields": lead.fields or {}}
            if lead.email:
                by_email[lead.email] = lead.id
    inserts: dict[str, LeadRow] = {}
    updates: list[dict[str, Any]] = []
    for row_number, values in cleaned:
        lead_id = values["id"]
        email = values.get("email")
        known = lead_id in existing or lead_id in inserts
        holder = by_email.get(email) if email else None
        if holder and holder != lead_id:
            if known:
                report.rejected.append({"row": row_number, "error": f"email {email} already belongs to lead {holder}"})
                continue
            lead_id = holder  # matched by email: this row updates that lead
            values = {**values, "id": lead_id}
        if lead_id in existing:
            fields = {**existing[lead_id]["fields"], **values.get("fields", {})}
            updates.append({**values, "fields": fields, "updated_at": now})
            existing[lead_id]["fields"] = fields
            report.updated += 1
        elif lead_id in inserts:
            merged = inserts[lead_id]
            inserts[lead_id] = merged._replace(
                **{k: v for k, v in values.items() if k != "fields"},
                fields={**merged.fields, **values.get("fields", {})},
            )
            report.updated += 1
        elif "email" not in values and "phone" not in values:
            # an update may leave both blank (blank keeps what is stored); a new lead needs a way to reach it
            report.rejected.append({"row": row_number, "error": "row needs an email or a phone"})
            continue
        else:
            inserts[lead_id] = new_lead(values, values.get("owner") or owner_for(lead_id, settings), now)
            report.imported += 1
        if email:
            by_email[email] = lead_id
    leads.add_many(conn, list(inserts.values()))
    for values in updates:
        lead_id = values.pop("id")
        if "email" in values and values["email"] != existing[lead_id]["email"]:
            values["email_invalid"] = False  # a new address has not bounced yet
        leads.change(conn, lead_id, values)


__all__ = [
    "ImportReport", "LeadError", "clean_row", "count_rows", "import_leads", "new_lead", "normalize_email",
    "normalize_phone", "owner_for", "read_rows",
]  # fmt: skip
