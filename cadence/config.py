"""config.yaml -> typed Settings.

Validated with file:line diagnostics like sequence files. Secrets never live in
the file: keys ending in `_env` name the environment variable that holds them.
Relative paths (templates, sequences, outbox, a SQLite database) are relative to
the folder that holds config.yaml, so `cadence --config demo/config.yaml` works
from anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cadence.inbox_settings import InboxSettings
from cadence.spec import values
from cadence.spec.diagnostics import Diagnostic, SpecError
from cadence.spec.rules import Rule, as_set
from cadence.user_settings import User, check_proxies, user_problems

if TYPE_CHECKING:
    from cadence.spec.budget import RenderLimits
    from cadence.spec.source import Located


def known_calendar(code: str) -> bool:
    """Whether `code` names a whole calendar of the holidays library (US, GBR, NYSE), read from its registry.

    Building any calendar imports every country's module (a quarter of a second), so settings that only
    name one, and calendars that are never asked about a date (`cadence tasks`), do not build it. A
    subdivision (US-CA) is not known here: checking it needs the country's module.
    """
    name, _, subdivision = code.strip().upper().partition("-")
    if subdivision:
        return False
    from holidays.registry import EntityLoader

    return name in {*EntityLoader.get_country_codes(), *EntityLoader.get_financial_codes()}


def _check_calendar(code: str) -> None:
    """What `values.holiday_calendar(code)` checks: a known code passes unbuilt; any other is built, which
    checks a subdivision and words the error."""
    if not known_calendar(code):
        values.holiday_calendar(code)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class DefaultSchedule(Strict):
    window: str = "09:00-17:00"
    days: list[str] = Field(default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"])
    holidays: str = "lead"
    spread: str = "45m"

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        values.Window.parse(v)
        return v

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        values.parse_weekdays(v)
        return v

    @field_validator("holidays")
    @classmethod
    def _holidays(cls, v: str) -> str:
        if v.lower() in ("lead", "none"):
            return v.lower()
        _check_calendar(v)
        return v.upper()

    @field_validator("spread", mode="before")
    @classmethod
    def _spread_zero(cls, v: object) -> object:
        """YAML reads `spread: 0` (the documented "no spread") as a number."""
        return "0" if v == 0 and not isinstance(v, bool) else v

    @field_validator("spread")
    @classmethod
    def _spread(cls, v: str) -> str:
        if str(v).strip() not in ("0", "none"):
            values.parse_duration(v)
        return v


class Sender(Strict):
    """An SDR: owner of leads, and the mailbox and number their touches go out from."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    name: str
    email: str
    phone: str | None = None
    daily_cap: int = Field(300, ge=1, description="Emails a day from this mailbox, at most")
    per_minute: int = Field(20, ge=1, description="Emails a minute from this mailbox, at most")

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        return values.email_address(v)

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        return None if v is None else values.phone_number(v)


class SmtpSettings(Strict):
    host: str = "127.0.0.1"
    port: int = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username_env: str | None = Field(None, description="Environment variable holding the SMTP user name")
    password_env: str | None = Field(None, description="Environment variable holding the SMTP password")
    connections: int = Field(4, ge=1, le=64, description="SMTP connections used in parallel, reused across a batch")
    timeout_seconds: float = 30.0


class EmailSettings(Strict):
    transport: Literal["outbox", "smtp"] = "outbox"
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    unsubscribe_mailto: str | None = Field(None, description="mailto address in List-Unsubscribe")
    domain: str | None = Field(None, description="Message-ID domain; default: the sender's domain")


class TwilioSettings(Strict):
    account_sid_env: str = "TWILIO_ACCOUNT_SID"
    auth_token_env: str = "TWILIO_AUTH_TOKEN"
    api_base: str | None = Field(None, description="Override https://api.twilio.com (tests, proxies)")
    concurrency: int = Field(8, ge=1, le=64)


class SmsSettings(Strict):
    transport: Literal["outbox", "twilio"] = "outbox"
    quiet_hours: str = Field("21:00-08:00", description="Lead-local hours when no SMS goes out (TCPA)")
    require_consent: bool = True
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, v: str) -> str:
        quiet_window(v)
        return v


class TaskSettings(Strict):
    expire_after_days: int = Field(2, ge=1, description="Allowed days an untouched task stays open")


class LimitSettings(Strict):
    per_lead_daily: int = Field(2, ge=1, description="Touches a lead receives per local day, across sequences")


