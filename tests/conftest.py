"""Shared fixtures: a real store on SQLite and on PostgreSQL, a starter project, the CLI.

PostgreSQL is never skipped: if the local server cannot be reached (and cannot be
started) the PostgreSQL-parametrized tests fail, so CI cannot go green without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from typer.testing import CliRunner

from cadence.app import App
from cadence.clock import FixedClock, parse_instant
from cadence.store.db import make_engine, upgrade

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("CADENCE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TABLES = (
    "recycle", "history", "touch", "suppression", "enrollment", "sequenceversion", "lead", "smsreceipt",
    "inboundmessage", "mailboxcursor", "mailboxlease",
)  # fmt: skip


@pytest.fixture(autouse=True, scope="session")
def _settings_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Validated settings are cached per user (`cadence.settings_cache`): the tests keep theirs to themselves."""
    folder = tmp_path_factory.mktemp("settings-cache")
    folder.chmod(0o700)
    before = os.environ.get("CADENCE_CACHE_DIR")
    os.environ["CADENCE_CACHE_DIR"] = str(folder)
    yield
    if before is None:
        os.environ.pop("CADENCE_CACHE_DIR", None)
    else:
        os.environ["CADENCE_CACHE_DIR"] = before


def _pg_up() -> bool:
    try:
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@contextmanager
def new_pg_database(prefix: str) -> Iterator[str]:
    """A PostgreSQL database of its own, migrated to head, dropped afterwards (never skipped)."""
    if not _pg_up():
        versions = os.listdir("/etc/postgresql") if os.path.isdir("/etc/postgresql") else []
        for version in versions:
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False)
        if not _pg_up():
            pytest.fail(f"PostgreSQL is required for these tests and is not reachable at {PG_ADMIN_URL}")
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head."""
    with new_pg_database("cadence_test") as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each test copies it instead of migrating again."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # the last connection to close checkpoints the WAL into the file
    return path


def _truncate(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(TABLES) + " RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """An empty store at head, on each backend in turn."""
    if request.param == "sqlite":
        target = tmp_path / "cadence.db"
        shutil.copy(sqlite_template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("pg_database")
    _truncate(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    target = tmp_path / "cadence.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def pg_url(pg_database: str) -> str:
    _truncate(pg_database)
    return pg_database


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the starter project (config.yaml, sequences, templates, example leads)."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "config.yaml", root / "config.yaml")
    shutil.copytree(ROOT / "sequences", root / "sequences")
    shutil.copytree(ROOT / "templates", root / "templates")
    shutil.copy(ROOT / "examples" / "leads.csv", root / "leads.csv")
    return root


def make_app(project: Path, db_url: str, now: str | datetime) -> App:
    instant = parse_instant(now) if isinstance(now, str) else now
    return App.load(project / "config.yaml", FixedClock(instant), database_url=db_url)


@dataclass
class Cli:
    """Runs `cadence` in-process with CADENCE_NOW and the test's database."""

    project: Path
    db_url: str
    runner: CliRunner

    def __call__(self, *args: str, now: str = "2026-11-23T08:00:00-05:00", env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        from cadence.cli.app import app

        full_env = {"CADENCE_NOW": now, "CADENCE_DATABASE_URL": self.db_url, **(env or {})}
        cwd = os.getcwd()
        os.chdir(self.project)
        try:
            return self.runner.invoke(app, ["--config", str(self.project / "config.yaml"), *args], env=full_env)
        finally:
            os.chdir(cwd)


@pytest.fixture
def cli(project: Path, db_url: str) -> Cli:
    return Cli(project, db_url, CliRunner())


def engine_for(url: str) -> Engine:
    return make_engine(url)


# -- IMAP: a private Dovecot per test (tests/dovecot.py); never skipped, like PostgreSQL --------------

from tests.dovecot import NOT_INSTALLED, Dovecot, dovecot_binary  # noqa: E402 - kept with the fixture it serves

IMAP_USERS = {"alice@acme.example": "secret", "bob@acme.example": "secret"}


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A started Dovecot on 127.0.0.1 with alice@ and bob@acme.example (password "secret"); fails without Dovecot."""
    if dovecot_binary() is None:
        pytest.fail(NOT_INSTALLED, pytrace=False)
    server = Dovecot.start(IMAP_USERS)
    try:
        yield server
    finally:
        server.stop()
