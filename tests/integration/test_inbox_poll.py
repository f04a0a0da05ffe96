"""Reading real mailboxes: a private Dovecot, real SMTP (aiosmtpd), the engine's own passes.

The end-to-end story of issue 13: `cadence run` sends the intro; the prospect's reply is
APPENDed to the rep's mailbox, threaded on that Message-ID; the next `cadence run --once`
reads it, records `replied`, and sends the lead nothing more. The same with an out-of-office
reply: paused until the date it names, resumed after. Around it: reading never marks a
message read or deletes it, the cursor reads only what is new (and all again after a
UIDVALIDITY change, safely), moves happen only when asked, bad servers and credentials give
one clear error, and `save_sent` files each sent email in the rep's Sent folder.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.engine.inbox_poll import poll
from cadence.engine.runner import run_once
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.names import EnrollmentState
from cadence.store import mailboxes
from cadence.store.tables import EnrollmentT, InboundMessageT, TouchT
from tests.conftest import make_app
from tests.dovecot import Dovecot
from tests.smtp_sink import SmtpSink, point_project_at

ENROLL_AT = "2026-11-23T08:00:00-05:00"
SEND_AT = "2026-11-23T10:00:00-05:00"
READ_AT = "2026-11-24T08:00:00-05:00"  # before the day's window: nothing else is due
ALICE = "alice@acme.example"
ENV = {"ALICE_IMAP_USER": ALICE, "ALICE_IMAP_PASSWORD": "secret"}


def _configure(project: Path, server: Dovecot, smtp_sink: SmtpSink, **inbox: Any) -> None:
    point_project_at(project, smtp_sink, connections=1)
    path = project / "config.yaml"
    data = yaml.safe_load(path.read_text())
    mailbox = {
        "sender": "alice", "host": server.host, "port": server.port, "security": "none",
        "username_env": "ALICE_IMAP_USER", "password_env": "ALICE_IMAP_PASSWORD",
    }  # fmt: skip
    mailbox.update(inbox.pop("mailbox", {}))
    data["inbox"] = {"poll": "60s", "mailboxes": [mailbox], **inbox}
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def _open(project: Path, db_url: str) -> App:
    app = make_app(project, db_url, ENROLL_AT)
    rows = [
        (2, {"id": "L1", "email": "dana@northwind.example", "first_name": "Dana", "last_name": "Wu",
             "company": "Northwind", "owner": "alice", "timezone": "America/New_York", "country": "US"}),
        (3, {"id": "L2", "email": "sam@contoso.example", "first_name": "Sam", "last_name": "Patel",
             "company": "Contoso", "owner": "alice", "timezone": "America/New_York", "country": "US"}),
    ]  # fmt: skip
    assert import_leads(app.engine, rows, app.settings, app.clock.now()).imported == 2
    assert enroll(app, "outbound-saas", ["L1", "L2"]).refused == []
    return app


def _at(app: App, when: str | datetime) -> None:
    assert isinstance(app.clock, FixedClock)
    app.clock.set(parse_instant(when) if isinstance(when, str) else when)


def _intro(app: App, lead: str) -> dict[str, Any]:
    with app.engine.connect() as conn:
        query = select(TouchT).where(TouchT.c.lead_id == lead, TouchT.c.step_id == "intro")
        return dict(conn.execute(query).mappings().one())


def _state(app: App, lead: str) -> dict[str, Any]:
    with app.engine.connect() as conn:
        query = select(EnrollmentT).where(EnrollmentT.c.lead_id == lead).order_by(EnrollmentT.c.id.desc())
        return dict(conn.execute(query).mappings().first() or {})


def _sent_to(app: App, lead: str) -> int:
    with app.engine.connect() as conn:
        query = select(TouchT.c.id).where(TouchT.c.lead_id == lead, TouchT.c.status == "sent")
        return len(conn.execute(query).all())


def _reply(app: App, lead: str, text: str, mid: str, *, subject: str = "Re: hello", extra: str = "") -> bytes:
    intro = _intro(app, lead)
    email = "dana@northwind.example" if lead == "L1" else "sam@contoso.example"
    return (
        f"From: <{email}>\r\nTo: {ALICE}\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n"
        f"In-Reply-To: {intro['message_id']}\r\nReferences: {intro['message_id']}\r\n{extra}"
        f"Date: Tue, 24 Nov 2026 07:00:00 -0500\r\n\r\n{text}\r\n"
    ).encode()


@pytest.fixture
def sent(project: Path, db_url: str, dovecot: Dovecot, smtp_sink: SmtpSink, env: None) -> Iterator[App]:
    """Both leads' intros sent over SMTP; the clock the next morning."""
    _configure(project, dovecot, smtp_sink)
    app = _open(project, db_url)
    _at(app, SEND_AT)
    report = asyncio.run(run_once(app))
    assert report.dispatch.sent["email"] == 2 and not report.inbox_errors
    _at(app, READ_AT)
    yield app
    app.close()