class EngineSettings(Strict):
    interval_seconds: float = Field(5.0, gt=0, description="How often `cadence run` drains due work")
    batch_size: int = Field(200, ge=1, le=10000)
    lease_seconds: int = Field(300, ge=10, description="How long a claim holds before the touch becomes unknown")
    max_attempts: int = Field(5, ge=1, description="Sends tried on transient failures before giving up")
    backoff_seconds: int = Field(60, ge=1, description="First retry delay; doubles each attempt, with jitter")
    resend_unknown: bool = Field(False, description="Resend touches whose worker died (risks a duplicate)")


class EnrollSettings(Strict):
    cooloff: str = Field(
        "30d", description="A lead that finished a sequence this recently is not enrolled again by hand without --force"
    )

    @field_validator("cooloff", mode="before")
    @classmethod
    def _cooloff(cls, v: object) -> object:
        value = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
        if isinstance(value, str) and value.strip() not in ("0", "none"):
            values.parse_duration(value)
        return value

    @property
    def cooloff_period(self) -> timedelta:
        return timedelta(0) if self.cooloff.strip() in ("0", "none") else values.parse_duration(self.cooloff)


class RenderSettings(Strict):
    """How far one template may go: a loop that never ends or megabytes of text fail that message, not the engine."""

    timeout_seconds: float = Field(2.0, gt=0, le=60, description="How long one template may take to render")
    max_email_kib: int = Field(256, ge=1, le=10240, description="Largest email body (each part), in KiB")
    max_sms_chars: int = Field(1600, ge=1, le=1600, description="Longest SMS text, in characters (Twilio's limit)")

    @property
    def limits(self) -> RenderLimits:
        from cadence.spec.budget import RenderLimits  # jinja2 comes with it: only rendering needs it

        return RenderLimits(self.timeout_seconds, self.max_email_kib * 1024, self.max_sms_chars)


# Countries whose nationwide calendar misses holidays most of the country keeps.
DEFAULT_REGIONS = {"GB": "GB-ENG"}
DEFAULT_DISPOSITIONS = {
    "connected_interested": "Connected - interested",
    "meeting_booked": "Meeting booked",
    "not_now": "Connected - bad timing",
    "left_voicemail": "Left voicemail",
    "no_answer": "No answer",
    "wrong_number": "Wrong number",
    "not_interested": "Not interested",
    "do_not_call": "Asked not to be called",
    "done": "Done",
}


