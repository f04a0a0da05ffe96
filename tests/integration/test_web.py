"""`cadence serve` through a real uvicorn server on 127.0.0.1, on each store.

Twilio's signatures are computed by the twilio library itself, for the public URL
in config.yaml (https://cadence.acme.example/...), while the requests go to the
loopback server: the app must rebuild the URL from `public_url`, not the Host.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.engine.runner import run_once
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.enrollment.status import lead_status
from cadence.plan.tokens import sign
from cadence.store.tables import EnrollmentT, HistoryT, LeadT, SuppressionT, TouchT
from cadence.web import create_app
from tests.http_server import Switchboard, serving

PUBLIC = "https://cadence.acme.example"
TWILIO_TOKEN = "twilio-test-token"
API_TOKEN = "api-test-token"
FORM_TOKEN = "form-test-token"
SECRET = "unsubscribe-test-secret"
ENV = {
    "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "CADENCE_API_TOKEN": API_TOKEN, "CADENCE_FORM_TOKEN": FORM_TOKEN,
    "CADENCE_SECRET": SECRET,
}  # fmt: skip
MON_10 = "2026-11-30T10:00:00-05:00"  # New York, inside every window
OUR_NUMBER = "+15550100001"
PHONES = {"L1": "+12125550101", "L2": "+12125550102", "L3": "+12125550103"}
TEXTING = """\
id: texting
name: Text, then email
kind: outbound
steps:
  - {id: text, day: 1, channel: sms, immediate: true, template: outbound-saas/sms-1.txt.j2}
  - {id: mail, day: 1, channel: email, immediate: true, subject: "Hi {{ lead.first_name }}",
     template: outbound-saas/intro.md.j2}
"""
BEARER = {"Authorization": f"Bearer {API_TOKEN}"}


def _row(lead_id: str, **values: str) -> dict[str, str | None]:
    row: dict[str, str | None] = {
        "id": lead_id, "email": f"{lead_id.lower()}@northwind.example", "phone": PHONES[lead_id],
        "first_name": f"Dana{lead_id}", "company": "Northwind", "owner": "alice", "timezone": "America/New_York",
        "country": "US", "sms_consent": "yes",
    }  # fmt: skip
    row.update(values)
    return row


@pytest.fixture
def app(project: Path, db_url: str) -> Iterator[App]:
    """L1..L3 (SMS consent, alice's), enrolled in `texting` at Monday 10:00."""
    (project / "sequences" / "texting.yaml").write_text(TEXTING)
    app = App.load(project / "config.yaml", FixedClock(parse_instant(MON_10)), database_url=db_url, environ=ENV)
    rows = [_row("L1"), _row("L2"), _row("L3")]
    report = import_leads(app.engine, list(enumerate(rows, start=2)), app.settings, app.clock.now())
    assert not report.rejected
    assert len(enroll(app, "texting", ["L1", "L2", "L3"]).enrolled) == 3
    yield app
    app.close()


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Switchboard, httpx.Client]]:
    """One uvicorn server (and keep-alive client) for the module; each test plugs in its own app."""
    switchboard = Switchboard()
    with serving(switchboard) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield switchboard, client


@pytest.fixture
def web(app: App, server: tuple[Switchboard, httpx.Client]) -> Iterator[httpx.Client]:
    switchboard, client = server
    switchboard.target = create_app(app, environ=ENV)
    yield client
    switchboard.target = None


# -- helpers ----------------------------------------------------------------------------


def twilio_post(
    web: httpx.Client, path: str, params: dict[str, str], *, token: str = TWILIO_TOKEN, url: str | None = None
) -> httpx.Response:
    signature = RequestValidator(token).compute_signature(url or PUBLIC + path, params)
    return web.post(path, data=params, headers={"X-Twilio-Signature": signature})


def sms_in(web: httpx.Client, lead: str, body: str, *, sid: str | None = None, **kwargs: Any) -> httpx.Response:
    """An inbound SMS as Twilio posts it; each gets a new MessageSid unless `sid` replays one."""
    params = {
        "MessageSid": sid or "SM" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32, "From": PHONES.get(lead, lead),
        "To": OUR_NUMBER, "Body": body, "NumMedia": "0",
    }  # fmt: skip
    return twilio_post(web, "/twilio/sms", params, **kwargs)


def status_in(web: httpx.Client, sid: str, status: str, code: str | None = None) -> httpx.Response:
    params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC" + "0" * 32, "To": PHONES["L1"]}
    if code:
        params["ErrorCode"] = code
    return twilio_post(web, "/twilio/status", params)


