"""The fault runs' fixture: a `Lab` (project, PostgreSQL, SMTP sink, Twilio fake) whose processes end with the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.helpers import Lab, warm_up_workers
from tests.smtp_sink import running_sink
from tests.twilio_fake import twilio_server


@pytest.fixture
def lab(project: Path, pg_url: str) -> Iterator[Lab]:
    warm_up_workers()
    with running_sink() as sink, twilio_server() as twilio:
        bench = Lab(project, pg_url, sink, twilio)
        try:
            yield bench
        finally:
            bench.close()