def test_a_reply_in_the_mailbox_stops_the_sequence_on_the_next_pass(sent: App, dovecot: Dovecot) -> None:
    uid = dovecot.append(ALICE, "INBOX", _reply(sent, "L1", "Yes, call me on Thursday.", "<r1@northwind.example>"))
    _at(sent, "2026-11-25T11:00:00-05:00")  # bump and call-1 would be due by now
    report = asyncio.run(run_once(sent))
    assert report.inbox == {"reply": 1}
    assert _state(sent, "L1")["state"] == EnrollmentState.FINISHED and _state(sent, "L1")["outcome"] == "replied"
    for day in range(1, 15):  # two weeks of passes: the lead who replied gets nothing more
        _at(sent, parse_instant("2026-11-25T11:00:00-05:00") + timedelta(days=day))
        asyncio.run(run_once(sent))
    assert _sent_to(sent, "L1") == 1 and _sent_to(sent, "L2") > 1
    assert dovecot.messages(ALICE, "INBOX") == [(uid, frozenset())]  # still unread, still there


def test_an_out_of_office_reply_pauses_until_the_date_then_the_lead_resumes(sent: App, dovecot: Dovecot) -> None:
    raw = _reply(
        sent, "L1", "I am out of the office until December 7 with limited access to email.", "<ooo@nw.example>",
        subject="Automatic reply: hello", extra="Auto-Submitted: auto-replied\r\n",
    )  # fmt: skip
    dovecot.append(ALICE, "INBOX", raw)
    asyncio.run(run_once(sent))
    state = _state(sent, "L1")
    back = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)  # midnight in New York
    assert state["state"] == EnrollmentState.PAUSED and state["paused_until"] == back
    _at(sent, "2026-12-04T11:00:00-05:00")
    asyncio.run(run_once(sent))
    assert _sent_to(sent, "L1") == 1
    _at(sent, "2026-12-07T11:00:00-05:00")
    asyncio.run(run_once(sent))
    assert _state(sent, "L1")["state"] == EnrollmentState.ACTIVE and _sent_to(sent, "L1") == 2


def test_each_poll_reads_only_what_is_new_and_never_changes_the_mailbox(sent: App, dovecot: Dovecot) -> None:
    first = dovecot.append(
        ALICE, "INBOX", b"From: a@stranger.example\r\nSubject: hi\r\nMessage-ID: <1@s>\r\n\r\nhello\r\n"
    )
    report = poll(sent, "w1")
    assert [m.kind for m in report.mailboxes[0].messages] == ["unmatched"]
    assert poll(sent, "w1").read == 0  # nothing new: the server's `N:*` answer is filtered
    second = dovecot.append(ALICE, "INBOX", _reply(sent, "L2", "Not interested, thanks.", "<2@contoso>"))
    again = poll(sent, "w1").mailboxes[0].messages
    assert [(m.kind, m.lead) for m in again] == [("reply", "L2")]
    assert dovecot.messages(ALICE, "INBOX") == [(first, frozenset()), (second, frozenset())]
    with sent.engine.connect() as conn:
        assert mailboxes.cursor(conn, "alice", "INBOX")[1] == second


