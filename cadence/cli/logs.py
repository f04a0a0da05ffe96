"""How `cadence run` logs: human-readable lines by default, one JSON object per line with `--log-json`.

JSON lines are for a log shipper: each carries the time, level, logger, message and the worker
id, plus whatever fields the engine attached (pass id, counts, durations, a failed touch's id and
reason), so a search for one touch or one worker needs no parsing of prose.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            # When the line was written (wall time: logs are read beside other systems' logs).
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class WorkerField(logging.Filter):
    """Stamp every line with the worker that wrote it (several workers write to one journal)."""

    def __init__(self, worker: str) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.worker
        return True


@contextmanager
def configured(worker: str, *, as_json: bool, level: int = logging.INFO) -> Iterator[None]:
    """Log as `cadence run` does for the length of the command, then put the logging back as it was
    (tests run many commands in one process; a handler must not outlive its command's stderr)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(WorkerField(worker))
    if as_json:
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(worker)s] %(message)s"))
    root = logging.getLogger("cadence")
    before = (root.handlers[:], root.level, root.propagate)
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    try:
        yield
    finally:
        root.handlers[:], root.level, root.propagate = before
