"""The fault runs' shared bench: a project sending to the SMTP sink and the Twilio-shaped fake, and the checks.

`Lab` holds one test's project, PostgreSQL database, SMTP sink and Twilio fake. It
seeds due work through the store API (as the other multi-process tests do), starts
`cadence run` as processes of their own (each one a worker, as systemd would start it),
runs in-process passes where a pass only needs to happen, and kills every process
it started when the test ends, whatever happened.

Worker processes are forked from a server that has imported cadence once
(multiprocessing's forkserver, with cadence preloaded): from `cadence.cli.app.main()` on
they run exactly what `python -m cadence run` runs, with their own pid, environment,
database connections and signals, but a fresh interpreter would spend about 3 s of CPU
importing before its first claim, and these runs start fourteen of them on two cores.

`Lab.check` states the promise every fault run keeps, whatever was done to it:
- nothing twice: no Message-ID, and no (phone, text), reached a server twice, and no
  enrollment has two touches for one step;
- the store and the servers agree: every `sent` touch reached its server exactly once
  (its Message-ID, its Twilio SID), and everything a server received belongs to a touch
  that is `sent` or `unknown` (the worker could not tell: that is what unknown means);
- nothing lost: after a sweep past every lease, nothing is due or in flight, every
  seeded lead has its touch, each touch ends in an allowed status, and the `unknown`
  ones are exactly those `cadence touches --status unknown` lists.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, create_engine, func, select
from typer.testing import CliRunner

from cadence.clock import parse_instant
from cadence.enrollment.enroll import enroll
from cadence.enrollment.lead_import import import_leads
from cadence.store.tables import EnrollmentT, LeadT, TouchT
from tests.conftest import Cli, make_app
from tests.smtp_sink import SmtpSink, point_project_at
from tests.twilio_fake import FakeTwilio

ENROLL_AT = "2026-11-30T08:00:00-05:00"  # a Monday, before the window opens
RUN_AT = "2026-11-30T10:00:00-05:00"  # every first touch is due (09:00 plus at most 45m of spread)
SECRET = "fault-run-secret"  # signs the unsubscribe links
WORKER_APP_NAME = "cadence-fault-worker"  # PGAPPNAME of every worker process: what pg_terminate_backend aims at
EMAIL_SEQUENCE = "fault-email"
SMS_SEQUENCE = "fault-sms"
FIRST_STEP = {
    EMAIL_SEQUENCE: "{id: first, day: 1, channel: email, subject: hi, template: outbound-saas/bump.md.j2}",
    SMS_SEQUENCE: "{id: first, day: 1, channel: sms, template: outbound-saas/sms-1.txt.j2}",
}
# A second step months away keeps each enrollment going after its first touch: finishing a sequence
# (and telling the rules) costs more than the send itself, and is not what these runs are about.
LATER_STEP = "{id: check-in, day: 60, channel: task, title: Check in}"
SETTLED = frozenset({"sent", "unknown"})
PRELOAD = (
    "cadence.cli.app", "cadence.engine.runner", "cadence.engine.metrics", "cadence.channels.email",
    "cadence.channels.sms", "alembic.command", "psycopg", "prometheus_client", "pytest",
)  # fmt: skip
_FORKS = multiprocessing.get_context("forkserver")
_FORKS.set_forkserver_preload(list(PRELOAD))  # pytest too: a child re-imports the parent's main script


def warm_up_workers() -> None:
    """Start the fork server now, so it imports cadence while the test seeds its store."""
    from multiprocessing import forkserver

    forkserver.ensure_running()


# A lead's zone and country, and a phone number maker that phonenumbers accepts for that country
# (for lead numbers below 10,000).
ZONES: dict[str, tuple[str, Callable[[int], str]]] = {
    "America/New_York": ("US", lambda i: f"+1212555{i:04d}"),
    "America/Los_Angeles": ("US", lambda i: f"+1415555{i:04d}"),
    "Europe/London": ("GB", lambda i: f"+447911{i:06d}"),
    "Asia/Tokyo": ("JP", lambda i: f"+819012{i:06d}"),
}


def fault_sequence(sequence_id: str) -> str:
    steps = f"  - {FIRST_STEP[sequence_id]}\n  - {LATER_STEP}\n"
    return f"id: {sequence_id}\nname: {sequence_id}\nkind: outbound\nsteps:\n{steps}"


def later(instant: str, **delta: float) -> str:
    """`instant` moved by a timedelta's keywords, as an ISO 8601 string with its offset."""
    return (datetime.fromisoformat(instant) + timedelta(**delta)).isoformat()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> None:
    """Poll `predicate` until it holds; fail after `timeout` seconds saying what never happened."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


@dataclass(frozen=True)
class Seeded:
    """Who was enrolled: lead id -> email address (email leads) or phone (SMS leads)."""

    emails: dict[str, str]
    phones: dict[str, str]

    @property
    def lead_ids(self) -> set[str]:
        return set(self.emails) | set(self.phones)

    def joined(self, other: Seeded) -> Seeded:
        return Seeded({**self.emails, **other.emails}, {**self.phones, **other.phones})


@dataclass(frozen=True)
class Outcome:
    """What `Lab.check` found, for a test's own further assertions."""

    touches: dict[int, dict[str, Any]]  # touch id -> the row, with the lead's timezone and country
    statuses: Counter[str]
    delivered: Counter[int]  # touch id -> messages the servers received for it (0 or 1 once checked)

    def with_status(self, status: str) -> set[int]:
        return {t for t, row in self.touches.items() if row["status"] == status}


