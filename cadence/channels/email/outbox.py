"""The email outbox: each message written as an `.eml` file instead of sent (demos, dry runs, tests)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from cadence.channels.base import OutgoingEmail, Receipt, SendError, TransientError
from cadence.channels.email.mime import prepare
from cadence.clock import Clock


class OutboxEmailTransport:
    """Writes each message as `touch-000123.eml` instead of sending it (demos, dry runs, tests).

    Each file is written to a temporary name, fsynced, then renamed over the final
    name, so a crash leaves either the whole message or none of it, and a touch sent
    again (after `cadence retry`) replaces its file instead of adding a second one.
    A file that cannot be written gets a TransientError; the others still go out.
    """

    def __init__(self, directory: Path, clock: Clock):
        self.directory = directory
        self.clock = clock

    def path_for(self, touch_id: int) -> Path:
        return self.directory / f"touch-{touch_id:06d}.eml"

    async def send_batch(self, messages: Sequence[OutgoingEmail]) -> list[Receipt]:
        if not messages:
            return []
        sent_at = self.clock.now()
        prepared = [prepare(m, sent_at) for m in messages]
        jobs = [(self.path_for(m.touch_id), data) for m, data in zip(messages, prepared, strict=True)]
        errors = await asyncio.to_thread(self._write_all, [(p, d) for p, d in jobs if isinstance(d, bytes)])
        receipts = []
        for m, (path, data) in zip(messages, jobs, strict=True):
            error = data if isinstance(data, SendError) else errors.get(path)
            receipts.append(Receipt(m.touch_id, error=error) if error else Receipt(m.touch_id, m.message_id))
        return receipts

    def _write_all(self, files: list[tuple[Path, bytes]]) -> dict[Path, SendError]:
        errors: dict[Path, SendError] = {}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            error = TransientError(f"cannot create the email outbox {self.directory}: {exc}")
            return {path: error for path, _ in files}
        for path, data in files:
            try:
                _write_atomically(path, data)
            except OSError as exc:
                errors[path] = TransientError(f"cannot write {path}: {exc}")
        # Make the renames durable too, where the platform lets a directory be fsynced.
        with suppress(OSError):
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return errors

    async def aclose(self) -> None:
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp)
        raise
