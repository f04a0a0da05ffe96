"""GET /healthz and GET /readyz: alive, and ready only with a reachable database at the schema's head."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.store.db import alembic_config, head_revision
from cadence.web import create_app
from tests.http_server import Switchboard, serving

ENV = {"CADENCE_SECRET": "s", "CADENCE_API_TOKEN": "a", "TWILIO_AUTH_TOKEN": "t"}


@pytest.fixture
def probe(project: Path, db_url: str) -> Iterator[tuple[httpx.Client, App]]:
    app = App.load(
        project / "config.yaml", FixedClock(parse_instant("2026-11-23T10:00:00-05:00")), database_url=db_url,
        environ=ENV,
    )  # fmt: skip
    switchboard = Switchboard()
    switchboard.target = create_app(app, environ=ENV)
    with serving(switchboard) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client, app
    app.close()


def test_alive_and_ready_at_head_without_any_token(probe: tuple[httpx.Client, App]) -> None:
    client, _ = probe
    alive = client.get("/healthz")
    assert alive.status_code == 200 and alive.json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "database": "ok", "schema": head_revision(), "head": head_revision()}
    assert ready.headers["cache-control"] == "no-store"


def test_not_ready_on_a_schema_behind_head(probe: tuple[httpx.Client, App]) -> None:
    from alembic import command

    client, app = probe

    def migrate(step: str) -> None:
        with app.engine.connect() as conn:
            cfg = alembic_config(app.engine.url.render_as_string(hide_password=False))
            cfg.attributes["connection"] = conn
            (command.downgrade if step == "-1" else command.upgrade)(cfg, step)
            conn.commit()

    migrate("-1")
    try:
        answer = client.get("/readyz")
        assert answer.status_code == 503
        body = answer.json()
        assert body["ready"] is False and body["schema"] != head_revision() and "run the migrations" in body["database"]
        assert client.get("/healthz").status_code == 200  # alive all the same
    finally:
        migrate("head")  # the PostgreSQL test database is shared by the whole run


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_not_ready_when_the_database_cannot_be_reached(project: Path, db_url: str) -> None:
    app = App.load(
        project / "config.yaml", FixedClock(parse_instant("2026-11-23T10:00:00-05:00")), database_url=db_url,
        environ=ENV,
    )  # fmt: skip
    unreachable = App.load(  # nothing listens on port 1: the engine opens (and fails) on first use
        project / "config.yaml", FixedClock(parse_instant("2026-11-23T10:00:00-05:00")),
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2", environ=ENV,
    )  # fmt: skip
    switchboard = Switchboard()
    switchboard.target = create_app(unreachable, environ=ENV)
    try:
        with serving(switchboard) as base, httpx.Client(base_url=base, timeout=30) as client:
            answer = client.get("/readyz")
            assert answer.status_code == 503 and answer.json()["database"].startswith("unreachable: ")
            assert "Traceback" not in answer.text
    finally:
        unreachable.close()
        app.close()
