"""Hostile HTTP bodies get a 4xx JSON error and change nothing, on SQLite and PostgreSQL alike.

The corpus is `tests/hostile/http/*.http` (format in its README): deep nesting, lone
surrogates, NUL bytes, wrong types, huge numbers, bytes that are not UTF-8, a Content-Type
the route does not read. Every file goes to the real Starlette app (in process, through
httpx's ASGI transport, which raises any server error instead of hiding it as a 500), and
the whole store is compared before and after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from twilio.request_validator import RequestValidator

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.store.tables import metadata
from cadence.web import MAX_BODY, create_app
from tests.conftest import TABLES

CORPUS = Path(__file__).resolve().parents[1] / "hostile" / "http"
PUBLIC = "https://cadence.acme.example"  # config.yaml's public_url: what Twilio signs
API_TOKEN, TWILIO_TOKEN = "api-hostile-token", "twilio-hostile-token"
ENV = {"CADENCE_API_TOKEN": API_TOKEN, "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "CADENCE_SECRET": "s"}
BEARER = {"Authorization": f"Bearer {API_TOKEN}"}
A_FEW_SECONDS = 3.0


@dataclass(frozen=True)
class Hostile:
    name: str
    method: str
    path: str
    headers: dict[str, str]
    expect: int
    body: bytes


def read_case(path: Path) -> Hostile:
    head, _, body = path.read_bytes().partition(b"\n\n")
    first, *lines = head.decode("utf-8").splitlines()
    method, target = first.split(" ", 1)
    headers = dict(line.split(": ", 1) for line in lines)
    expect = int(headers.pop("Expect"))
    body = body.removesuffix(b"\n").replace(b"{api_token}", API_TOKEN.encode())
    headers = {k: v.replace("{api_token}", API_TOKEN) for k, v in headers.items()}
    if headers.get("X-Twilio-Signature") == "{twilio_signature}":
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        headers["X-Twilio-Signature"] = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC + target, form)
    return Hostile(path.stem, method, target, headers, expect, body)


CASES = [read_case(p) for p in sorted(CORPUS.glob("*.http"))]


class InProcess:
    """Requests straight into the ASGI app; an exception in the app reaches the test, never a quiet 500."""

    def __init__(self, asgi: Starlette):
        self.asgi = asgi

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://cadence.test") as web:
                return await web.request(method, path, **kwargs)

        return asyncio.run(send())

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)


@pytest.fixture
def client(project: Path, db_url: str) -> Iterator[tuple[App, InProcess]]:
    """The app on a store holding lead L1, created the way an outside system would."""
    app = App.load(project / "config.yaml", FixedClock(parse_instant("2026-11-30T10:00:00-05:00")), database_url=db_url)
    web = InProcess(create_app(app, environ=ENV))
    made = web.post("/leads", json={"id": "L1", "email": "l1@northwind.example", "first_name": "Dana"}, headers=BEARER)
    assert made.status_code == 201, made.text
    yield app, web
    app.close()


def store(app: App) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order."""
    tables = metadata.tables
    with app.engine.connect() as conn:
        return {name: sorted((tuple(row) for row in conn.execute(select(tables[name]))), key=repr) for name in TABLES}


def test_the_corpus_covers_every_route_that_reads_a_body() -> None:
    assert {c.path for c in CASES} == {"/events", "/leads", "/twilio/sms", "/twilio/status"}
    assert len(CASES) >= 50


def test_every_hostile_body_gets_a_4xx_json_error_and_changes_nothing(client: tuple[App, InProcess]) -> None:
    app, web = client
    before = store(app)
    problems = []
    for case in CASES:
        started = time.monotonic()
        answer = web.request(case.method, case.path, content=case.body, headers=case.headers)
        took = time.monotonic() - started
        error = answer.json().get("error") if answer.headers.get("content-type") == "application/json" else None
        if answer.status_code != case.expect:
            problems.append(f"{case.name}: {answer.status_code} (expected {case.expect}): {answer.text[:200]}")
        elif case.expect != 403 and not (isinstance(error, str) and error):  # 403 is the signature's plain text
            problems.append(f"{case.name}: no JSON error message: {answer.text[:200]}")
        if took > A_FEW_SECONDS:
            problems.append(f"{case.name}: took {took:.1f} s")
        if store(app) != before:
            problems.append(f"{case.name}: the store changed")
            before = store(app)
    assert problems == []


def test_a_body_over_the_limit_is_refused_before_it_is_read(client: tuple[App, InProcess]) -> None:
    app, web = client
    before = store(app)
    note = "x" * MAX_BODY
    answer = web.post("/events", json={"lead": "L1", "event": "replied", "note": note}, headers=BEARER)
    assert answer.status_code == 413
    assert store(app) == before


def test_an_unknown_route_or_method_answers_json(client: tuple[App, InProcess]) -> None:
    _, web = client
    missing = web.post("/nowhere", json={})
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    wrong = web.get("/events")
    assert wrong.status_code == 405 and wrong.json() == {"error": "Method Not Allowed"}
