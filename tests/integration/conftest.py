"""Fixtures for the channel tests: a real SMTP server on loopback, and a certificate it can present.

`smtp_sink` is a plain-text server that records what it accepts (`count`,
`message_ids`, `received`, `connections`); dispatch benchmarks and concurrency
tests can point `email.smtp` at `smtp_sink.host` / `smtp_sink.port` with
`security: none`. For a scripted server with TLS or a login, use
`tests.smtp_sink.running_sink(...)` directly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.smtp_sink import SmtpSink, TlsFiles, running_sink


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with running_sink() as sink:
        yield sink


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1, made once per session."""
    return TlsFiles.make(tmp_path_factory.mktemp("tls"))