def history(app: App, lead: str | None = None) -> list[dict[str, Any]]:
    query = select(HistoryT).order_by(HistoryT.c.id)
    if lead:
        query = query.where(HistoryT.c.lead_id == lead)
    with app.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def events(app: App, lead: str) -> list[str]:
    return [h["detail"]["event"] for h in history(app, lead) if h["kind"] == "event"]


def count(app: App, table: Any) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def suppressed(app: App) -> set[tuple[str, str]]:
    with app.engine.connect() as conn:
        return {(c, a) for c, a in conn.execute(select(SuppressionT.c.channel, SuppressionT.c.address))}


def lead(app: App, lead_id: str) -> dict[str, Any]:
    with app.engine.connect() as conn:
        return dict(conn.execute(select(LeadT).where(LeadT.c.id == lead_id)).mappings().one())


def touch(app: App, sid: str) -> dict[str, Any]:
    with app.engine.connect() as conn:
        return dict(conn.execute(select(TouchT).where(TouchT.c.provider_id == sid)).mappings().one())


def engine_pass(app: App) -> None:
    asyncio.run(run_once(app))


def sent_sms(app: App) -> dict[str, str]:
    """Phone -> SID of what the engine texted (the outbox)."""
    path = app.settings.outbox_dir / "sms.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return {line["to"]: line["sid"] for line in lines}


def by_step(app: App, lead_id: str) -> dict[str, dict[str, Any]]:
    return {t["step"]: t for t in lead_status(app, lead_id)["touches"] if t["id"] is not None}


# -- inbound SMS ------------------------------------------------------------------------


def test_stop_suppresses_sms_to_that_number_and_email_steps_go_on(app: App, web: httpx.Client) -> None:
    answer = sms_in(web, "L1", "  stop ")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/xml")
    assert "<Message>" not in answer.text
    assert events(app, "L1") == ["sms_stop"]
    assert ("sms", PHONES["L1"]) in suppressed(app)
    engine_pass(app)
    steps = by_step(app, "L1")
    assert steps["text"]["status"] == "skipped" and "STOP" in steps["text"]["error"]
    assert steps["mail"]["status"] == "sent"  # email goes on
    texted = sent_sms(app)
    assert PHONES["L1"] not in texted and PHONES["L2"] in texted  # only the number that said STOP


def test_every_opt_out_keyword_is_a_stop(app: App, web: httpx.Client) -> None:
    keywords = ["STOPALL", "unsubscribe", "Cancel", "END", "quit", "REVOKE", "optout"]
    for keyword in keywords:
        assert sms_in(web, "L2", keyword).status_code == 200
    assert events(app, "L2") == ["sms_stop"] * len(keywords)


def test_start_lifts_the_suppression_and_records_consent(app: App, web: httpx.Client) -> None:
    sms_in(web, "L2", "STOP")
    with app.engine.begin() as conn:
        conn.execute(LeadT.update().where(LeadT.c.id == "L2").values(sms_consent=False))
    assert sms_in(web, "L2", "start").status_code == 200
    assert ("sms", PHONES["L2"]) not in suppressed(app)
    assert lead(app, "L2")["sms_consent"] is True
    assert events(app, "L2") == ["sms_stop", "sms_start"]
    engine_pass(app)
    assert PHONES["L2"] in sent_sms(app)  # texted again


def test_help_is_answered_with_who_is_texting(app: App, web: httpx.Client) -> None:
    answer = sms_in(web, "L3", "help")
    assert answer.status_code == 200
    assert "<Message>" in answer.text and "Alice Moreno" in answer.text and "STOP" in answer.text
    assert not suppressed(app)


def test_other_text_is_an_sms_reply_in_the_history(app: App, web: httpx.Client) -> None:
    answer = sms_in(web, "L1", "please stop texting me on weekends")  # not a lone keyword: a reply
    assert answer.status_code == 200 and "<Message>" not in answer.text
    replies = [h for h in history(app, "L1") if h["kind"] == "event"]
    assert [h["detail"]["event"] for h in replies] == ["sms_reply"]
    assert replies[0]["detail"]["body"] == "please stop texting me on weekends"
    assert not suppressed(app)


