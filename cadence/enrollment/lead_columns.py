"""What a lead's columns mean, and whether one row's values can be used.

Sales-ops files come from CRMs and spreadsheets that each spell a column their own
way, so a header is matched to a standard column case-, space- and punctuation-
insensitively ("E-mail", "Email Address", "Mobile", "Time Zone" ...); every other
column is kept as a custom field under its lower-cased name, usable in templates as
`lead.<column>` (except `stage` and `sequences`, which `leads export` writes for people
to read and an import ignores: cadence sets them). A row is checked as a whole: every problem it has is reported at
once, so one round of fixes is enough. A lead without a time zone gets the one its
phone number or its country has, when there is exactly one; otherwise it keeps none
and config.yaml's `timezone` applies.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import TZPATH

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import timezone as phone_zones
from phonenumbers.tzdata import TIMEZONE_DATA

from cadence.names import Stage
from cadence.plan import timing
from cadence.spec.values import holiday_calendar
from cadence.store.rows import LeadRow

if TYPE_CHECKING:
    from cadence.config import Settings

STANDARD = (
    "id", "email", "phone", "first_name", "last_name", "company", "title",
    "owner", "timezone", "country", "region", "sms_consent", "score",
)  # fmt: skip
# Columns `leads export` writes for people to read; cadence sets them, so an import ignores them.
EXPORT_ONLY = ("stage", "sequences")
# How CRMs and spreadsheets spell the standard columns, squashed (lower case, letters and digits only).
SPELLINGS: dict[str, tuple[str, ...]] = {
    "id": ("id", "leadid", "externalid", "contactid", "recordid"),
    "email": ("email", "emailaddress", "workemail", "businessemail"),
    "phone": (
        "phone", "phonenumber", "phoneno", "mobile", "mobilephone", "mobilenumber", "cell", "cellphone",
        "cellnumber", "telephone", "telephonenumber", "tel", "workphone", "directphone", "directdial",
    ),
    "first_name": ("firstname", "first", "givenname", "forename"),
    "last_name": ("lastname", "last", "surname", "familyname"),
    "company": ("company", "companyname", "organization", "organisation", "organizationname", "accountname"),
    "title": ("title", "jobtitle", "position", "role", "jobrole"),
    "owner": ("owner", "leadowner", "accountowner", "ownerid", "rep", "salesrep", "sdr", "assignedto"),
    "timezone": ("timezone", "tz", "tzname", "timezonename"),
    "country": ("country", "countrycode", "countryiso"),
    "region": ("region", "regioncode", "subdivision", "iso31662"),
    "sms_consent": ("smsconsent", "smsoptin", "smsoptedin", "textconsent", "textoptin", "consenttotext"),
    "score": ("score", "leadscore"),
}  # fmt: skip
_STANDARD_OF = {spelling: name for name, spellings in SPELLINGS.items() for spelling in spellings}
_EXACT = {name: name.replace("_", "") for name in STANDARD}
_TRUE = {"1", "true", "yes", "y", "t", "x"}
_FALSE = {"0", "false", "no", "n", "f", ""}
_REGION = re.compile(r"^[A-Z]{2}-[A-Z0-9]{1,3}$")
MAX_ID = 200


class LeadError(ValueError):
    """A lead value that cannot be used; the message names the field."""


def squash(header: str) -> str:
    """ "E-mail Address" -> "emailaddress": how headers are compared."""
    return "".join(ch for ch in header.lower() if ch.isalnum())


@dataclass(frozen=True, slots=True)
class Columns:
    """What each header of a file means: (header, standard column) and (header, custom field name).

    A standard column is taken by the header spelled like it ("Phone" for phone), else by the
    first header spelled like one of its aliases; a second header meaning the same column
    ("Mobile" beside "Phone") is kept as a custom field, so nothing is lost and the summary shows it.
    """

    standard: tuple[tuple[str, str], ...]
    custom: tuple[tuple[str, str], ...]
    unnamed: tuple[str, ...]  # headers that are blank: a value under one has no name to go by


@lru_cache(maxsize=64)
def columns_of(keys: tuple[str | None, ...]) -> Columns:
    """The meaning of each header (a None key, the cells beyond the header, has none)."""
    headers = [k for k in keys if k is not None]
    claims: dict[str, tuple[bool, int, str]] = {}
    for position, header in enumerate(headers):
        name = _STANDARD_OF.get(squash(header))
        if name is None:
            continue
        claim = (squash(header) != _EXACT[name], position, header)
        if name not in claims or claim < claims[name]:
            claims[name] = claim
    taken = {claim[2]: name for name, claim in claims.items()}
    standard = tuple((h, taken[h]) for h in headers if h in taken)
    custom = tuple(
        (h, h.strip().lower()) for h in headers if h not in taken and h.strip() and h.strip().lower() not in EXPORT_ONLY
    )
    unnamed = tuple(h for h in headers if not h.strip())
    return Columns(standard, custom, unnamed)


@dataclass(slots=True)
class CheckedRow:
    """One row's usable values (blank cells left out) and every problem found in it.

    `lead_id` and `email` are what the row names even when they are invalid, so that a
    second row naming the same lead is recognised as a duplicate either way.
    """

    values: dict[str, Any]
    problems: tuple[str, ...] = ()
    lead_id: str | None = None  # the id cell, else the email
    email: str | None = None
    id_given: bool = False  # the row has an id cell (its lead_id is not its email)
    reachable: bool = False  # the row has an email or a phone cell, valid or not
    row: int = 0  # its number in the file, when it comes from one


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


def _bool(value: str, name: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise LeadError(f"{name} {value!r} must be yes/no, true/false or 1/0")


def _place(country_cell: str, region_cell: str, problems: list[str]) -> tuple[str | None, str | None]:
    """(country, region) from the two cells: "US-CA" in the country column names both, and a
    region alone names its country. A region must be one whose holidays cadence knows."""
    country = None
    if country_cell:
        code = country_cell.strip().upper()
        nation, _, subdivision = code.partition("-")
        if nation not in phonenumbers.SUPPORTED_REGIONS:
            problems.append(f"country {country_cell!r} is not an ISO 3166 two-letter code")
            return None, None
        country = nation
        if subdivision:
            region_cell = region_cell or code
            if region_cell.strip().upper() != code:
                problems.append(f"country {country_cell!r} and region {region_cell!r} name different places")
                return country, None
    if not region_cell:
        return country, None
    code = region_cell.strip().upper()
    nation = code.partition("-")[0]
    if not _REGION.match(code) or nation not in phonenumbers.SUPPORTED_REGIONS:
        problems.append(f"region {region_cell!r} is not an ISO 3166-2 subdivision like US-CA or GB-SCT")
    elif country and nation != country:
        problems.append(f"region {region_cell!r} is not in country {country}")
    else:
        try:
            holiday_calendar(code)
        except ValueError:
            problems.append(f"region {region_cell!r} is not a subdivision with a known holiday calendar")
        else:
            return nation, code
    return country, None


def _has_nul(raw: Mapping[Any, Any]) -> bool:
    """A NUL byte in any cell (PostgreSQL refuses them, and no spreadsheet means one)."""
    try:
        return "\x00" in "".join(raw.values())  # every cell a string: one pass at C speed
    except TypeError:
        return any(isinstance(v, str) and "\x00" in v for k, v in raw.items() if k is not None)


def check_row(raw: Mapping[Any, str | None], settings: Settings) -> CheckedRow:
    """Every problem of one row (CSV cells or a JSON object with CSV column names), and its values."""
    columns = columns_of(tuple(raw))
    row = {name: (raw[header] or "").strip() for header, name in columns.standard}
    out: dict[str, Any] = {}
    problems: list[str] = []
    checked = CheckedRow(out, id_given=bool(row.get("id")), reachable=bool(row.get("email") or row.get("phone")))
    if None in raw:
        problems.append("row has more cells than the header")
    if columns.unnamed and any((raw[h] or "").strip() for h in columns.unnamed):
        problems.append("a cell has a value but its column has no name in the header")
    if _has_nul(raw):
        nul = [k or "a cell" for k, v in raw.items() if k is not None and isinstance(v, str) and "\x00" in v]
        problems.append(f"{', '.join(nul)} contains a NUL byte")
    country, region = _place(row.get("country", ""), row.get("region", ""), problems)
    if country:
        out["country"] = country
    if region:
        out["region"] = region
    if row.get("email"):
        checked.email = row["email"].lower()
        try:
            checked.email = out["email"] = normalize_email(row["email"])
        except LeadError as exc:
            problems.append(str(exc))
    if row.get("phone"):
        try:
            out["phone"] = normalize_phone(row["phone"], country or settings.country.partition("-")[0])
        except LeadError as exc:
            problems.append(str(exc))
    lead_id = row.get("id") or checked.email
    checked.lead_id = lead_id
    if not lead_id:
        problems.append("row needs an id or an email")
    elif len(lead_id) > MAX_ID:
        problems.append(f"id is longer than {MAX_ID} characters")
    else:
        out["id"] = lead_id
    if row.get("timezone"):
        try:
            timing.zone(row["timezone"])
            out["timezone"] = row["timezone"]
        except ValueError as exc:
            problems.append(str(exc))
    if row.get("owner"):
        known = {s.id for s in settings.senders}
        if row["owner"] in known:
            out["owner"] = row["owner"]
        else:
            problems.append(
                f"owner {row['owner']!r} is not a sender in config.yaml (known: {', '.join(sorted(known))})"
            )
    if row.get("sms_consent"):
        try:
            out["sms_consent"] = _bool(row["sms_consent"], "sms_consent")
        except LeadError as exc:
            problems.append(str(exc))
    if row.get("score"):
        try:
            out["score"] = float(row["score"])
        except ValueError:
            problems.append(f"score {row['score']!r} is not a number")
        else:
            if not math.isfinite(out["score"]):
                problems.append(f"score {row['score']!r} is not a number")
    for name in ("first_name", "last_name", "company", "title"):
        if row.get(name):
            out[name] = row[name]
    custom = {key: value.strip() for header, key in columns.custom if (value := raw[header]) and value.strip()}
    if custom:
        out["fields"] = custom
    if problems:
        checked.problems = tuple(problems)
    return checked


def clean_row(raw: Mapping[Any, str | None], settings: Settings) -> dict[str, Any]:
    """Validate one row; returns the lead's values (blank cells left out) or raises LeadError naming
    every problem of the row."""
    checked = check_row(raw, settings)
    if checked.problems:
        raise LeadError("; ".join(checked.problems))
    return checked.values


def owner_for(lead_id: str, settings: Settings) -> str:
    """A stable owner for a lead without one: the same lead always lands with the same SDR."""
    digest = hashlib.blake2b(lead_id.encode(), digest_size=4).digest()
    return settings.senders[int.from_bytes(digest, "big") % len(settings.senders)].id


def zone_for(phone: str | None, country: str | None) -> str | None:
    """The lead's time zone when its phone number (phonenumbers' data) or else its country has exactly one."""
    if phone:
        zones = _phone_zones(phone)
        if len(zones) == 1:
            return zones[0]
    if country:
        return country_zones().get(country.upper())
    return None


@lru_cache(maxsize=4096)
def _phone_zones(phone: str) -> tuple[str, ...]:
    try:
        number = phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return ()
    return tuple(z for z in phone_zones.time_zones_for_number(number) if _known_zone(z))


def _known_zone(name: str) -> bool:
    try:
        timing.zone(name)
    except ValueError:
        return False
    return name != phone_zones.UNKNOWN_TIMEZONE


@lru_cache(maxsize=1)
def country_zones() -> dict[str, str]:
    """Country -> its one time zone, for the countries that have exactly one.

    From the tz database's zone.tab (what zoneinfo reads), and, for a country listed with
    several zones there, from phonenumbers when every number of its calling code is in one
    zone (Germany: Europe/Berlin, though zone.tab also lists Busingen).
    """
    listed: dict[str, set[str]] = {}
    for line in _zone_tab().splitlines():
        if line and not line.startswith("#"):
            parts = line.split("\t")
            if len(parts) >= 3 and _known_zone(parts[2]):
                listed.setdefault(parts[0].upper(), set()).add(parts[2])
    single = {country: next(iter(zones)) for country, zones in listed.items() if len(zones) == 1}
    for country in phonenumbers.SUPPORTED_REGIONS:
        code = str(phonenumbers.country_code_for_region(country))
        zones = [z for z in TIMEZONE_DATA.get(code, ()) if _known_zone(z)]
        if country not in single and len(zones) == 1:
            single[country] = zones[0]
    return single


def _zone_tab() -> str:
    for folder in TZPATH:
        path = Path(folder) / "zone.tab"
        if path.is_file():
            return path.read_text(encoding="utf-8", errors="replace")
    try:
        return resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8")
    except (ModuleNotFoundError, OSError):
        return ""


def new_lead(values: dict[str, Any], owner: str, now: datetime) -> LeadRow:
    """A lead to insert: `values` (as `clean_row` gives them) over the blanks, in stage `new`, with no
    flag set, and the time zone its phone or country gives when the values name none."""
    blank: dict[str, Any] = {
        "id": values["id"], "email": None, "phone": None, "first_name": None, "last_name": None, "company": None,
        "title": None, "timezone": None, "country": None, "score": None, "sms_consent": False, "stage": Stage.NEW,
        "do_not_contact": False, "email_invalid": False, "phone_invalid": False, "fields": {},
        "created_at": now, "updated_at": now, "region": None,
    }  # fmt: skip
    lead = LeadRow(**{**blank, **values, "owner": owner})
    if lead.timezone is None:
        inferred = zone_for(lead.phone, lead.country)
        if inferred:
            return lead._replace(timezone=inferred)
    return lead
