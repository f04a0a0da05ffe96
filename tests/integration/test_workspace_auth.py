"""Signing in to the web workspace: passwords, sessions, CSRF, rate limits, proxy sign-on, headers, users add.

Signing in touches no table, so these run on SQLite only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.manage.users import hash_password
from cadence.web import create_app
from tests.http_server import Switchboard, serving

NOW = "2026-11-30T10:00:00-05:00"
SECRET = "workspace-test-secret"
ENV = {"CADENCE_SECRET": SECRET, "CADENCE_API_TOKEN": "api", "TWILIO_AUTH_TOKEN": "t"}
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22", "maria": "maria-password-333"}


def with_users(project: Path, **extra: object) -> None:
    path = project / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["users"] = [
        {"id": "alice", "name": "Alice Moreno", "role": "sdr", "password_hash": hash_password(PASSWORDS["alice"])},
        {"id": "bob", "role": "sdr", "password_hash": hash_password(PASSWORDS["bob"])},
        {"id": "maria", "name": "Maria Manager", "role": "manager", "password_hash": hash_password(PASSWORDS["maria"])},
    ]
    data["public_url"] = "http://127.0.0.1"  # the cookie is Secure only under https (tested below)
    data.update(extra)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture
def site(project: Path, sqlite_url: str) -> Iterator[tuple[httpx.Client, App]]:
    with_users(project)
    app = App.load(project / "config.yaml", FixedClock(parse_instant(NOW)), database_url=sqlite_url, environ=ENV)
    switchboard = Switchboard()
    switchboard.target = create_app(app, environ=ENV)
    with serving(switchboard) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client, app
    app.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def sign_in(client: httpx.Client, user: str, password: str | None = None, **extra: str) -> httpx.Response:
    token = csrf_of(client.get("/login").text)
    form = {"user": user, "password": password or PASSWORDS[user], "csrf": token, **extra}
    return client.post("/login", data=form)


def test_anonymous_pages_send_you_to_sign_in_and_actions_are_refused(site: tuple[httpx.Client, App]) -> None:
    client, _ = site
    answer = client.get("/today")
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/today"
    assert client.get("/").headers["location"] == "/today"
    assert client.post("/logout", data={}).status_code == 401


def test_signing_in_sets_a_safe_session_cookie_and_goes_on(site: tuple[httpx.Client, App]) -> None:
    client, _ = site
    answer = sign_in(client, "alice", next="/leads/L1")
    assert answer.status_code == 303 and answer.headers["location"] == "/leads/L1"
    cookie = answer.headers["set-cookie"].lower()
    assert "cadence_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # public_url is http here
    page = client.get("/login")  # signed in: the sign-in page moves on
    assert page.status_code == 303


def test_no_open_redirect_after_sign_in(site: tuple[httpx.Client, App]) -> None:
    client, _ = site
    for target in ("//evil.example/x", "https://evil.example", "/\\evil.example"):
        client.cookies.clear()
        assert sign_in(client, "bob", next=target).headers["location"] == "/today"


def test_wrong_passwords_are_refused_then_rate_limited_per_user_and_per_address(site: tuple[httpx.Client, App]) -> None:
    client, _ = site
    for _ in range(5):
        wrong = sign_in(client, "alice", "not-her-password")
        assert wrong.status_code == 401 and "Wrong user or password" in wrong.text
    limited = sign_in(client, "alice")  # even the right password waits now
    assert limited.status_code == 429 and "Too many failed sign-ins" in limited.text
    assert sign_in(client, "bob").status_code == 303  # another user from this address may still sign in
    client.cookies.clear()
    unknown = sign_in(client, "nobody", "whatever-it-is")
    assert unknown.status_code == 401 and "Wrong user or password" in unknown.text  # no hint that the id is unknown


def test_a_login_or_logout_without_its_csrf_token_changes_nothing(site: tuple[httpx.Client, App]) -> None:
    client, _ = site
    client.get("/login")
    forged = client.post("/login", data={"user": "alice", "password": PASSWORDS["alice"]})
    assert forged.status_code == 403 and "This form has expired" in forged.text
    assert client.get("/today").status_code == 303  # not signed in
    assert sign_in(client, "alice").status_code == 303
    assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert client.get("/login").status_code == 303  # still signed in


def test_logout_with_the_token_ends_the_session(site: tuple[httpx.Client, App]) -> None:
    client, _ = site
    sign_in(client, "maria")
    token = _token_after_sign_in(client)
    out = client.post("/logout", data={"csrf": token})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert client.get("/today").status_code == 303


def _token_after_sign_in(client: httpx.Client) -> str:
    """The session's token, from a page a signed-in user gets (a refusal's page carries the base layout)."""
    page = client.post("/logout", data={})  # 403: no token, nothing changed; the page carries the real one
    found = re.search(r'data-csrf="([^"]+)"', page.text)
    assert found, page.text[:300]
    return found.group(1)


def test_every_answer_carries_the_security_headers(site: tuple[httpx.Client, App]) -> None:
    client, _ = site
    for answer in (client.get("/login"), client.get("/static/workspace.css"), client.post("/events", json={})):
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert "unsafe-inline" not in answer.headers["content-security-policy"]
        assert answer.headers["x-frame-options"] == "DENY" and answer.headers["referrer-policy"] == "same-origin"


def test_htmx_is_served_from_cadence_itself(site: tuple[httpx.Client, App]) -> None:
    client, _ = site
    page = client.get("/login").text
    assert '<script src="/static/htmx-2.0.11.min.js" defer></script>' in page and "<script>" not in page
    assert client.get("/static/htmx-2.0.11.min.js").status_code == 200


def test_proxy_sign_on_trusts_the_header_only_from_a_trusted_proxy(project: Path, sqlite_url: str) -> None:
    with_users(project, auth="proxy", trusted_proxies=["127.0.0.1/32"])
    app = App.load(project / "config.yaml", FixedClock(parse_instant(NOW)), database_url=sqlite_url, environ=ENV)
    switchboard = Switchboard()
    switchboard.target = create_app(app, environ=ENV)
    try:
        with serving(switchboard) as base, httpx.Client(base_url=base, timeout=30) as client:
            assert client.get("/login", headers={"X-Forwarded-User": "maria"}).status_code == 303
            assert client.get("/login").status_code == 401
            assert client.post("/login", data={"user": "maria", "password": "x"}).status_code == 404
        with_users(project, auth="proxy", trusted_proxies=["10.0.0.0/8"])
        app.close()
        app = App.load(project / "config.yaml", FixedClock(parse_instant(NOW)), database_url=sqlite_url, environ=ENV)
        switchboard.target = create_app(app, environ=ENV)
        with serving(switchboard) as base, httpx.Client(base_url=base, timeout=30) as client:
            assert client.get("/login", headers={"X-Forwarded-User": "maria"}).status_code == 401  # not from the proxy
    finally:
        app.close()


def test_without_cadence_secret_the_workspace_says_so(project: Path, sqlite_url: str) -> None:
    with_users(project)
    env = {k: v for k, v in ENV.items() if k != "CADENCE_SECRET"}
    app = App.load(project / "config.yaml", FixedClock(parse_instant(NOW)), database_url=sqlite_url, environ=env)
    switchboard = Switchboard()
    switchboard.target = create_app(app, environ=env)
    try:
        with serving(switchboard) as base, httpx.Client(base_url=base, timeout=30) as client:
            token = csrf_of(client.get("/login").text)
            answer = client.post("/login", data={"user": "alice", "password": PASSWORDS["alice"], "csrf": token})
            assert answer.status_code == 503 and "CADENCE_SECRET" in answer.text
    finally:
        app.close()


def test_users_add_writes_only_a_hash_and_keeps_the_file(project: Path) -> None:
    from cadence.cli.app import app as cli

    before = (project / "config.yaml").read_text()
    runner = CliRunner()
    args = ["--config", str(project / "config.yaml"), "users", "add"]
    added = runner.invoke(
        cli, [*args, "alice", "--name", "Alice Moreno", "--password-stdin"], input="a-long-password\n"
    )
    assert added.exit_code == 0, added.output
    after = (project / "config.yaml").read_text()
    assert after.startswith(before.rstrip("\n")) and "a-long-password" not in after  # comments and layout kept
    [user] = yaml.safe_load(after)["users"]
    assert user["id"] == "alice" and user["role"] == "sdr" and user["password_hash"].startswith("$argon2id$")
    again = runner.invoke(cli, [*args, "alice", "--password-stdin"], input="another-long-one\n")
    assert again.exit_code == 0 and "updated" in again.output
    assert len(yaml.safe_load((project / "config.yaml").read_text())["users"]) == 1
    short = runner.invoke(cli, [*args, "bob", "--password-stdin"], input="short\n")
    assert short.exit_code == 1 and "at least 10" in short.output
    stranger = runner.invoke(cli, [*args, "carol", "--password-stdin"], input="a-long-password\n")
    assert stranger.exit_code == 1 and "not a sender" in stranger.output
    manager = runner.invoke(cli, [*args, "carol", "--role", "manager", "--password-stdin"], input="a-long-password\n")
    assert manager.exit_code == 0
    validate = runner.invoke(cli, ["--config", str(project / "config.yaml"), "validate"])
    assert validate.exit_code == 0, validate.output


def test_the_session_cookie_is_secure_when_public_url_is_https(project: Path, sqlite_url: str) -> None:
    with_users(project, public_url="https://cadence.acme.example")
    app = App.load(project / "config.yaml", FixedClock(parse_instant(NOW)), database_url=sqlite_url, environ=ENV)
    switchboard = Switchboard()
    switchboard.target = create_app(app, environ=ENV)
    try:
        with serving(switchboard) as base, httpx.Client(base_url=base, timeout=30) as client:
            assert "; secure" in client.get("/login").headers["set-cookie"].lower()
    finally:
        app.close()
