"""The doors a raw message comes in by besides IMAP: `cadence inbox process` (files, stdin) and POST /inbound/email.

They share one path, so a message counts once whichever door it used; each answers the public
JSON shape {"file", "message_id", "kind", "lead", "touch", "action", "until", "reason"}.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.web import create_app
from tests.conftest import Cli
from tests.http_server import Switchboard, serving

NOW = "2026-11-23T11:00:00-05:00"
LATER = "2026-11-24T10:00:00-05:00"
API_TOKEN = "api-test-token"
ENV = {"CADENCE_API_TOKEN": API_TOKEN, "CADENCE_SECRET": "s", "TWILIO_AUTH_TOKEN": "t"}
FIELDS = {"file", "message_id", "kind", "lead", "touch", "action", "until", "reason"}
CORPUS = Path(__file__).parent.parent / "inbox"


def _lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


@pytest.fixture
def sent(cli: Cli) -> Cli:
    """The starter leads enrolled and their intros sent (file outbox)."""
    assert "imported 8" in cli("leads", "import", "leads.csv", now=NOW).output  # and rejects its 4 broken rows
    assert cli("enroll", "outbound-saas", "--all-new", now=NOW).exit_code == 0
    assert cli("run", "--once", now=NOW).exit_code == 0
    return cli


def _intro_id(cli: Cli, lead: str) -> str:
    touches = json.loads(cli("touches", "--lead", lead, "--json", now=LATER).stdout)
    return next(t["message_id"] for t in touches if t["step"] == "intro")


def _reply(cli: Cli, lead_email: str, lead: str, text: str, mid: str) -> bytes:
    return (
        f"From: <{lead_email}>\r\nTo: alice@acme.example\r\nSubject: Re: hello\r\nMessage-ID: {mid}\r\n"
        f"In-Reply-To: {_intro_id(cli, lead)}\r\nDate: Tue, 24 Nov 2026 09:00:00 -0500\r\n\r\n{text}\r\n"
    ).encode()


def test_process_prints_one_json_object_per_message_and_reports_duplicates(sent: Cli) -> None:
    mail = sent.project / "mail"
    mail.mkdir()
    (mail / "reply.eml").write_bytes(_reply(sent, "dana.wu@northwind.example", "L1", "Yes, let's talk.", "<a@nw>"))
    stranger = (CORPUS / "reply-stranger.eml").read_bytes()
    (mail / "stranger.eml").write_bytes(stranger)
    result = sent("inbox", "process", "mail/reply.eml", "mail/stranger.eml", "mail/reply.eml", "--json", now=LATER)
    assert result.exit_code == 0, result.output
    out = _lines(result.stdout)
    assert [set(o) for o in out] == [FIELDS] * 3
    assert [(o["file"], o["kind"], o["lead"]) for o in out] == [
        ("mail/reply.eml", "reply", "L1"),
        ("mail/stranger.eml", "unmatched", None),
        ("mail/reply.eml", "duplicate", None),
    ]
    assert isinstance(out[0]["touch"], int) and out[0]["until"] is None and out[0]["message_id"] == "<a@nw>"
    unmatched = json.loads(sent("inbox", "unmatched", "--json", now=LATER).stdout)
    assert [m["kind"] for m in unmatched] == ["unmatched"] and unmatched[0]["reason"]
    replies = json.loads(sent("inbox", "list", "--kind", "reply", "--json", now=LATER).stdout)
    assert [m["lead"] for m in replies] == ["L1"]
    assert json.loads(sent("inbox", "list", "--since", "2026-11-25", "--json", now=LATER).stdout) == []
    status = json.loads(sent("status", "L1", "--json", now=LATER).stdout)
    assert status["inbox"][0]["text"].startswith("Yes, let's talk")


def test_process_reads_standard_input(sent: Cli) -> None:
    raw = _reply(sent, "ana.costa@acme-br.example", "L7", "Please remove me from your list.", "<b@acme-br>")
    from cadence.cli.app import app

    result = sent.runner.invoke(
        app, ["--config", str(sent.project / "config.yaml"), "inbox", "process", "-", "--json"], input=raw,
        env={"CADENCE_NOW": LATER, "CADENCE_DATABASE_URL": sent.db_url},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [out] = _lines(result.stdout)
    assert out["file"] == "-" and out["kind"] == "unsubscribe_request" and out["lead"] == "L7"


def test_a_missing_file_is_named_and_the_others_are_still_processed(sent: Cli) -> None:
    (sent.project / "ok.eml").write_bytes(_reply(sent, "dana.wu@northwind.example", "L1", "Call me.", "<c@nw>"))
    result = sent("inbox", "process", "nope.eml", "ok.eml", "--json", now=LATER)
    assert result.exit_code == 1
    assert "nope.eml" in result.output and "Traceback" not in result.output
    assert [o["kind"] for o in _lines(result.stdout)] == ["reply"]


def test_every_corpus_message_goes_through_the_cli_without_a_traceback(sent: Cli) -> None:
    files = sorted(str(p) for p in CORPUS.glob("*.eml"))
    result = sent("inbox", "process", *files, "--json", now=LATER)
    assert result.exit_code == 0, result.output[-2000:]
    out = _lines(result.stdout)
    assert len(out) == len(files) and all(set(o) == FIELDS for o in out)


@pytest.fixture
def web(sent: Cli) -> Iterator[tuple[httpx.Client, Cli, App]]:
    app = App.load(
        sent.project / "config.yaml", FixedClock(parse_instant(LATER)), database_url=sent.db_url, environ=ENV
    )
    switchboard = Switchboard()
    switchboard.target = create_app(app, environ=ENV)
    with serving(switchboard) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client, sent, app
    app.close()


def test_post_inbound_email_takes_a_raw_message_through_the_same_path(web: tuple[httpx.Client, Cli, App]) -> None:
    client, cli, _ = web
    raw = _reply(cli, "dana.wu@northwind.example", "L1", "Interested!", "<h@nw>")
    headers = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "message/rfc822"}
    assert client.post("/inbound/email", content=raw, headers={"Content-Type": "message/rfc822"}).status_code == 401
    wrong = client.post("/inbound/email", content=raw, headers={**headers, "Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert (
        client.post("/inbound/email", content=raw, headers={**headers, "Content-Type": "image/png"}).status_code == 415
    )
    assert client.post("/inbound/email", content=b"  ", headers=headers).status_code == 400
    answer = client.post("/inbound/email", content=raw, headers=headers)
    assert answer.status_code == 200 and set(answer.json()) == FIELDS
    assert answer.json()["kind"] == "reply" and answer.json()["lead"] == "L1" and answer.json()["file"] is None
    (cli.project / "same.eml").write_bytes(raw)
    [again] = _lines(cli("inbox", "process", "same.eml", "--json", now=LATER).stdout)
    assert again["kind"] == "duplicate"  # the file door knows what the HTTP door took


def test_post_inbound_email_reads_only_the_head_of_a_huge_message(web: tuple[httpx.Client, Cli, App]) -> None:
    client, cli, _ = web
    head = _reply(cli, "leo.garcia@hooli.example", "L6", "See attached.", "<big@hooli>")
    huge = head + b"\r\n" + b"A" * (20 * 1024 * 1024)  # 20 MB of attachment
    headers = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "message/rfc822"}
    answer = client.post("/inbound/email", content=huge, headers=headers)
    assert answer.status_code == 200 and answer.json()["kind"] == "reply" and answer.json()["lead"] == "L6"
    too_big = client.post("/inbound/email", content=b"x" * (33 * 1024 * 1024), headers=headers)
    assert too_big.status_code == 413
