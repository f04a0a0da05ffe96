"""Hearing the prospect: an inbound email, read once, matched and acted on through the events and rules.

Each test sends the real intro (file outbox), then hands cadence a message built on that
touch's Message-ID or taken from the corpus (tests/inbox/) with our lead's address in it, and
checks what became of the lead, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.engine.runner import run_once
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.names import EnrollmentState, InboundKind
from cadence.outcomes.inbound_mail import Source, take_in
from cadence.store.tables import EnrollmentT, HistoryT, InboundMessageT, LeadT, SuppressionT, TouchT
from tests.conftest import make_app

CORPUS = Path(__file__).parent.parent / "inbox"
ENROLL_AT = "2026-11-23T08:00:00-05:00"  # a Monday before the window
SEND_AT = "2026-11-23T13:00:00-05:00"  # 11:00 in Denver
READ_AT = "2026-11-24T09:30:00-05:00"
K = InboundKind
LEADS = [
    {"id": "L1", "email": "dana.wu@northwind.example", "first_name": "Dana", "last_name": "Wu", "company": "Northwind"},
    {"id": "L2", "email": "kim.lee@northwind.example", "first_name": "Kim", "last_name": "Lee", "company": "Northwind"},
    {"id": "L3", "email": "sam@gmail.com", "first_name": "Sam", "last_name": "Patel", "company": "Solo"},
    {"id": "L4", "email": "max@gmail.com", "first_name": "Max", "last_name": "Roe", "company": "Other"},
]


@pytest.fixture
def app(project: Path, db_url: str) -> Iterator[App]:
    application = _open(project, db_url)
    yield application
    application.close()


def _open(project: Path, db_url: str, **inbox: object) -> App:
    if inbox:
        config = project / "config.yaml"
        data = yaml.safe_load(config.read_text())
        data["inbox"] = inbox
        config.write_text(yaml.safe_dump(data, sort_keys=False))
    application = make_app(project, db_url, ENROLL_AT)
    local = {"owner": "alice", "timezone": "America/Denver", "country": "US"}
    rows = [(i + 2, {**row, **local}) for i, row in enumerate(LEADS)]
    assert import_leads(application.engine, rows, application.settings, application.clock.now()).imported == 4
    assert enroll(application, "outbound-saas", [r["id"] for r in LEADS]).refused == []
    _at(application, SEND_AT)
    report = asyncio.run(run_once(application))
    assert report.dispatch.sent["email"] == 4
    _at(application, READ_AT)
    return application


def _at(app: App, when: str | datetime) -> None:
    assert isinstance(app.clock, FixedClock)
    app.clock.set(parse_instant(when) if isinstance(when, str) else when)


def _intro(app: App, lead: str) -> dict[str, object]:
    with app.engine.connect() as conn:
        row = conn.execute(select(TouchT).where(TouchT.c.lead_id == lead, TouchT.c.step_id == "intro")).mappings()
        return dict(row.one())


def _enrollment(app: App, lead: str) -> dict[str, object]:
    with app.engine.connect() as conn:
        rows = conn.execute(select(EnrollmentT).where(EnrollmentT.c.lead_id == lead).order_by(EnrollmentT.c.id))
        return dict(rows.mappings().all()[-1])


def _lead(app: App, lead: str) -> dict[str, object]:
    with app.engine.connect() as conn:
        return dict(conn.execute(select(LeadT).where(LeadT.c.id == lead)).mappings().one())


def _tasks(app: App, lead: str) -> list[str]:
    with app.engine.connect() as conn:
        query = select(TouchT.c.body).where(TouchT.c.lead_id == lead, TouchT.c.step_id == "notify-owner")
        return [r[0] for r in conn.execute(query)]


def _titles(app: App, lead: str) -> list[str]:
    with app.engine.connect() as conn:
        query = select(HistoryT.c.detail).where(HistoryT.c.lead_id == lead, HistoryT.c.kind == "task_opened")
        return [r[0]["title"] for r in conn.execute(query) if "title" in r[0]]


def _reply(app: App, lead: str, text: str, *, sender: str | None = None, subject: str = "Re: Northwind + Acme",
           mid: str = "<reply-1@northwind.example>", headers: dict[str, str] | None = None,
           thread: bool = True) -> bytes:  # fmt: skip
    intro = _intro(app, lead)
    msg = EmailMessage()
    msg["From"] = sender or f"Someone <{_lead(app, lead)['email']}>"
    msg["To"] = "Alice Moreno <alice@acme.example>"
    msg["Subject"] = subject
    msg["Message-ID"] = mid
    msg["Date"] = "Tue, 24 Nov 2026 09:00:00 -0700"
    if thread:
        msg["In-Reply-To"] = str(intro["message_id"])
        msg["References"] = str(intro["message_id"])
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(text + "\n\nOn Mon, Alice Moreno <alice@acme.example> wrote:\n> Hi there\n> quick question\n")
    return msg.as_bytes()


def _bounce(app: App, lead: str, corpus_file: str, original: str, recipient: str, mid: str) -> bytes:
    raw = (CORPUS / corpus_file).read_bytes()
    intro = _intro(app, lead)
    raw = raw.replace(original.encode(), str(intro["message_id"]).encode())
    raw = raw.replace(recipient.encode(), str(_lead(app, lead)["email"]).encode())
    head, _, body = raw.partition(b"\n\n")
    lines = [line for line in head.split(b"\n") if not line.lower().startswith(b"message-id:")]
    return b"\n".join([*lines, f"Message-ID: {mid}".encode()]) + b"\n\n" + body


def _full(app: App, lead: str, mid: str) -> bytes:
    """A Postfix "mailbox full" DSN about the lead's intro."""
    original, recipient = "<20261120140735.4821.2003@acme.example>", "busy.ben@initech.example"
    return _bounce(app, lead, "bounce-postfix-mailbox-full.eml", original, recipient, mid)


