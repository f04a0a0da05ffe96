"""Plan and apply a one-step edit on a sequence with 200,000 active enrollments (SQLite).

The store is seeded the way the engine leaves it: 200,000 leads over 12 time zones
enrolled with `cadence.enroll.enroll` into the 14-step `outbound-saas`, then spread
over every position of the sequence (as if the engine had worked them: next step,
last touch). The edit moves `bump` from day 3 to day 4. Timed: `cadence plan`
(`make_plan`, on a fresh App, so loading the files counts) and `cadence apply`
(`apply`: publish, migrate every enrollment, one history row each, one transaction).
After apply it checks the store against the plan: every live enrollment on the new
version, one `migrated` history row each, and the re-timed count equal to the plan's.

    .venv/bin/python bench/plan.py [--enrollments N] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, select, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.enroll import COMPANIES, NOW, PLACES, SEQUENCE, load_app, make_project
from cadence.enrollment.enroll import enroll
from cadence.manage.edit_apply import apply
from cadence.manage.edit_plan import make_plan
from cadence.store.bulk import insert_many
from cadence.store.tables import EnrollmentT, HistoryT, LeadT


def seed(project: Path, db_url: str, count: int) -> float:
    app = load_app(project, db_url)
    try:
        now = app.clock.now()
        rows = []
        for i in range(count):
            country, tz, _ = PLACES[i % len(PLACES)]
            company = COMPANIES[i % len(COMPANIES)]
            rows.append((f"L{i:06d}", f"lead{i}@{company.lower()}{i % 97}.io", f"First{i}", company, tz, country))
        constant = {
            "stage": "new", "owner": "alice", "sms_consent": False, "do_not_contact": False, "email_invalid": False,
            "phone_invalid": False, "fields": {}, "created_at": now, "updated_at": now,
        }  # fmt: skip
        with app.engine.begin() as conn:
            insert_many(conn, LeadT, ("id", "email", "first_name", "company", "timezone", "country"), rows, constant)
        start = time.perf_counter()
        report = enroll(app, SEQUENCE, [r[0] for r in rows])
        seconds = time.perf_counter() - start
        assert not report.refused and len(report.enrolled) == count, report.refused[:3]
        steps = app.catalog.get(SEQUENCE).spec.steps
        position = EnrollmentT.c.id % len(steps)
        with app.engine.begin() as conn:
            conn.execute(
                update(EnrollmentT).values(
                    next_index=position,
                    next_step=case({i: s.id for i, s in enumerate(steps)}, value=position),
                    last_touch_at=case((position > 0, EnrollmentT.c.enrolled_at), else_=None),
                )
            )
        return seconds
    finally:
        app.close()


PLAN_TARGET_S, APPLY_TARGET_S = 4, 8  # issue 15 (issue 5 asked for 10 s each)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrollments", type=int, default=200_000, help="active enrollments (default 200000)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="cadence-bench-plan-"))
    try:
        project = make_project(workdir)
        db_url = f"sqlite:///{workdir / 'cadence.db'}"
        enroll_s = seed(project, db_url, args.enrollments)
        path = project / "sequences" / f"{SEQUENCE}.yaml"
        text = path.read_text()
        assert "  - id: bump\n    day: 3\n" in text
        path.write_text(text.replace("  - id: bump\n    day: 3\n", "  - id: bump\n    day: 4\n"))

        app = load_app(project, db_url)
        start = time.perf_counter()
        plan = make_plan(app, [SEQUENCE])
        plan_s = time.perf_counter() - start
        app.close()
        [seq] = plan.sequences
        [change] = seq.changes

        app = load_app(project, db_url)
        start = time.perf_counter()
        done = apply(app, [SEQUENCE])
        apply_s = time.perf_counter() - start
        with app.engine.connect() as conn:
            versions = dict(
                conn.execute(select(EnrollmentT.c.version_id, func.count()).group_by(EnrollmentT.c.version_id)).all()
            )
            migrated = conn.execute(
                select(func.count()).select_from(HistoryT).where(HistoryT.c.kind == "migrated")
            ).scalar_one()
        app.close()
        checks = {
            "one_version": len(versions) == 1,
            "every_enrollment_migrated": migrated == args.enrollments == done.sequences[0].counts["migrated"],
            "apply_equals_plan": done.as_json()["sequences"] == plan.as_json()["sequences"],
        }
        figures: dict[str, Any] = {
            "enrollments": args.enrollments,
            "seed_enroll_seconds": round(enroll_s, 2),
            "plan_seconds": round(plan_s, 2),
            "apply_seconds": round(apply_s, 2),
            "change": change.summary(),
            "counts": seq.counts,
            "checks": checks,
            "target_seconds": {"plan": PLAN_TARGET_S, "apply": APPLY_TARGET_S},
        }
        if args.json:
            print(json.dumps(figures, indent=2))
        else:
            print(f"{args.enrollments:,} active enrollments in {SEQUENCE} (enrolled in {enroll_s:.1f} s)")
            print(f"change: {change.summary()}")
            print(f"plan:  {plan_s:6.2f} s   (target < {PLAN_TARGET_S} s)")
            print(f"apply: {apply_s:6.2f} s   (target < {APPLY_TARGET_S} s)")
            print(f"counts: {seq.counts}")
            print(f"checks: {checks}")
        return 0 if all(checks.values()) else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["NOW", "main"]