def test_a_new_uidvalidity_reads_the_folder_again_and_counts_nothing_twice(sent: App, dovecot: Dovecot) -> None:
    dovecot.append(ALICE, "INBOX", _reply(sent, "L1", "Sounds good.", "<v@nw>"))
    assert poll(sent, "w1").read == 1
    with sent.engine.begin() as conn:  # as if the server had renumbered the folder
        state = mailboxes.cursor(conn, "alice", "INBOX")
        assert state is not None
        mailboxes.advance(conn, "alice", "INBOX", state[0] + 1, 10**6, sent.clock.now())
    again = poll(sent, "w1").mailboxes[0].messages
    assert [m.kind for m in again] == ["duplicate"]


def test_move_processed_moves_bounces_and_auto_replies_only(
    project: Path, db_url: str, dovecot: Dovecot, smtp_sink: SmtpSink, env: None
) -> None:
    _configure(project, dovecot, smtp_sink, move_processed="cadence/processed")
    app = _open(project, db_url)
    try:
        _at(app, SEND_AT)
        asyncio.run(run_once(app))
        _at(app, READ_AT)
        dovecot.append(ALICE, "INBOX", _reply(app, "L1", "Great, let's talk.", "<keep@nw>"))
        auto = _reply(app, "L2", "Thank you for contacting us. A ticket has been opened.", "<auto@contoso>",
                      subject="[Ticket #1] Re: hello", extra="Auto-Submitted: auto-generated\r\n")  # fmt: skip
        dovecot.append(ALICE, "INBOX", auto)
        report = poll(app, "w1")
        assert report.mailboxes[0].moved == 1
        assert len(dovecot.messages(ALICE, "INBOX")) == 1 and len(dovecot.messages(ALICE, "cadence/processed")) == 1
    finally:
        app.close()