def _cadence_main(argv: list[str], env: dict[str, str], cwd: str, out: str, err: str) -> None:
    """The body of a worker process: `cadence ARGV` in `cwd` with exactly `env`, output to two files."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    sys.argv = ["cadence", *argv]
    from cadence.cli.app import main

    main()


class Worker:
    """A `cadence` command in a process of its own; a small `subprocess.Popen` look-alike."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, logs: Path):
        self._out, self._err = logs.with_suffix(".out"), logs.with_suffix(".err")
        self.process = _FORKS.Process(
            target=_cadence_main, args=(argv, env, str(cwd), str(self._out), str(self._err)), daemon=False
        )
        self.process.start()
        assert self.process.pid is not None
        self.pid: int = self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status, or minus the signal that ended it (as Popen says it); None while it runs."""
        return self.process.exitcode

    def poll(self) -> int | None:
        return self.process.exitcode

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float) -> tuple[str, str]:
        """Wait for the exit (at most `timeout` seconds); its stdout and stderr."""
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise TimeoutError(f"cadence (pid {self.pid}) still running after {timeout}s")
        return _text_of(self._out), _text_of(self._err)


def _text_of(path: Path) -> str:
    return path.read_text() if path.exists() else ""  # a process that died before its first word


@dataclass
class Lab:
    project: Path
    db_url: str
    sink: SmtpSink
    twilio: FakeTwilio
    procs: list[Worker] = field(default_factory=list)
    _engine: Engine | None = None

    # -- the project ------------------------------------------------------------------------

    def configure(self, *, connections: int = 2, sequences: dict[str, str] | None = None, **engine: Any) -> None:
        """Email over SMTP to the sink, SMS through the fake, caps raised, rules off; `engine` updates config's engine.

        Rules are off: what happens after a sequence's last step (a recycle) is not these tests' subject.
        `sequences` (id -> YAML) are written besides the email and the SMS sequence (a touch now, a task in months).
        """
        settings = {"lease_seconds": 60, "backoff_seconds": 1, "interval_seconds": 0.5, **engine}
        point_project_at(
            self.project, self.sink, connections=connections, engine=settings, rules=[], inbound_sequence=None
        )
        path = self.project / "config.yaml"
        config = yaml.safe_load(path.read_text())
        config["sms"].update(transport="twilio", twilio={"api_base": self.twilio.base_url, "concurrency": 8})
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        # Only the sequences these runs use: every pass loads and checks each file in sequences/.
        for starter in (self.project / "sequences").glob("*.yaml"):
            starter.unlink()
        texts = {sequence_id: fault_sequence(sequence_id) for sequence_id in FIRST_STEP} | (sequences or {})
        for sequence_id, text in texts.items():
            (self.project / "sequences" / f"{sequence_id}.yaml").write_text(text)

    def seed(
        self,
        *,
        emails: int = 0,
        sms: int = 0,
        zones: Sequence[str] = ("America/New_York",),
        sequences: tuple[str, str] = (EMAIL_SEQUENCE, SMS_SEQUENCE),
        at: str = ENROLL_AT,
        first: int = 0,
    ) -> Seeded:
        """`emails` leads enrolled into the first sequence and `sms` leads (with phone and consent) into the second.

        Leads take the zones in turn; owners alternate between the two senders. Lead numbers
        start at `first`, so a test can seed more leads while the engine runs.
        """
        email_leads = {f"E{i:05d}": f"e{i}@faults.example" for i in range(first, first + emails)}
        sms_leads = {f"S{i:05d}": ZONES[zones[i % len(zones)]][1](i) for i in range(first, first + sms)}
        rows: list[tuple[int, dict[str, str | None]]] = []
        for n, lead_id in enumerate([*email_leads, *sms_leads]):
            zone = zones[int(lead_id[1:]) % len(zones)]
            rows.append(
                (
                    n + 2,
                    {
                        "id": lead_id, "email": email_leads.get(lead_id) or f"{lead_id.lower()}@faults.example",
                        "phone": sms_leads.get(lead_id), "sms_consent": "yes" if lead_id in sms_leads else "no",
                        "first_name": f"Lead{n}", "company": "Faults", "owner": ("alice", "bob")[n % 2],
                        "timezone": zone, "country": ZONES[zone][0],
                    },
                )
            )  # fmt: skip
        app = make_app(self.project, self.db_url, at)
        try:
            imported = import_leads(app.engine, rows, app.settings, app.clock.now())
            assert imported.rejected == [] and imported.imported == len(rows), imported.rejected[:3]
            for sequence_id, lead_ids in zip(sequences, (email_leads, sms_leads), strict=True):
                if lead_ids:
                    report = enroll(app, sequence_id, list(lead_ids))
                    assert report.refused == [] and len(report.enrolled) == len(lead_ids), report.refused[:3]
        finally:
            app.close()
        return Seeded(email_leads, sms_leads)

    # -- running the engine -----------------------------------------------------------------

    def env(self, now: str) -> dict[str, str]:
        return {
            "CADENCE_NOW": now, "CADENCE_DATABASE_URL": self.db_url, "CADENCE_SECRET": SECRET,
            "TWILIO_ACCOUNT_SID": self.twilio.account_sid, "TWILIO_AUTH_TOKEN": self.twilio.auth_token,
        }  # fmt: skip

    def spawn(self, now: str, *args: str) -> Worker:
        """`cadence ARGS` in its own process at `now` (stopped by `close` if the test does not)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CADENCE_", "TWILIO_"))}
        env.update(self.env(now), PGAPPNAME=WORKER_APP_NAME)
        logs = self.project.parent / "logs"
        logs.mkdir(exist_ok=True)
        proc = Worker(
            ["--config", str(self.project / "config.yaml"), *args], env, self.project, logs / f"{len(self.procs)}"
        )
        self.procs.append(proc)
        return proc

    def workers(self, n: int, now: str) -> list[Worker]:
        """`n` long-running `cadence run` processes, each draining every `engine.interval_seconds` at `now`."""
        return [self.spawn(now, "run") for _ in range(n)]

    def run_once_procs(self, n: int, now: str, timeout: float = 120) -> list[dict[str, Any]]:
        """`n` concurrent `cadence run --once --json` processes at `now`; their reports, once all exited 0."""
        procs = [self.spawn(now, "run", "--once", "--json") for _ in range(n)]
        deadline = time.monotonic() + timeout
        reports = []
        for proc in procs:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert proc.returncode == 0, err[-3000:]
            reports.append(json.loads(out))
        return reports

    def drained(self, now: str, procs: Sequence[Worker], dead: frozenset[str] = frozenset()) -> bool:
        """Nothing due at `now` and nothing in flight but the claims of `dead` workers (or a worker has exited)."""
        if any(p.poll() is not None for p in procs):
            return True  # `stop` says which one, and how
        return self.due(now) == 0 and set(self.in_flight()) <= dead

    def wait_drained(self, now: str, procs: Sequence[Worker], dead: frozenset[str] = frozenset()) -> None:
        wait_until(lambda: self.drained(now, procs, dead), 120, f"the workers to send everything due at {now}")

    def stop(self, procs: Iterable[Worker], timeout: float = 60) -> list[str]:
        """SIGTERM each worker, as a deployment stops it; each must exit 0. Returns their stderr."""
        procs = list(procs)
        for proc in procs:
            assert proc.poll() is None, (
                f"a worker died on its own (exit {proc.returncode}): {proc.communicate(5)[1][-3000:]}"
            )
            proc.terminate()
        errs = []
        deadline = time.monotonic() + timeout
        for proc in procs:
            _, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert proc.returncode == 0, err[-3000:]
            errs.append(err)
        return errs

    def close(self) -> None:
        """Kill and reap whatever is still running, so no process outlives the test; close the pool."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)
            proc.process.close()
        if self._engine is not None:
            self._engine.dispose()

    def cli(self, *args: str, now: str) -> Any:
        """The CLI in this process (for passes and listings where no process is meant to die)."""
        return Cli(self.project, self.db_url, CliRunner())(*args, now=now, env=self.env(now))

    def run_once(self, now: str) -> dict[str, Any]:
        """One in-process `cadence run --once` at `now` (which sweeps expired leases first); its JSON report."""
        result = self.cli("run", "--once", "--json", now=now)
        assert result.exit_code == 0, result.output
        report: dict[str, Any] = json.loads(result.stdout)
        return report

    # -- the store ----------------------------------------------------------------------------

    def query(self, statement: Any) -> list[Any]:
        """Run one read on the test's own connection pool (the waits poll the store often)."""
        if self._engine is None:
            self._engine = create_engine(self.db_url, pool_size=1)
        with self._engine.connect() as conn:
            return list(conn.execute(statement).all())

    def due(self, now: str) -> int:
        """Active enrollments due at `now` (claimable now)."""
        at = parse_instant(now)
        statement = select(func.count()).where(EnrollmentT.c.state == "active", EnrollmentT.c.next_due_at <= at)
        return int(self.query(statement)[0][0])

    def in_flight(self) -> dict[str, set[int]]:
        """`sending` touches by the worker holding them."""
        out: dict[str, set[int]] = {}
        for touch_id, worker in self.query(
            select(TouchT.c.id, TouchT.c.claimed_by).where(TouchT.c.status == "sending")
        ):
            out.setdefault(worker, set()).add(touch_id)
        return out

    def touches(self) -> dict[int, dict[str, Any]]:
        """Every touch, with its lead's phone, email, zone and country."""
        statement = select(TouchT, LeadT.c.phone, LeadT.c.email, LeadT.c.timezone.label("zone"), LeadT.c.country).join(
            LeadT, LeadT.c.id == TouchT.c.lead_id
        )
        return {row.id: dict(row._mapping) for row in self.query(statement)}

    def listed_unknown(self, now: str) -> set[int]:
        result = self.cli("touches", "--status", "unknown", "--json", "--limit", "1000000", now=now)
        assert result.exit_code == 0, result.output
        listed = json.loads(result.stdout)
        assert all("cadence retry" in (t["error"] or "") for t in listed), "an unknown touch says what to do"
        return {t["id"] for t in listed}

    # -- the promise --------------------------------------------------------------------------

    def check(self, seeded: Seeded, settle_at: str, allowed: frozenset[str] = SETTLED) -> Outcome:
        """Sweep past every lease with one more pass at `settle_at`, then check nothing went twice or got lost."""
        self.run_once(settle_at)
        assert self.due(settle_at) == 0, "work is still due after the run"
        assert self.in_flight() == {}, "claims are still in flight after a sweep past their lease"

        touches = self.touches()
        statuses = Counter(row["status"] for row in touches.values())
        assert set(statuses) <= allowed, statuses
        steps = Counter((row["enrollment_id"], row["step_index"]) for row in touches.values())
        assert max(steps.values(), default=1) == 1, "an enrollment has two touches for one step"
        assert {row["lead_id"] for row in touches.values()} == seeded.lead_ids, "a seeded lead has no touch"

        delivered = _delivered(touches, self.sink, self.twilio)
        twice = {t: n for t, n in delivered.items() if n > 1}
        assert not twice, f"touches that reached a server more than once: {sorted(twice)[:20]}"
        sids = {m.sid for m in self.twilio.messages}
        for touch_id, row in touches.items():
            if row["status"] == "sent":
                assert delivered[touch_id] == 1, f"touch {touch_id} is recorded sent but no server received it"
                assert row["channel"] != "sms" or row["provider_id"] in sids, f"touch {touch_id}: not Twilio's SID"
            elif delivered[touch_id]:
                assert row["status"] == "unknown", f"touch {touch_id} reached its server but is {row['status']}"
        unknown = {t for t, row in touches.items() if row["status"] == "unknown"}
        assert self.listed_unknown(settle_at) == unknown, "`cadence touches --status unknown` lists every unknown"
        return Outcome(touches, statuses, delivered)


def _delivered(touches: dict[int, dict[str, Any]], sink: SmtpSink, twilio: FakeTwilio) -> Counter[int]:
    """Touch id -> how many messages the servers received for it; a message no touch explains fails the check.

    Email is matched by Message-ID (a resend keeps the Message-ID of the lost attempt); SMS by the
    SID recorded on a sent touch, else by (phone, text) for one the worker never heard back about.
    """
    by_message_id = {row["message_id"]: t for t, row in touches.items() if row["channel"] == "email"}
    by_sid = {row["provider_id"]: t for t, row in touches.items() if row["provider_id"]}
    by_text = {(row["phone"], row["body"]): t for t, row in touches.items() if row["channel"] == "sms"}
    counts: Counter[int] = Counter()
    strays: list[str] = []
    for message_id in sink.message_ids:
        if message_id in by_message_id:
            counts[by_message_id[message_id]] += 1
        else:
            strays.append(f"email {message_id}")
    for message in twilio.messages:
        touch = by_sid.get(message.sid, by_text.get((message.to, message.body)))
        if touch is None:
            strays.append(f"SMS {message.sid} to {message.to}")
        else:
            counts[touch] += 1
    assert not strays, f"messages no touch accounts for: {strays[:10]}"
    return counts
