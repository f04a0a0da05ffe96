"""A worker SIGKILLed in the middle of a batch while two others go on: nothing twice, nothing lost.

test_crash_recovery.py kills the only worker; here three real `cadence run` processes share
the work and one of them dies with a batch claimed and partly delivered. To kill it there
and not by luck, the victim is frozen (SIGSTOP) while the store and the server are read
(after a moment, so that a commit it sent just before is in), and killed only if the server
has received some of its claimed messages and not all of them; otherwise it is let go on
(SIGCONT) and looked at again. The survivors must drain everything else and exit 0 on
SIGTERM, and a pass after the lease turns exactly the victim's claims into `unknown`.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from sqlalchemy import select

from cadence.store.tables import TouchT
from tests.faults.helpers import RUN_AT, Lab, Worker, later, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

EMAILS = 400
WORKERS = 3
BATCH = 20
REPLY_DELAY = 0.03  # seconds the sink holds each 250: a batch of 20 over 2 connections is ~0.3 s on the wire
SETTLE = 0.2  # seconds between freezing a worker and reading what it holds


def _pid(worker_id: str) -> int:
    return int(worker_id.split(":")[1])  # host:pid:token (cadence.engine.runner.worker_id)


def _freeze_one_mid_batch(lab: Lab, procs: list[Worker]) -> tuple[Worker, str]:
    """Stop a worker that holds claims the sink has partly received; returns it (stopped) and its worker id."""
    by_pid = {proc.pid: proc for proc in procs}
    found: list[tuple[Worker, str]] = []

    def frozen_mid_batch() -> bool:
        for worker in lab.in_flight():
            proc = by_pid.get(_pid(worker))
            if proc is None:
                continue
            os.kill(proc.pid, signal.SIGSTOP)
            time.sleep(SETTLE)
            held = lab.in_flight().get(worker, set())
            delivered = _delivered_ids(lab, held)
            if 0 < len(delivered) < len(held) and proc.poll() is None:
                found.append((proc, worker))
                return True
            os.kill(proc.pid, signal.SIGCONT)
        return False

    wait_until(frozen_mid_batch, 60, "a worker with a batch partly on the wire", every=0.02)
    return found[0]


def _delivered_ids(lab: Lab, touch_ids: set[int]) -> set[int]:
    """Which of these touches the sink has received (by the Message-ID recorded at the claim)."""
    if not touch_ids:
        return set()
    rows = lab.query(select(TouchT.c.id, TouchT.c.message_id).where(TouchT.c.id.in_(touch_ids)))
    received = set(lab.sink.message_ids)
    return {touch_id for touch_id, message_id in rows if message_id in received}


def test_a_worker_killed_mid_batch_leaves_unknowns_and_the_others_send_the_rest_once(lab: Lab) -> None:
    lab.configure(batch_size=BATCH, lease_seconds=60)
    seeded = lab.seed(emails=EMAILS)
    lab.sink.slow_down(REPLY_DELAY)
    procs = lab.workers(WORKERS, RUN_AT)
    lab.sink.wait_until(lambda: lab.sink.count >= 3 * BATCH, 120, what="the workers to get going")

    victim, victim_id = _freeze_one_mid_batch(lab, procs)
    held = lab.in_flight()[victim_id]  # frozen: this is what it holds when it dies
    delivered_unrecorded = _delivered_ids(lab, held)
    victim.kill()
    victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert lab.in_flight()[victim_id] == held  # what it had not committed died with it
    at_kill = lab.sink.count

    survivors = [p for p in procs if p is not victim]
    lab.wait_drained(RUN_AT, survivors, dead=frozenset({victim_id}))
    lab.stop(survivors)  # both still running, and each exits 0 on SIGTERM
    assert lab.sink.count > at_kill  # the others went on after the kill

    outcome = lab.check(seeded, later(RUN_AT, minutes=5))
    assert outcome.with_status("unknown") == held  # exactly the dead worker's claims, none resent
    assert outcome.with_status("sent") == set(outcome.touches) - held
    assert all(outcome.delivered[t] == 1 for t in delivered_unrecorded)  # delivered once, and never again
    # Mid-batch: part of what it held had reached the server (it may hold two batches: the next is claimed early).
    assert 0 < len(delivered_unrecorded) < len(held)
    print(f"killed holding {len(held)} claims, {len(delivered_unrecorded)} of them already delivered")