def test_a_message_with_a_huge_attachment_is_read_by_its_head(sent: App, dovecot: Dovecot) -> None:
    intro = _intro(sent, "L1")
    raw = (
        (
            f"From: <dana@northwind.example>\r\nTo: {ALICE}\r\nSubject: Re: hello\r\nMessage-ID: <big@nw>\r\n"
            f"In-Reply-To: {intro['message_id']}\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
            "Deck attached, let's meet.\r\n--b\r\nContent-Type: application/pdf\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        + b"QUFB\r\n" * (30 * 1024 * 1024 // 6)
        + b"--b--\r\n"
    )
    dovecot.append(ALICE, "INBOX", raw)
    [message] = poll(sent, "w1").mailboxes[0].messages
    assert (message.kind, message.lead) == ("reply", "L1")


def test_a_server_that_is_down_is_retried_then_reported_and_nothing_is_lost(sent: App, dovecot: Dovecot) -> None:
    dovecot.append(ALICE, "INBOX", _reply(sent, "L1", "Call me.", "<down@nw>"))
    dovecot.stop_server()
    slept: list[float] = []
    report = poll(sent, "w1", sleep=slept.append)
    assert report.read == 0 and slept == [1.0, 2.0, 4.0]
    error = report.mailboxes[0].error or ""
    assert "alice" in error and str(dovecot.port) in error and "Traceback" not in error
    dovecot.restart()
    assert [m.kind for m in poll(sent, "w1").mailboxes[0].messages] == ["reply"]


def test_wrong_credentials_give_one_clear_error_naming_the_mailbox(
    sent: App, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", "wrong")
    slept: list[float] = []
    report = poll(sent, "w1", sleep=slept.append)
    assert slept == []  # not worth retrying
    error = report.mailboxes[0].error or ""
    assert "alice" in error and "login" in error.lower() and "\n" not in error


def test_one_reader_per_mailbox_and_a_dead_readers_lease_is_taken_over(sent: App, dovecot: Dovecot) -> None:
    dovecot.append(ALICE, "INBOX", _reply(sent, "L1", "Yes.", "<lease@nw>"))
    now = sent.clock.now()
    with sent.engine.begin() as conn:  # worker A took the mailbox, then died
        assert mailboxes.take_lease(conn, "alice", "worker-A", now, now + timedelta(seconds=120))
    held = poll(sent, "worker-B").mailboxes[0]
    assert held.held_by == "worker-A" and held.messages == []
    _at(sent, now + timedelta(seconds=121))
    assert [m.kind for m in poll(sent, "worker-B").mailboxes[0].messages] == ["reply"]


def test_save_sent_files_each_sent_email_in_the_reps_sent_folder(
    project: Path, db_url: str, dovecot: Dovecot, smtp_sink: SmtpSink, env: None
) -> None:
    _configure(project, dovecot, smtp_sink, save_sent=True, mailbox={"sent_folder": "Sent"})
    app = _open(project, db_url)
    try:
        _at(app, SEND_AT)
        asyncio.run(run_once(app))
        saved = dovecot.messages(ALICE, "Sent")
        assert len(saved) == 2 and all("\\Seen" in flags for _, flags in saved)
        with app.engine.connect() as conn:
            ids = set(conn.execute(select(InboundMessageT.c.id)).scalars())
        assert ids == set()  # our own copies are never read back as inbound mail
    finally:
        app.close()


def test_cadence_inbox_poll_prints_json_and_exits_1_when_a_mailbox_fails(
    sent: App, dovecot: Dovecot, project: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cadence.cli.app import app as cli

    dovecot.append(ALICE, "INBOX", _reply(sent, "L2", "Sure, send details.", "<cli@contoso>"))
    env = {"CADENCE_NOW": READ_AT, "CADENCE_DATABASE_URL": db_url, **ENV}
    args = ["--config", str(project / "config.yaml"), "inbox", "poll", "--json"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert '"kind": "reply"' in result.stdout and '"read": 1' in result.stdout
    bad = CliRunner().invoke(cli, args[:-1], env={**env, "ALICE_IMAP_PASSWORD": "nope"})
    assert bad.exit_code == 1 and "login" in bad.output.lower() and "Traceback" not in bad.output


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_cadence_run_workers_share_one_mailbox_and_each_message_is_processed_once(
    project: Path, db_url: str, dovecot: Dovecot, smtp_sink: SmtpSink, env: None
) -> None:
    import os
    import subprocess
    import sys
    import time

    from sqlalchemy import func

    from cadence.store.tables import HistoryT

    _configure(project, dovecot, smtp_sink, poll="1s")
    app = make_app(project, db_url, ENROLL_AT)
    leads = [
        (n, {"id": f"W{n}", "email": f"w{n}@shared.example", "owner": "alice", "timezone": "America/New_York"})
        for n in range(2, 12)
    ]  # fmt: skip
    assert import_leads(app.engine, leads, app.settings, app.clock.now()).imported == 10
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    environ.update(CADENCE_NOW=READ_AT, CADENCE_DATABASE_URL=db_url, CADENCE_SECRET="s", **ENV)
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "cadence", "--config", str(project / "config.yaml"), "run"],
            cwd=project,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    total = 30
    try:
        for n in range(total):
            lead = 2 + n % 10
            head = f"From: <w{lead}@shared.example>\r\nTo: {ALICE}\r\nSubject: Re: hi\r\nMessage-ID: <m{n}@shared>\r\n"
            raw = f"{head}\r\nReply {n}\r\n"
            dovecot.append(ALICE, "INBOX", raw.encode())
            time.sleep(0.05)

        def recorded() -> int:
            with app.engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(InboundMessageT)).scalar() or 0)

        deadline = time.monotonic() + 60
        while recorded() < total and time.monotonic() < deadline and all(w.poll() is None for w in workers):
            time.sleep(0.2)
        assert recorded() == total
    finally:
        for w in workers:
            w.terminate()
        outputs = [w.communicate(timeout=30) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert not any("read before" in err for _, err in outputs), outputs  # no message was read by both
    with app.engine.connect() as conn:
        rows = conn.execute(select(HistoryT.c.detail).where(HistoryT.c.kind == "event")).scalars().all()
    replied = [d["message_id"] for d in rows if d.get("event") == "replied"]
    assert sorted(replied) == sorted(f"<m{n}@shared>" for n in range(total))  # each acted on exactly once
    app.close()