def test_a_replayed_inbound_sms_is_recorded_once(app: App, web: httpx.Client) -> None:
    stop, reply, help_ = "SM" + "a" * 32, "SM" + "b" * 32, "SM" + "c" * 32
    for _ in range(3):  # Twilio retries a webhook whose answer it did not get, with the same MessageSid
        assert sms_in(web, "L1", "STOP", sid=stop).status_code == 200
        assert sms_in(web, "L2", "Thursday works", sid=reply).status_code == 200
        answer = sms_in(web, "L3", "HELP", sid=help_)
        assert answer.status_code == 200 and "Alice Moreno" in answer.text  # the lost answer is given again
    assert events(app, "L1") == ["sms_stop"]
    assert events(app, "L2") == ["sms_reply"]
    assert [h["kind"] for h in history(app, "L3")].count("sms_help") == 1
    assert len([h for h in history(app, "L2") if h["kind"] == "task_opened"]) == 1  # the owner is told once
    sms_in(web, "L2", "Thursday works")  # the same words in a new message are a new reply
    assert events(app, "L2") == ["sms_reply", "sms_reply"]


def test_unknown_number_gets_empty_twiml_and_nothing_is_recorded(app: App, web: httpx.Client) -> None:
    before = count(app, HistoryT)
    answer = sms_in(web, "+12125550199", "STOP")
    assert answer.status_code == 200 and answer.text.endswith("<Response />")
    assert count(app, HistoryT) == before and not suppressed(app)


def test_forged_or_missing_signature_gets_403_and_records_nothing(app: App, web: httpx.Client) -> None:
    before = count(app, HistoryT)
    assert sms_in(web, "L1", "STOP", token="not-the-auth-token").status_code == 403
    loopback = str(web.base_url).rstrip("/") + "/twilio/sms"  # signed for the Host, not the public URL
    assert sms_in(web, "L1", "STOP", url=loopback).status_code == 403
    params = {"From": PHONES["L1"], "To": OUR_NUMBER, "Body": "hello"}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC + "/twilio/sms", params)
    tampered = web.post("/twilio/sms", data={**params, "Body": "STOP"}, headers={"X-Twilio-Signature": signature})
    assert tampered.status_code == 403
    assert web.post("/twilio/sms", data={"From": PHONES["L1"], "Body": "STOP"}).status_code == 403
    status = {"MessageSid": "SM" + "2" * 32, "MessageStatus": "failed", "ErrorCode": "21610"}
    assert twilio_post(web, "/twilio/status", status, token="forged").status_code == 403
    assert count(app, HistoryT) == before and not suppressed(app)


# -- status callbacks -------------------------------------------------------------------


def test_status_callbacks_only_move_forward_and_duplicates_change_nothing(app: App, web: httpx.Client) -> None:
    engine_pass(app)
    sid = sent_sms(app)[PHONES["L1"]]
    assert status_in(web, sid, "sent").status_code == 200
    assert touch(app, sid)["delivery"] == "sent"
    status_in(web, sid, "queued")  # late
    assert touch(app, sid)["delivery"] == "sent"
    status_in(web, sid, "delivered")
    before = count(app, HistoryT)
    for late in ("delivered", "sending", "undelivered", "failed"):
        status_in(web, sid, late)
    row = touch(app, sid)
    assert (row["delivery"], row["error"], row["status"]) == ("delivered", None, "sent")
    assert count(app, HistoryT) == before


def test_failed_delivery_keeps_its_code_and_21610_suppresses(app: App, web: httpx.Client) -> None:
    engine_pass(app)
    sids = sent_sms(app)
    status_in(web, sids[PHONES["L1"]], "failed", "21610")
    status_in(web, sids[PHONES["L1"]], "failed", "21610")  # duplicate
    status_in(web, sids[PHONES["L1"]], "delivered")  # failed is final
    row = touch(app, sids[PHONES["L1"]])
    assert row["delivery"] == "failed" and "21610" in row["error"]
    assert ("sms", PHONES["L1"]) in suppressed(app)
    assert events(app, "L1").count("sms_stop") == 1

    status_in(web, sids[PHONES["L2"]], "undelivered", "30005")
    assert lead(app, "L2")["phone_invalid"] is True
    assert "30005" in touch(app, sids[PHONES["L2"]])["error"]

    status_in(web, sids[PHONES["L3"]], "undelivered", "30007")
    filtered = [h for h in history(app, "L3") if h["kind"] == "sender_filtered"]
    assert len(filtered) == 1 and filtered[0]["detail"]["sender"] == "alice"
    assert lead(app, "L3")["phone_invalid"] is False and ("sms", PHONES["L3"]) not in suppressed(app)
    engine_pass(app)
    assert sum(1 for t in lead_status(app, "L3")["touches"] if t["step"] == "text") == 1  # never resent