def _take(app: App, raw: bytes, label: str = "x.eml") -> dict[str, object]:
    return take_in(app, raw, Source("file", label=label)).as_json()


def test_a_threaded_reply_ends_the_sequence_and_hands_the_owner_a_task(app: App) -> None:
    out = _take(app, _reply(app, "L1", "Yes, call me Thursday afternoon.\n\nDana"))
    assert out["kind"] == K.REPLY and out["lead"] == "L1" and out["touch"] == _intro(app, "L1")["id"]
    assert out["until"] is None and "ended outbound-saas (replied)" in str(out["action"])
    assert set(out) == {"file", "message_id", "kind", "lead", "touch", "action", "until", "reason"}
    assert _enrollment(app, "L1")["state"] == EnrollmentState.FINISHED
    assert _lead(app, "L1")["stage"] == "replied"
    assert _titles(app, "L1") == ["Reply from Dana Wu (Northwind): Yes, call me Thursday afternoon."]
    with app.engine.connect() as conn:
        events = [r[0] for r in conn.execute(select(HistoryT.c.detail).where(HistoryT.c.kind == "event"))]
    said = next(e for e in events if e.get("event") == "replied")
    assert said["text"].startswith("Yes, call me Thursday") and "quick question" not in said["text"]
    # The colleague at the same company goes on: same_company is off by default.
    assert _enrollment(app, "L2")["state"] == EnrollmentState.ACTIVE


def test_the_same_message_counts_once_whichever_door_it_comes_through(app: App) -> None:
    raw = _reply(app, "L1", "Sounds good.")
    assert _take(app, raw)["kind"] == K.REPLY
    again = take_in(app, raw, Source("http")).as_json()
    assert again["kind"] == K.DUPLICATE and again["lead"] is None and again["action"] is None
    assert "read before" in str(again["reason"])
    assert len(_titles(app, "L1")) == 1  # no second task
    with app.engine.connect() as conn:
        assert conn.execute(select(InboundMessageT.c.id)).all() != []
        assert len(conn.execute(select(InboundMessageT.c.id)).all()) == 1


def test_the_same_message_racing_itself_is_acted_on_once(app: App) -> None:
    raw = _reply(app, "L1", "Interested, let's talk.")
    results: list[str] = []
    barrier = threading.Barrier(4)

    def one() -> None:
        barrier.wait()
        results.append(str(take_in(app, raw, Source("http")).kind))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == [K.DUPLICATE] * 3 + [K.REPLY]
    assert len(_titles(app, "L1")) == 1