class Settings(Strict):
    database: str = "sqlite:///cadence.db"
    timezone: str = "America/New_York"
    country: str = "US"
    region: str | None = Field(
        None, description="ISO 3166-2 subdivision whose holidays leads of its country keep when they name none (US-CA)"
    )
    schedule: DefaultSchedule = Field(default_factory=DefaultSchedule)
    senders: list[Sender] = Field(default_factory=list)
    templates: str = "templates"
    sequences: str = "sequences"
    outbox: str = "outbox"
    public_url: str | None = Field(None, description="Public base URL of `cadence serve` (unsubscribe links, webhooks)")
    email: EmailSettings = Field(default_factory=EmailSettings)
    sms: SmsSettings = Field(default_factory=SmsSettings)
    tasks: TaskSettings = Field(default_factory=TaskSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    enroll: EnrollSettings = Field(default_factory=EnrollSettings)
    render: RenderSettings = Field(default_factory=RenderSettings)
    inbox: InboxSettings = Field(default_factory=InboxSettings)
    dispositions: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_DISPOSITIONS), description="Codes SDRs log on tasks, with labels"
    )
    rules: list[Rule] = Field(default_factory=list, description="First match wins, top to bottom")
    inbound_sequence: str | None = Field(None, description="Where POST /leads enrolls when the request names none")
    auto_apply: bool = Field(False, description="`cadence run` applies edited sequence files itself (one-user setups)")
    users: list[User] = Field(default_factory=list, description="Who may sign in to the web workspace")
    auth: Literal["password", "proxy"] = Field("password", description="How the web workspace knows who is signed in")
    auth_header: str = Field("X-Forwarded-User", description="With auth: proxy, the header naming the user")
    trusted_proxies: list[str] = Field(default_factory=list, description="Addresses or networks of the proxy")
    # Where the file lives; not a key users write.
    root: Path = Field(Path("."), exclude=True)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        return check_proxies(v)

    def user(self, user_id: str) -> User | None:
        return next((u for u in self.users if u.id == user_id), None)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        values.zone(v)
        return v

    @field_validator("country")
    @classmethod
    def _country(cls, v: str) -> str:
        _check_calendar(v)
        return v.upper()

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        if v is None:
            return None
        code = v.strip().upper()
        if "-" not in code:
            raise ValueError(f"region {v!r} must be an ISO 3166-2 subdivision like US-CA or GB-SCT")
        _check_calendar(code)
        return code

    def holiday_calendar_of(self, country: str | None, region: str | None) -> str:
        """Whose public holidays a lead keeps: its own region, else config's `region` for leads of that
        country, else its country's (England and Wales for GB, whose Easter Monday Scotland does not keep)."""
        nation = (country or self.country).upper()
        if region:
            return region.upper()
        if self.region and self.region.partition("-")[0] == nation:
            return self.region
        return DEFAULT_REGIONS.get(nation, nation)

    def sender(self, sender_id: str) -> Sender:
        for s in self.senders:
            if s.id == sender_id:
                return s
        raise KeyError(sender_id)

    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.root / p

    @property
    def templates_dir(self) -> Path:
        return self.path(self.templates)

    @property
    def sequences_dir(self) -> Path:
        return self.path(self.sequences)

    @property
    def outbox_dir(self) -> Path:
        return self.path(self.outbox)

    def database_url(self, environ: Mapping[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ
        url = env.get("CADENCE_DATABASE_URL") or self.database
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
            url = prefix + str((self.root / url[len(prefix) :]).resolve())
        return url


def quiet_window(text: str) -> values.Window:
    """Quiet hours wrap midnight ("21:00-08:00"); SMS may go out only in the complement."""
    start, _, end = text.partition("-")
    try:
        s, e = values.parse_time_of_day(start), values.parse_time_of_day(end)
    except ValueError as exc:
        raise ValueError(f'quiet_hours must look like "21:00-08:00", not {text!r}') from exc
    s_min, e_min = s.hour * 60 + s.minute, e.hour * 60 + e.minute
    if s_min <= e_min:
        raise ValueError("quiet_hours must span midnight, e.g. 21:00-08:00")
    return values.Window(e_min, s_min)


def check_settings(path: Path) -> tuple[Settings | None, list[Diagnostic]]:
    from cadence.spec.source import read_yaml, validate_model  # YAML and its line numbers: only when reading the file

    doc, diags = read_yaml(path)
    if doc is None:
        return None, diags
    if doc.data is not None and not isinstance(doc.data, dict):
        return None, [*diags, doc.diag((), "config.yaml must be a mapping of keys")]
    data = dict(doc.data or {})
    data["root"] = path.parent.resolve()
    doc.data = data
    settings, errors = validate_model(Settings, doc)
    return settings, diags + errors + _duplicate_senders(doc)


def _duplicate_senders(doc: Located) -> list[Diagnostic]:
    """Sender ids are lead owners: each must be unique. Checked here, on the file, to point at the line."""
    senders = doc.data.get("senders")
    if not isinstance(senders, list):
        return []
    first: dict[str, int] = {}
    out = []
    for i, sender in enumerate(senders):
        sender_id = sender.get("id") if isinstance(sender, dict) else None
        if not isinstance(sender_id, str):
            continue
        if sender_id in first:
            out.append(
                doc.diag(
                    ("senders", i, "id"),
                    f"sender id {sender_id!r} appears twice (first as sender {first[sender_id] + 1})",
                )
            )
        else:
            first[sender_id] = i
    return out


def check_references(path: Path, settings: Settings, sequence_ids: set[str]) -> list[Diagnostic]:
    """Rules must name configured disposition codes and existing sequences (needs the catalog); mailboxes, senders."""
    from cadence.spec.source import read_yaml

    doc, _ = read_yaml(path)
    if doc is None:
        return []
    out: list[Diagnostic] = []
    known = ", ".join(sorted(settings.dispositions)) or "none"
    for i, rule in enumerate(settings.rules):
        for code in sorted(as_set(rule.when.disposition) or ()):
            if code not in settings.dispositions:
                out.append(
                    doc.diag(("rules", i, "when", "disposition"), f"unknown disposition {code!r}; known: {known}")
                )
        named = [("when", "sequence", s) for s in sorted(as_set(rule.when.sequence) or ())]
        named += [("then", key, getattr(rule.then, key)) for key in ("recycle", "enroll") if getattr(rule.then, key)]
        for part, key, sequence_id in named:
            if sequence_id not in sequence_ids:
                out.append(doc.diag(("rules", i, part, key), f"unknown sequence {sequence_id!r}"))
    senders = {s.id for s in settings.senders}
    for where, problem in [*user_problems(settings.users, senders, settings.auth), *settings.inbox.problems(senders)]:
        out.append(doc.diag(where, problem))
    if settings.inbound_sequence and settings.inbound_sequence not in sequence_ids:
        out.append(doc.diag(("inbound_sequence",), f"unknown sequence {settings.inbound_sequence!r}"))
    return out


def load_settings(path: Path) -> Settings:
    settings, diags = check_settings(path)
    errors = [d for d in diags if d.is_error]
    if settings is None or errors:
        raise SpecError(errors or diags)
    return settings
