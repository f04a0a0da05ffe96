"""The leads a rep or a sales-ops person asks for, on screen (`leads list`) or as a CSV file (`leads export`).

A list is cut at a limit and says so ("showing 200 of 761; use --limit"); an export
writes every match. An exported file opens safely in a spreadsheet: a cell beginning
with = + - @ (or a tab or carriage return) gets a leading single quote, as OWASP
recommends against formula injection, and `leads import` takes that quote off again,
so a file exported, edited and imported back changes only what was edited.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cadence.enrollment.lead_columns import EXPORT_ONLY, STANDARD
from cadence.enrollment.lead_csv import FORMULA_STARTS
from cadence.store import lead_lists
from cadence.store.lead_lists import LeadFilter
from cadence.store.rows import LeadRow

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cadence.app import App

__all__ = ["LeadFilter", "LeadList", "export_leads", "list_leads", "spreadsheet_safe"]


@dataclass(frozen=True, slots=True)
class LeadList:
    leads: list[dict[str, Any]]
    total: int  # how many match, of which `leads` is the first page

    @property
    def cut_note(self) -> str | None:
        """What a person must be told when the list is not all of it."""
        if self.total <= len(self.leads):
            return None
        return f"showing {len(self.leads)} of {self.total}; use --limit"


def _as_item(lead: LeadRow, sequences: list[str]) -> dict[str, Any]:
    return {
        "id": lead.id, "name": lead.name, "email": lead.email, "phone": lead.phone, "company": lead.company,
        "title": lead.title, "owner": lead.owner, "stage": lead.stage, "timezone": lead.timezone,
        "country": lead.country, "region": lead.region, "score": lead.score, "sequences": sequences,
        "fields": lead.fields or {},
    }  # fmt: skip


def list_leads(app: App, where: LeadFilter, limit: int) -> LeadList:
    """The first `limit` matching leads in id order, each with its live sequences, and how many match."""
    if limit < 1:
        raise ValueError("--limit must be at least 1")
    with app.engine.connect() as conn:
        rows = lead_lists.page(conn, where, limit)
        live = lead_lists.live_sequences(conn, [lead.id for lead in rows])
        total = lead_lists.count(conn, where) if len(rows) == limit else len(rows)
    return LeadList([_as_item(lead, live.get(lead.id, [])) for lead in rows], total)


def spreadsheet_safe(value: object) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _cells(lead: LeadRow, sequences: list[str], custom: list[str]) -> list[str]:
    values: dict[str, Any] = lead._asdict()
    values["sms_consent"] = "yes" if lead.sms_consent else "no"
    values["score"] = "" if lead.score is None else f"{lead.score:g}"
    standard = [values[name] for name in STANDARD]
    extra = [lead.stage, " ".join(sequences)]
    fields = lead.fields or {}
    return [spreadsheet_safe(v) for v in [*standard, *extra, *(fields.get(name) for name in custom)]]


def export_leads(app: App, where: LeadFilter, path: Path) -> int:
    """Write every matching lead to `path` as UTF-8 CSV (the columns `leads import` reads, then stage,
    live sequences and custom fields); how many were written. The file is replaced only when complete."""
    partial = path.with_name(f".{path.name}.partial")
    written = 0
    with app.engine.connect() as conn:
        custom = [n for n in lead_lists.custom_field_names(conn, where) if n not in STANDARD and n not in EXPORT_ONLY]
        try:
            with partial.open("w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow([spreadsheet_safe(h) for h in [*STANDARD, *EXPORT_ONLY, *custom]])
                batch: list[LeadRow] = []
                for lead in lead_lists.every(conn, where):
                    batch.append(lead)
                    if len(batch) >= lead_lists.PAGE:
                        writer.writerows(_rows(conn, batch, custom))
                        written, batch = written + len(batch), []
                writer.writerows(_rows(conn, batch, custom))
                written += len(batch)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
    return written


def _rows(conn: Connection, batch: list[LeadRow], custom: list[str]) -> list[list[str]]:
    live = lead_lists.live_sequences(conn, [lead.id for lead in batch])
    return [_cells(lead, live.get(lead.id, []), custom) for lead in batch]