def test_an_out_of_office_reply_pauses_until_the_date_it_names_then_the_lead_resumes(app: App) -> None:
    raw = _reply(
        app, "L1", "I am out of the office until December 7 with limited access to email.",
        subject="Automatic reply: Northwind + Acme", headers={"Auto-Submitted": "auto-replied"}, mid="<ooo@nw.example>",
    )  # fmt: skip
    out = _take(app, raw)
    assert out["kind"] == K.OUT_OF_OFFICE and out["lead"] == "L1"
    back = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)  # midnight in Denver
    assert out["until"] == back.isoformat()
    enrollment = _enrollment(app, "L1")
    assert enrollment["state"] == EnrollmentState.PAUSED and enrollment["paused_until"] == back
    _at(app, "2026-12-04T11:00:00-07:00")
    asyncio.run(run_once(app))
    assert _enrollment(app, "L1")["state"] == EnrollmentState.PAUSED  # nothing before the return date
    _at(app, back + timedelta(days=1, hours=17))
    asyncio.run(run_once(app))
    assert _enrollment(app, "L1")["state"] == EnrollmentState.ACTIVE


def test_an_out_of_office_reply_with_no_date_pauses_for_the_default_fortnight(app: App) -> None:
    raw = _reply(app, "L1", "I am currently out of the office with limited access to email.",
                 subject="Out of Office", headers={"X-Autoreply": "yes"}, mid="<ooo2@nw.example>")  # fmt: skip
    out = _take(app, raw)
    assert out["kind"] == K.OUT_OF_OFFICE
    assert out["until"] == (parse_instant(READ_AT) + timedelta(days=14)).astimezone(UTC).isoformat()


def test_a_hard_bounce_marks_the_address_invalid_and_ends_the_sequence(app: App) -> None:
    raw = _bounce(app, "L1", "bounce-postfix-user-unknown.eml", "<20261120140501.4821.2001@acme.example>",
                  "ghost@northwind.example", "<dsn-1@mx.acme.example>")  # fmt: skip
    out = _take(app, raw)
    assert out["kind"] == K.BOUNCE and out["lead"] == "L1" and out["touch"] == _intro(app, "L1")["id"]
    assert "user unknown" in str(out["reason"]) and "5.1.1" in str(out["reason"])
    assert _lead(app, "L1")["email_invalid"] is True
    assert _enrollment(app, "L1")["state"] == EnrollmentState.FINISHED
    assert _intro(app, "L1")["delivery"] == "bounced"


def test_soft_bounces_leave_the_address_valid_until_the_limit_in_a_row(app: App) -> None:
    def soft(n: int) -> dict[str, object]:
        return _take(app, _full(app, "L1", f"<dsn-soft-{n}@mx.example>"))

    first = soft(1)
    assert first["kind"] == K.SOFT_BOUNCE and "1 of 3 in a row" in str(first["action"])
    delayed = _bounce(app, "L1", "bounce-postfix-delayed.eml", "<20261120140950.4821.2004@acme.example>",
                      "maria@slowmx.example", "<dsn-delay@mx.example>")  # fmt: skip
    assert _take(app, delayed)["kind"] == K.SOFT_BOUNCE  # a delay warning: neither counts nor breaks the run
    assert "2 of 3" in str(soft(2)["action"])
    assert _lead(app, "L1")["email_invalid"] is False
    assert _intro(app, "L1")["delivery"] == "soft_bounce"
    third = soft(3)
    assert "marked email invalid" in str(third["action"])
    assert _lead(app, "L1")["email_invalid"] is True


def test_a_reply_breaks_a_run_of_soft_bounces(app: App) -> None:
    for n in (1, 2):
        _take(app, _full(app, "L2", f"<soft-{n}@mx.example>"))
    _take(app, _reply(app, "L2", "Auto-reply: got it", headers={"Auto-Submitted": "auto-replied"}, mid="<ack@x>"))
    out = _take(app, _full(app, "L2", "<soft-3@mx.example>"))
    assert "1 of 3" in str(out["action"]) and _lead(app, "L2")["email_invalid"] is False


def test_an_unsubscribe_request_suppresses_the_address_everywhere(app: App) -> None:
    out = _take(app, _reply(app, "L1", "Please remove me from your mailing list."))
    assert out["kind"] == K.UNSUBSCRIBE_REQUEST and "suppressed email" in str(out["action"])
    with app.engine.connect() as conn:
        assert conn.execute(select(SuppressionT.c.address)).scalars().all() == ["dana.wu@northwind.example"]