def test_a_replayed_failure_report_records_its_history_and_events_once(app: App, web: httpx.Client) -> None:
    engine_pass(app)
    sid = sent_sms(app)[PHONES["L2"]]
    for _ in range(3):
        assert status_in(web, sid, "undelivered", "30005").status_code == 200
    assert [h["kind"] for h in history(app, "L2")].count("delivery") == 1
    assert events(app, "L2").count("phone_invalid") == 1
    assert touch(app, sid)["delivery"] == "undelivered"


# -- unsubscribe ------------------------------------------------------------------------


def test_unsubscribe_get_changes_nothing_and_post_suppresses_once(app: App, web: httpx.Client) -> None:
    token = sign("L1", SECRET)
    before = count(app, HistoryT)
    page = web.get(f"/u/{token}")
    assert page.status_code == 200 and '<form method="post"' in page.text
    assert count(app, HistoryT) == before and not suppressed(app)

    done = web.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "unsubscribed" in done.text
    assert suppressed(app) == {("email", "l1@northwind.example")}
    assert lead_status(app, "L1")["enrollments"][0]["state"] == "finished"  # unsubscribed is in exit_on
    after = count(app, HistoryT)
    assert web.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click").status_code == 200
    assert count(app, HistoryT) == after  # idempotent


def test_forged_or_altered_unsubscribe_token_changes_nothing(app: App, web: httpx.Client) -> None:
    forged = sign("L1", "someone-elses-secret")
    genuine_mac = sign("L1", SECRET).split(".")[1]
    altered = base64.urlsafe_b64encode(b"L2").rstrip(b"=").decode() + "." + genuine_mac
    before = count(app, HistoryT)
    for token in (forged, altered, "garbage", sign("L1", SECRET) + "x"):
        assert web.get(f"/u/{token}").status_code == 400
        assert web.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    assert count(app, HistoryT) == before and not suppressed(app)


# -- POST /events -----------------------------------------------------------------------


