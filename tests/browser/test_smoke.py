"""The unsubscribe page in a real Chromium: the button a recipient sees, the click, the suppression it records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.enrollment.lead_import import import_leads
from cadence.plan.tokens import sign
from cadence.store.tables import SuppressionT
from cadence.web import create_app
from tests.browser.conftest import ServeApp

SECRET = "unsubscribe-test-secret"
ENV = {"CADENCE_SECRET": SECRET}
MON_10 = "2026-11-30T10:00:00-05:00"
LEAD = {
    "id": "L1", "email": "l1@northwind.example", "first_name": "Dana", "company": "Northwind", "owner": "alice",
    "timezone": "America/New_York", "country": "US",
}  # fmt: skip

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def app(project: Path, db_url: str) -> Iterator[App]:
    """One lead, L1, in an otherwise empty store."""
    app = App.load(project / "config.yaml", FixedClock(parse_instant(MON_10)), database_url=db_url, environ=ENV)
    report = import_leads(app.engine, [(2, dict(LEAD))], app.settings, app.clock.now())
    assert not report.rejected
    yield app
    app.close()


def suppressed(app: App) -> set[tuple[str, str]]:
    with app.engine.connect() as conn:
        return {(c, a) for c, a in conn.execute(select(SuppressionT.c.channel, SuppressionT.c.address))}


def test_the_unsubscribe_button_suppresses_the_address(page: Page, serve_app: ServeApp, app: App) -> None:
    site = serve_app(create_app(app, environ=ENV))
    page.goto(f"{site}/u/{sign('L1', SECRET)}")
    expect(page.get_by_role("heading")).to_have_text("Unsubscribe")
    button = page.get_by_role("button", name="Unsubscribe")
    expect(button).to_be_visible()
    assert not suppressed(app)  # showing the page changes nothing

    button.click()
    expect(page.get_by_role("heading")).to_have_text("You are unsubscribed")
    expect(page.get_by_text("You will not receive these emails any more.")).to_be_visible()
    assert suppressed(app) == {("email", "l1@northwind.example")}


def test_an_unknown_route_answers_404_in_json(page: Page, serve_app: ServeApp, app: App) -> None:
    serve_app(create_app(app, environ=ENV))
    response = page.goto("/no-such-page")  # relative: base_url is the same server
    assert response is not None and response.status == 404
    assert response.json() == {"error": "Not Found"}
    expect(page.locator("body")).to_contain_text('{"error":"Not Found"}')