def test_an_auto_reply_is_recorded_and_the_sequence_goes_on(app: App) -> None:
    text = "Thank you for contacting us. A ticket has been opened: #4821."
    auto = {"Auto-Submitted": "auto-generated"}
    raw = _reply(app, "L1", text, subject="[Ticket #4821] Re: Northwind + Acme", headers=auto)
    out = _take(app, raw)
    assert out["kind"] == K.AUTO_REPLY and _enrollment(app, "L1")["state"] == EnrollmentState.ACTIVE
    with app.engine.connect() as conn:
        kinds = conn.execute(select(HistoryT.c.kind).where(HistoryT.c.lead_id == "L1")).scalars().all()
    assert "inbound_mail" in kinds


def test_a_reply_matched_by_the_sender_address_alone(app: App) -> None:
    out = _take(app, _reply(app, "L1", "Who is this?", thread=False, subject="your email"))
    assert out["kind"] == K.REPLY and out["lead"] == "L1" and out["touch"] == _intro(app, "L1")["id"]


def test_a_stranger_is_unmatched_and_nothing_else_happens(app: App) -> None:
    raw = _reply(app, "L1", "Hello, I sell printers.", sender="vendor@printers.example", thread=False, mid="<s@p>")
    out = _take(app, raw)
    assert out["kind"] == K.UNMATCHED and out["lead"] is None
    assert "no lead or touch matches" in str(out["reason"])
    assert _enrollment(app, "L1")["state"] == EnrollmentState.ACTIVE


def test_a_bounce_about_nothing_we_sent_is_unmatched(app: App) -> None:
    raw = (CORPUS / "bounce-postfix-user-unknown.eml").read_bytes()
    out = _take(app, raw)
    assert out["kind"] == K.UNMATCHED and "ghost@northwind.example" in str(out["reason"])


def test_malformed_messages_are_recorded_with_the_reason_and_never_raise(app: App) -> None:
    for name in sorted(p.name for p in CORPUS.glob("malformed-*.eml")):
        out = _take(app, (CORPUS / name).read_bytes(), name)
        assert out["kind"] in set(K), name
    assert _take(app, b"")["kind"] in (K.UNMATCHED, K.DUPLICATE)
    assert _take(app, b"\x00\xff" * 1000)["kind"] in (K.UNMATCHED, K.DUPLICATE)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_same_company_reply_ends_the_colleagues_sequences_but_never_by_free_mail(project: Path, db_url: str) -> None:
    app = _open(project, db_url, same_company=True)
    try:
        text, jo = "Forwarding to my colleague. We are interested.", "Jo Park <jo.park@northwind.example>"
        raw = _reply(app, "L1", text, sender=jo, thread=False, mid="<jo@northwind.example>")
        out = _take(app, raw)
        assert out["kind"] == K.REPLY and out["lead"] == "L1"
        assert "jo.park@northwind.example" in str(out["reason"])
        assert _enrollment(app, "L1")["state"] == EnrollmentState.FINISHED
        assert _enrollment(app, "L2")["state"] == EnrollmentState.FINISHED
        assert any(t.startswith("Reply from Jo Park at Northwind about Kim Lee") for t in _titles(app, "L2"))
        gmail = _reply(app, "L3", "Hi, interested", sender="other@gmail.com", thread=False, mid="<g@gmail.com>")
        assert _take(app, gmail)["kind"] == K.UNMATCHED
        assert _enrollment(app, "L3")["state"] == EnrollmentState.ACTIVE
        assert _enrollment(app, "L4")["state"] == EnrollmentState.ACTIVE
    finally:
        app.close()


def test_nul_bytes_and_lone_surrogates_anywhere_are_stored_safely(app: App) -> None:
    raw = (
        b"From: Dana \x00Wu <dana.wu@northwind.example>\r\nSubject: Re: \x00hello \xed\xa0\x80\r\n"
        b"Message-ID: <nul\x00id@northwind.example>\r\n\r\nYes\x00, call me. \xed\xa0\x80\xff\r\n"
    )
    out = _take(app, raw)
    assert out["kind"] == K.REPLY and out["lead"] == "L1"
    assert "\x00" not in str(out["message_id"]) and "\x00" not in str(out["reason"])
    assert _take(app, raw)["kind"] == K.DUPLICATE
