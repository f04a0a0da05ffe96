"""The store's promises, the same on SQLite and PostgreSQL (every test runs on both).

- the partial unique index keeps a lead in at most one live (active or paused) outbound
  enrollment, at the database level, whatever the code above it does;
- `UTCDateTime` stores instants: aware UTC comes back, naive datetimes are refused;
- `enroll` refuses collisions, unknown and do-not-contact leads with a reason a rep
  understands, and changes nothing for a refused lead.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError, StatementError

from cadence.app import App
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.store.tables import EnrollmentT, HistoryT, LeadT, VersionT
from tests.conftest import make_app

NOW = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)  # Monday 08:00 in New York
LEADS = [
    {"id": "L1", "email": "dana.wu@northwind.example", "first_name": "Dana", "company": "Northwind", "owner": "alice"},
    {"id": "L2", "email": "sam.patel@contoso.example", "first_name": "Sam", "company": "Contoso", "owner": "bob"},
]


@pytest.fixture
def app(project: Path, db_url: str) -> Iterator[App]:
    application = make_app(project, db_url, NOW)
    rows: list[tuple[int, dict[str, str | None]]] = [
        (n, {**lead, "timezone": "America/New_York", "country": "US"}) for n, lead in enumerate(LEADS, start=2)
    ]
    report = import_leads(application.engine, rows, application.settings, NOW)
    assert report.rejected == [] and report.imported == len(LEADS)
    yield application
    application.close()


# -- the partial unique index, written to directly ---------------------------------------------


def _version(conn: Connection, sequence_id: str) -> int:
    return int(
        conn.execute(
            VersionT.insert().values(
                sequence_id=sequence_id,
                version=1,
                content_hash=f"hash-{sequence_id}",
                spec={},
                template_hashes={},
                published_at=NOW,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
    )


def _insert_enrollment(conn: Connection, version_id: int, sequence_id: str, kind: str, state: str = "active") -> int:
    return int(
        conn.execute(
            EnrollmentT.insert().values(
                lead_id="L1",
                sequence_id=sequence_id,
                version_id=version_id,
                kind=kind,
                state=state,
                enrolled_at=NOW,
                next_index=0,
                next_step="intro",
                next_due_at=NOW,
                dropped_channels=[],
            )
        ).inserted_primary_key[0]  # type: ignore[index]
    )


@pytest.fixture
def versions(app: App) -> dict[str, int]:
    with app.engine.begin() as conn:
        return {seq: _version(conn, seq) for seq in ("outbound-a", "outbound-b", "nurture-a")}


@pytest.mark.parametrize("second_state", ["active", "paused"])
def test_database_refuses_a_second_live_outbound_enrollment(
    app: App, versions: dict[str, int], second_state: str
) -> None:
    with app.engine.begin() as conn:
        _insert_enrollment(conn, versions["outbound-a"], "outbound-a", "outbound")
    with pytest.raises(IntegrityError), app.engine.begin() as conn:
        _insert_enrollment(conn, versions["outbound-b"], "outbound-b", "outbound", state=second_state)
    with app.engine.connect() as conn:
        assert conn.execute(select(EnrollmentT.c.sequence_id)).scalars().all() == ["outbound-a"]


def test_database_refuses_resuming_a_paused_outbound_next_to_a_live_one(app: App, versions: dict[str, int]) -> None:
    with app.engine.begin() as conn:
        _insert_enrollment(conn, versions["outbound-a"], "outbound-a", "outbound", state="finished")
        paused = _insert_enrollment(conn, versions["outbound-b"], "outbound-b", "outbound", state="paused")
        finished = _insert_enrollment(conn, versions["outbound-a"], "outbound-a", "outbound", state="finished")
    with pytest.raises(IntegrityError), app.engine.begin() as conn:
        conn.execute(update(EnrollmentT).where(EnrollmentT.c.id == finished).values(state="active"))
    with app.engine.begin() as conn:  # the paused one may come back: it is the only live one
        conn.execute(update(EnrollmentT).where(EnrollmentT.c.id == paused).values(state="active"))


def test_database_allows_nurture_next_to_a_live_outbound(app: App, versions: dict[str, int]) -> None:
    with app.engine.begin() as conn:
        _insert_enrollment(conn, versions["outbound-a"], "outbound-a", "outbound")
        _insert_enrollment(conn, versions["nurture-a"], "nurture-a", "nurture")
        _insert_enrollment(conn, versions["nurture-a"], "nurture-a", "nurture", state="paused")
    with app.engine.connect() as conn:
        assert len(conn.execute(select(EnrollmentT.c.id)).scalars().all()) == 3


def test_database_allows_a_new_outbound_once_the_first_finished(app: App, versions: dict[str, int]) -> None:
    with app.engine.begin() as conn:
        first = _insert_enrollment(conn, versions["outbound-a"], "outbound-a", "outbound")
    with app.engine.begin() as conn:
        conn.execute(update(EnrollmentT).where(EnrollmentT.c.id == first).values(state="finished", finished_at=NOW))
        _insert_enrollment(conn, versions["outbound-b"], "outbound-b", "outbound")
        _insert_enrollment(conn, versions["outbound-a"], "outbound-a", "outbound", state="finished")
    with app.engine.connect() as conn:
        states = conn.execute(select(EnrollmentT.c.state).order_by(EnrollmentT.c.id)).scalars().all()
    assert states == ["finished", "active", "finished"]


def test_the_index_is_per_lead(app: App, versions: dict[str, int]) -> None:
    with app.engine.begin() as conn:
        _insert_enrollment(conn, versions["outbound-a"], "outbound-a", "outbound")
        conn.execute(
            EnrollmentT.insert().values(
                lead_id="L2",
                sequence_id="outbound-a",
                version_id=versions["outbound-a"],
                kind="outbound",
                state="active",
                enrolled_at=NOW,
                dropped_channels=[],
            )
        )


# -- UTCDateTime ----------------------------------------------------------------------------------

INSTANTS = [
    datetime(2026, 11, 30, 9, 0, tzinfo=ZoneInfo("America/New_York")),
    datetime(2026, 11, 30, 15, 0, 0, 123456, tzinfo=ZoneInfo("Europe/Berlin")),
    datetime(2026, 11, 30, 10, 0, tzinfo=ZoneInfo("Asia/Kolkata")),
    datetime(2026, 3, 8, 1, 59, 59, 999999, tzinfo=ZoneInfo("America/New_York")),  # a DST change
    datetime(2026, 3, 8, 3, 0, tzinfo=ZoneInfo("America/New_York")),
    datetime(2026, 11, 30, 14, 0, tzinfo=UTC),
]


def test_utc_datetime_round_trips_aware_utc(app: App, versions: dict[str, int]) -> None:
    with app.engine.begin() as conn:
        ids = {}
        for i, instant in enumerate(INSTANTS):
            lead = f"T{i}"
            conn.execute(
                LeadT.insert().values(id=lead, email=f"t{i}@x.example", fields={}, created_at=instant, updated_at=NOW)
            )
            ids[lead] = instant
    with app.engine.connect() as conn:
        back: dict[str, datetime] = dict(
            conn.execute(select(LeadT.c.id, LeadT.c.created_at).where(LeadT.c.id.in_(list(ids)))).all()
        )
    for lead, instant in ids.items():
        assert back[lead] == instant
        assert back[lead].tzinfo is UTC
        assert back[lead].utcoffset() == timedelta(0)
        assert back[lead] == instant.astimezone(UTC) and back[lead].microsecond == instant.microsecond


def test_utc_datetime_compares_instants_not_wall_clocks(app: App, versions: dict[str, int]) -> None:
    """Filters and ordering see the instant, whatever zone the values were written in."""
    with app.engine.begin() as conn:
        for i, instant in enumerate(INSTANTS):
            conn.execute(
                LeadT.insert().values(
                    id=f"T{i}", email=f"t{i}@x.example", fields={}, created_at=instant, updated_at=NOW
                )
            )
    cutoff = datetime(2026, 11, 30, 23, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # 14:00 UTC
    with app.engine.connect() as conn:
        ordered = conn.execute(
            select(LeadT.c.id).where(LeadT.c.id.like("T%")).order_by(LeadT.c.created_at, LeadT.c.id)
        ).scalars()
        upto = conn.execute(
            select(LeadT.c.id).where(LeadT.c.id.like("T%"), LeadT.c.created_at <= cutoff).order_by(LeadT.c.id)
        ).scalars()
        assert list(ordered) == [
            f"T{i}" for i, _ in sorted(enumerate(INSTANTS), key=lambda p: (p[1].astimezone(UTC), f"T{p[0]}"))
        ]
        assert list(upto) == ["T0", "T2", "T3", "T4", "T5"]  # Berlin 15:00.123456 is 14:00:00.123456 UTC


def test_utc_datetime_rejects_naive_datetimes(app: App) -> None:
    naive = datetime(2026, 11, 30, 9, 0)
    with pytest.raises(StatementError, match="naive datetime"), app.engine.begin() as conn:
        conn.execute(LeadT.insert().values(id="T9", email="t9@x.example", fields={}, created_at=naive, updated_at=NOW))
    with pytest.raises(StatementError, match="naive datetime"), app.engine.connect() as conn:
        conn.execute(select(LeadT.c.id).where(LeadT.c.created_at <= naive))
    with app.engine.connect() as conn:
        assert conn.execute(select(LeadT.c.id).where(LeadT.c.id == "T9")).first() is None


# -- enroll's refusals ---------------------------------------------------------------------------


def _snapshot(app: App) -> dict[str, list[Any]]:
    with app.engine.connect() as conn:
        return {
            name: [tuple(row) for row in conn.execute(select(table).order_by(*table.primary_key.columns))]
            for name, table in (("enrollment", EnrollmentT), ("history", HistoryT), ("version", VersionT))
        } | {"lead": [tuple(row) for row in conn.execute(select(LeadT).order_by(LeadT.c.id))]}


def test_enrolling_a_lead_twice_is_refused_and_changes_nothing(app: App) -> None:
    first = enroll(app, "outbound-saas", ["L1"])
    assert [e["lead"] for e in first.enrolled] == ["L1"] and first.refused == []
    before = _snapshot(app)
    app.clock.set(NOW + timedelta(days=2))  # type: ignore[attr-defined]  # a later day, and a later clock: still only the first date counts
    again = enroll(app, "outbound-saas", ["L1"])
    assert again.enrolled == []
    assert again.refused == [
        {"lead": "L1", "reason": "lead L1 is already active in outbound-saas (enrolled 2026-11-23)"}
    ]
    assert _snapshot(app) == before


def test_another_outbound_is_refused_while_one_is_live(app: App, project: Path) -> None:
    text = (project / "sequences" / "outbound-saas.yaml").read_text()
    (project / "sequences" / "outbound-other.yaml").write_text(
        text.replace("id: outbound-saas", "id: outbound-other", 1)
    )
    enroll(app, "outbound-saas", ["L1"])
    before = _snapshot(app)
    report = enroll(app, "outbound-other", ["L1", "L2"])
    assert [e["lead"] for e in report.enrolled] == ["L2"]
    assert report.refused == [
        {"lead": "L1", "reason": "lead L1 is already active in outbound-saas (enrolled 2026-11-23)"}
    ]
    after = _snapshot(app)
    assert [r for r in after["enrollment"] if r[1] == "L1"] == [r for r in before["enrollment"] if r[1] == "L1"]


def test_a_paused_outbound_still_blocks_another(app: App) -> None:
    enroll(app, "outbound-saas", ["L1"])
    with app.engine.begin() as conn:
        conn.execute(update(EnrollmentT).values(state="paused", next_due_at=None))
    report = enroll(app, "outbound-saas", ["L1"])
    assert report.refused == [
        {"lead": "L1", "reason": "lead L1 is already active in outbound-saas (enrolled 2026-11-23)"}
    ]


def test_enrolling_nurture_while_an_outbound_is_live_is_allowed(app: App) -> None:
    enroll(app, "outbound-saas", ["L1"])
    report = enroll(app, "nurture-monthly", ["L1"])
    assert [e["lead"] for e in report.enrolled] == ["L1"] and report.refused == []
    with app.engine.connect() as conn:
        live = conn.execute(
            select(EnrollmentT.c.sequence_id, EnrollmentT.c.kind, EnrollmentT.c.state).order_by(EnrollmentT.c.id)
        ).all()
    assert [tuple(r) for r in live] == [
        ("outbound-saas", "outbound", "active"),
        ("nurture-monthly", "nurture", "active"),
    ]


def test_enrolling_the_same_nurture_twice_is_refused(app: App) -> None:
    enroll(app, "nurture-monthly", ["L1"])
    before = _snapshot(app)
    report = enroll(app, "nurture-monthly", ["L1"])
    assert report.enrolled == []
    assert report.refused == [
        {"lead": "L1", "reason": "lead L1 is already active in nurture-monthly (enrolled 2026-11-23)"}
    ]
    assert _snapshot(app) == before


def test_a_finished_enrollment_does_not_block_a_new_one(app: App) -> None:
    enroll(app, "outbound-saas", ["L1"])
    finished = NOW - timedelta(days=31)  # past the 30-day cool-off (enroll.cooloff)
    with app.engine.begin() as conn:
        conn.execute(
            update(EnrollmentT).values(state="finished", outcome="completed", finished_at=finished, next_due_at=None)
        )
    report = enroll(app, "outbound-saas", ["L1"])
    assert [e["lead"] for e in report.enrolled] == ["L1"] and report.refused == []


def test_an_unknown_lead_is_refused(app: App) -> None:
    before = _snapshot(app)
    report = enroll(app, "outbound-saas", ["L99", "L2"])
    assert [e["lead"] for e in report.enrolled] == ["L2"]
    assert report.refused == [{"lead": "L99", "reason": "no lead with id 'L99'"}]
    after = _snapshot(app)
    assert [r for r in after["enrollment"] if r[1] == "L99"] == []
    assert len(after["enrollment"]) == len(before["enrollment"]) + 1


def test_a_do_not_contact_lead_is_refused_and_changes_nothing(app: App) -> None:
    with app.engine.begin() as conn:
        conn.execute(update(LeadT).where(LeadT.c.id == "L1").values(do_not_contact=True))
    before = _snapshot(app)
    report = enroll(app, "outbound-saas", ["L1"])
    assert report.enrolled == []
    assert report.refused == [{"lead": "L1", "reason": "lead L1 is marked do-not-contact"}]
    after = _snapshot(app)
    assert after["enrollment"] == before["enrollment"] == [] and after["history"] == before["history"]
    assert after["lead"] == before["lead"]


def test_enrolled_due_times_are_stored_as_instants(app: App) -> None:
    """Rows written by enroll's bulk insert compare like any other: the exact due instant finds them."""
    report = enroll(app, "outbound-saas", ["L1", "L2"])
    due = {e["lead"]: datetime.fromisoformat(e["next_due_at"]) for e in report.enrolled}
    with app.engine.connect() as conn:
        for lead, instant in due.items():
            found = conn.execute(
                select(EnrollmentT.c.lead_id, EnrollmentT.c.enrolled_at, EnrollmentT.c.dropped_channels).where(
                    EnrollmentT.c.next_due_at == instant, EnrollmentT.c.next_due_at >= instant
                )
            ).all()
            assert [tuple(r) for r in found] == [(lead, NOW, [])]
        details = conn.execute(select(HistoryT.c.lead_id, HistoryT.c.detail).order_by(HistoryT.c.lead_id)).all()
    assert [(lead, d["sequence"], d["first_step"]) for lead, d in details] == [
        ("L1", "outbound-saas", "intro"),
        ("L2", "outbound-saas", "intro"),
    ]
