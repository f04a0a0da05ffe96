"""Engines, SQLite pragmas and the migration runner.

The schema is created and upgraded only by Alembic (`cadence/store/migrations/`, shipped inside
the package and found through importlib.resources, so an installed wheel migrates too). Every command
that opens the store brings it to head first; on PostgreSQL an advisory lock makes
concurrent `cadence run` processes upgrade one at a time.

Finding the store already at head, which is every command but the first after a release, costs one
SELECT: the head is `SCHEMA_HEAD`, written here, so neither alembic nor the migration files are
loaded for it (tests/unit/test_cli_imports.py holds it equal to alembic's own head).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.pool import NullPool

MIGRATIONS = "cadence.store:migrations"  # a package resource: Alembic opens it with importlib.resources
SCHEMA_HEAD = "0007"  # the newest migration's revision: bump it with every migration added
VERSION_TABLE = "alembic_version"
_LOCK_ID = 0x0CADE9CE


def make_engine(url: str, **kwargs: Any) -> Engine:
    # A database error's text reaches logs and a lead's history: never with the statement's values
    # (lead ids, addresses, Message-IDs), only with the statement.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's BEGIN start transactions, with IMMEDIATE so writers queue
            # on busy_timeout instead of failing on lock upgrade.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """This release's schema revision (alembic's head, without reading the migration files)."""
    return SCHEMA_HEAD


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, read from alembic's version table; None when it has none yet."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        found = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(found) > 1:
        raise RuntimeError(f"{VERSION_TABLE} holds {len(found)} revisions ({', '.join(found)}); cadence has one head")
    return found[0] if found else None


def upgrade(engine: Engine) -> None:
    """Bring the schema to head (no-op when it is there already)."""
    if current_revision(engine) == head_revision():
        return
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _LOCK_ID})
            try:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _LOCK_ID})
                conn.commit()
        return
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()


def open_engine(url: str, *, migrate: bool = True, pooled: bool = True) -> Engine:
    engine = make_engine(url) if pooled else make_engine(url, poolclass=NullPool)
    if migrate:
        upgrade(engine)
    return engine


def is_transient(exc: BaseException) -> bool:
    """A database error worth trying again: the connection dropped, a lock or a deadlock timed out."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError)


@contextmanager
def isolated(conn: Connection) -> Iterator[None]:
    """Run one item's writes in a savepoint: if they raise, only they are undone, and the error reaches
    the caller, whose transaction goes on (one lead's trouble never stops the others)."""
    with conn.begin_nested():
        yield