def test_events_need_the_bearer_token(app: App, web: httpx.Client) -> None:
    body = {"lead": "L1", "event": "replied"}
    assert web.post("/events", json=body).status_code == 401
    assert web.post("/events", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert events(app, "L1") == []
    answer = web.post("/events", json={**body, "lead": "L1@Northwind.example", "note": "seen in inbox"}, headers=BEARER)
    assert answer.status_code == 200
    # The starter rules tell the owner about any reply.
    assert answer.json() == {
        "lead": "L1",
        "event": "replied",
        "actions": ["ended texting (replied)", "task opened for alice"],
    }
    assert events(app, "L1") == ["replied"]


def test_events_refuse_unknown_leads_and_events_and_take_a_return_date(app: App, web: httpx.Client) -> None:
    assert web.post("/events", json={"lead": "L9", "event": "replied"}, headers=BEARER).status_code == 404
    bad = web.post("/events", json={"lead": "L1", "event": "exploded"}, headers=BEARER)
    assert bad.status_code == 422 and "replied" in bad.json()["error"]
    assert web.post("/events", content=b"{not json", headers=BEARER).status_code == 400
    away = {"lead": "L2", "event": "out_of_office", "until": "2026-12-14"}
    answer = web.post("/events", json=away, headers=BEARER)
    assert answer.status_code == 200 and answer.json()["actions"] == ["paused texting until 2026-12-14"]
    assert lead_status(app, "L2")["enrollments"][0]["state"] == "paused"


# -- POST /leads ------------------------------------------------------------------------


def test_inbound_leads_rotate_owners_keep_a_given_one_and_enroll_at_once(app: App, web: httpx.Client) -> None:
    now = app.clock.now()
    owners = []
    for n in range(3):
        answer = web.post(
            "/leads",
            json={"email": f"web{n}@initech.example", "first_name": "Web", "company": "Initech", "plan": "pro"},
            headers=BEARER,
        )
        assert answer.status_code == 201, answer.text
        result = answer.json()
        assert result["created"] is True and result["refused"] is None
        assert result["enrolled"]["sequence"] == "outbound-hot"  # config.yaml's inbound_sequence
        assert parse_instant(result["enrolled"]["next_due_at"]) == now  # `immediate: true`: the next pass
        owners.append(result["owner"])
    assert owners == ["alice", "bob", "alice"]
    assert lead(app, "web0@initech.example")["fields"] == {"source": "inbound", "plan": "pro"}

    given = web.post("/leads", json={"id": "W4", "email": "w4@initech.example", "owner": "bob"}, headers=BEARER)
    assert given.json()["owner"] == "bob"

    # a restarted server (a new App on the same store) continues the rotation
    restarted = App.load(app.settings.root / "config.yaml", app.clock, database_url=app.database_url, environ=ENV)
    try:
        with serving(create_app(restarted, environ=ENV)) as base, httpx.Client(base_url=base) as again:
            answer = again.post("/leads", json={"id": "W5", "email": "w5@initech.example"}, headers=BEARER)
    finally:
        restarted.close()
    assert answer.json()["owner"] == "bob"


def test_an_html_form_posts_a_lead_with_the_token_in_a_hidden_field(app: App, web: httpx.Client) -> None:
    form = {"token": FORM_TOKEN, "email": "form@initech.example", "first_name": "Form", "company": "Initech"}
    answer = web.post("/leads", data=form)  # what a browser sends: application/x-www-form-urlencoded
    assert answer.status_code == 201, answer.text
    assert answer.json()["enrolled"]["sequence"] == "outbound-hot"
    saved = lead(app, answer.json()["lead"])
    assert saved["first_name"] == "Form" and "token" not in saved["fields"]  # the token is never saved

    by_header = web.post(
        "/leads", data={"email": "hdr@initech.example"}, headers={"Authorization": f"Bearer {FORM_TOKEN}"}
    )
    assert by_header.status_code == 201
    assert web.post("/leads", data={"token": API_TOKEN, "email": "api@initech.example"}).status_code == 201


def test_a_form_without_the_right_token_saves_nothing(app: App, web: httpx.Client) -> None:
    before = count(app, LeadT)
    for form in ({"email": "x@initech.example"}, {"token": "guess", "email": "x@initech.example"}):
        answer = web.post("/leads", data=form)
        assert answer.status_code == 401 and "token" in answer.json()["error"]
    # The form token posts leads only: it cannot report events.
    as_form = {"Authorization": f"Bearer {FORM_TOKEN}"}
    assert web.post("/events", json={"lead": "L1", "event": "unsubscribed"}, headers=as_form).status_code == 401
    assert count(app, LeadT) == before and events(app, "L1") == []


def test_a_body_in_a_type_the_route_does_not_read_gets_415(app: App, web: httpx.Client) -> None:
    before = count(app, HistoryT), count(app, LeadT)
    multipart = web.post("/leads", files={"email": (None, "m@initech.example")}, data={"token": API_TOKEN})
    assert multipart.status_code == 415 and "x-www-form-urlencoded" in multipart.json()["error"]
    xml = web.post("/events", content=b"<event/>", headers={**BEARER, "Content-Type": "application/xml"})
    assert xml.status_code == 415 and "application/json" in xml.json()["error"]
    form = web.post("/events", data={"lead": "L1", "event": "replied"}, headers=BEARER)
    assert form.status_code == 415
    assert (count(app, HistoryT), count(app, LeadT)) == before


def test_inbound_lead_update_refusal_and_invalid_email(app: App, web: httpx.Client) -> None:
    with app.engine.connect() as conn:
        enrollments_before = conn.execute(select(func.count()).select_from(EnrollmentT)).scalar_one()
    # an existing lead, matched by email, already active in an outbound sequence: saved, not enrolled
    answer = web.post(
        "/leads", json={"email": "l1@northwind.example", "title": "CRO", "sequence": "outbound-hot"}, headers=BEARER
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["lead"], result["owner"], result["created"], result["enrolled"]) == ("L1", "alice", False, None)
    assert "already active in texting" in result["refused"]
    assert lead(app, "L1")["title"] == "CRO"

    bad = web.post("/leads", json={"email": "not-an-email", "first_name": "X"}, headers=BEARER)
    assert bad.status_code == 422 and "email" in bad.json()["error"]
    unknown = web.post("/leads", json={"email": "x@initech.example", "sequence": "nope"}, headers=BEARER)
    assert unknown.status_code == 422 and "unknown sequence" in unknown.json()["error"]
    assert web.post("/leads", json={"email": "y@initech.example"}).status_code == 401
    with app.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(LeadT)).scalar_one() == 3
        assert conn.execute(select(func.count()).select_from(EnrollmentT)).scalar_one() == enrollments_before
