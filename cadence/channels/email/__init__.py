"""Email transports: the outbox folder for demos and dry runs, SMTP for real sends."""

from __future__ import annotations

import os
from collections.abc import Mapping

from cadence.channels.base import EmailTransport
from cadence.channels.email.outbox import OutboxEmailTransport
from cadence.channels.email.smtp import SmtpEmailTransport
from cadence.clock import Clock
from cadence.config import Settings


def make_email_transport(settings: Settings, clock: Clock, environ: Mapping[str, str] | None = None) -> EmailTransport:
    """The transport config.yaml asks for (email.transport: outbox | smtp)."""
    if settings.email.transport == "smtp":
        return SmtpEmailTransport(settings.email.smtp, clock, os.environ if environ is None else environ)
    return OutboxEmailTransport(settings.outbox_dir / "email", clock)
