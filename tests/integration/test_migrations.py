"""Migrations are the schema: `alembic upgrade head` yields exactly what the models declare.

On a fresh SQLite file and a fresh PostgreSQL database: no autogenerate difference,
every index (partial predicates included) as declared, down to base and back up,
and upgrading a store already at head changes nothing.

Alembic's `compare_metadata` does not look at an index's WHERE clause (nor, on SQLite,
at time zones, which SQLite has no type for), so the index definitions are compared
separately: the DDL the models would emit against what the database holds.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.schema import CreateIndex

from cadence.store.db import alembic_config, current_revision, head_revision, make_engine, upgrade
from cadence.store.tables import schema_metadata
from tests.conftest import PG_ADMIN_URL

metadata = schema_metadata()
MODEL_TABLES = set(metadata.tables)


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database (no tables, no alembic_version), on each backend."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
        yield engine
        engine.dispose()
        return
    request.getfixturevalue("pg_database")  # the server is up (or the test fails, never skips)
    name = f"cadence_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def _normalize(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


def _index_drift(engine: Engine) -> list[str]:
    """Indexes whose definition in the database differs from the models' (predicates included)."""
    declared = [ix for table in metadata.sorted_tables for ix in table.indexes]
    problems: list[str] = []
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            stored: dict[str, str] = dict(
                conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index'").all()
            )
            for ix in declared:
                want = _normalize(str(CreateIndex(ix).compile(dialect=engine.dialect)))
                got = _normalize(stored.get(str(ix.name)) or "<missing>")
                if got != want:
                    problems.append(f"{ix.name}: database has {got!r}, models declare {want!r}")
            return problems
        # PostgreSQL rewrites predicates (casts, ANY(ARRAY[...])): build each declared index under
        # a scratch name in a transaction that is rolled back, and compare the server's own renderings.
        trans = conn.begin()
        try:
            for ix in declared:
                scratch = f"scratch_{ix.name}"[:63]
                ddl = str(CreateIndex(ix).compile(dialect=engine.dialect))
                conn.exec_driver_sql(ddl.replace(f"INDEX {ix.name} ON", f"INDEX {scratch} ON", 1))
                rows: dict[str, str] = dict(
                    conn.execute(
                        text("SELECT indexname, indexdef FROM pg_indexes WHERE indexname IN (:a, :b)"),
                        {"a": ix.name, "b": scratch},
                    ).all()
                )
                got = rows.get(str(ix.name), "<missing>")
                want = rows[scratch].replace(scratch, str(ix.name))
                if got != want:
                    problems.append(f"{ix.name}: database has {got!r}, models declare {want!r}")
        finally:
            trans.rollback()
    return problems


def _downgrade(engine: Engine, target: str) -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, target)
        conn.commit()


def _tables(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(inspect(conn).get_table_names()) - {"alembic_version"}


def test_upgrade_head_matches_the_models(fresh_engine: Engine) -> None:
    upgrade(fresh_engine)
    assert current_revision(fresh_engine) == head_revision()
    assert _tables(fresh_engine) == MODEL_TABLES
    assert _diff(fresh_engine) == []
    assert _index_drift(fresh_engine) == []


def test_live_outbound_index_is_partial_in_the_database(fresh_engine: Engine) -> None:
    upgrade(fresh_engine)
    with fresh_engine.connect() as conn:
        found = {ix["name"]: ix for ix in inspect(conn).get_indexes("enrollment")}
    live = found["uq_enrollment_one_live_outbound"]
    assert live["unique"] and live["column_names"] == ["lead_id"]
    predicate = str(live["dialect_options"][f"{fresh_engine.dialect.name}_where"])
    assert "outbound" in predicate and "active" in predicate and "paused" in predicate


def test_index_drift_check_sees_a_changed_predicate(fresh_engine: Engine) -> None:
    """The index comparison is not vacuous: a predicate changed in the database is reported."""
    upgrade(fresh_engine)
    with fresh_engine.begin() as conn:
        conn.execute(text("DROP INDEX uq_enrollment_one_live_outbound"))
        conn.execute(text("CREATE UNIQUE INDEX uq_enrollment_one_live_outbound ON enrollment (lead_id)"))
    assert _diff(fresh_engine) == []  # what alembic alone cannot see
    assert [p.split(":")[0] for p in _index_drift(fresh_engine)] == ["uq_enrollment_one_live_outbound"]


def test_downgrade_to_base_and_upgrade_again(fresh_engine: Engine) -> None:
    upgrade(fresh_engine)
    _downgrade(fresh_engine, "base")
    assert current_revision(fresh_engine) is None
    assert _tables(fresh_engine) == set()
    upgrade(fresh_engine)
    assert current_revision(fresh_engine) == head_revision()
    assert _tables(fresh_engine) == MODEL_TABLES
    assert _diff(fresh_engine) == []
    assert _index_drift(fresh_engine) == []


def test_each_revision_downgrades_one_step_and_comes_back(fresh_engine: Engine) -> None:
    upgrade(fresh_engine)
    _downgrade(fresh_engine, "-1")
    assert current_revision(fresh_engine) != head_revision()
    assert _diff(fresh_engine) != []  # the step down is visible as drift from the models
    upgrade(fresh_engine)
    assert _diff(fresh_engine) == []


def test_upgrade_twice_is_a_no_op(fresh_engine: Engine) -> None:
    upgrade(fresh_engine)
    with fresh_engine.begin() as conn:
        conn.execute(text("CREATE TABLE canary (id INTEGER PRIMARY KEY)"))  # would vanish if anything rebuilt
    statements: list[str] = []

    @event.listens_for(fresh_engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    try:
        upgrade(fresh_engine)
        # Bypass the shortcut too: alembic itself finds nothing to do at head.
        cfg = alembic_config(fresh_engine.url.render_as_string(hide_password=False))
        with fresh_engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
    finally:
        event.remove(fresh_engine, "before_cursor_execute", _record)
    ddl = [s for s in statements if re.match(r"\s*(CREATE|ALTER|DROP|INSERT|UPDATE|DELETE)\b", s, re.I)]
    assert ddl == []
    assert current_revision(fresh_engine) == head_revision()
    assert _tables(fresh_engine) == MODEL_TABLES | {"canary"}


def test_sqlite_connections_enforce_foreign_keys_in_wal_mode(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'pragmas.db'}")
    try:
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        with pytest.raises(Exception, match="FOREIGN KEY"), engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO history (lead_id, at, kind, detail) "
                    "VALUES ('nobody', '2026-11-30 15:00:00.000000', 'enrolled', '{}')"
                )
            )
    finally:
        engine.dispose()
