"""A Twilio-shaped HTTP server on 127.0.0.1, so the real twilio client can be tested without the network.

It speaks just enough of the REST API: POST /2010-04-01/Accounts/{AccountSid}/Messages.json
with HTTP basic auth and form fields, answering 201 with a Message resource or a
Twilio-shaped error body. Tests script it per recipient (`fail_to`) or for the
next few requests (`fail_next`, `throttle`, optionally with a Retry-After header,
as Twilio's 429s carry), and read back what it accepted.

It is also the target of the SMS benchmark (about 1,000 requests a second), so it
stays lean: keep-alive (HTTP/1.1 with Content-Length), TCP_NODELAY, and every
response written in a single send; split writes would stall each request ~40 ms
on delayed ACK.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

DEFAULT_SID = "AC" + "0123456789abcdef" * 2
DEFAULT_TOKEN = "test-auth-token"
API_VERSION = "2010-04-01"

_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    21211: "The 'To' number is not a valid phone number.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    30003: "Unreachable destination handset",
    30008: "Unknown error",
}


@dataclass(frozen=True)
class FakeMessage:
    """One message the server accepted, as it arrived."""

    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    status_callback: str | None


def twilio_error(status: int, code: int, message: str | None = None) -> dict[str, Any]:
    return {
        "code": code,
        "message": message or _MESSAGES.get(code, "Error"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _segments(body: str) -> int:
    # Close enough for a fake: ASCII as GSM-7 (160, or 153 when split), anything else as UCS-2 (70 / 67).
    single, multi = (160, 153) if body.isascii() else (70, 67)
    return 1 if len(body) <= single else -(-len(body) // multi)


class FakeTwilio:
    """The scriptable state behind the server; every method is safe to call from the test thread."""

    def __init__(self, account_sid: str = DEFAULT_SID, auth_token: str = DEFAULT_TOKEN, delay: float = 0.0):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.delay = delay  # seconds each request takes, to make concurrency observable
        self._auth = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode("ascii")
        self._path = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"
        self._lock = threading.Lock()
        self._accepted: list[FakeMessage] = []
        self._by_to: dict[str, tuple[int, int, str | None]] = {}
        self._next: list[tuple[int, int, int | None]] = []  # (status, code, Retry-After seconds)
        self._in_flight = 0
        self.requests = 0
        self.max_in_flight = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- scripting ----------------------------------------------------------------------

    def fail_to(self, to: str, code: int, status: int = 400, message: str | None = None) -> None:
        """Every message to `to` gets this Twilio error (21610, 21211, 21614, ...)."""
        with self._lock:
            self._by_to[to] = (status, code, message)

    def fail_next(self, n: int, status: int = 429, code: int = 20429, retry_after: int | None = None) -> None:
        """The next `n` requests, whoever they are for, get this error; then back to normal.

        Calls queue up in order: `fail_next(100, 500, 20500)` then `fail_next(100, 429, 20429)`
        answers 500 to the next 100 requests and 429 to the 100 after them. `retry_after`
        (seconds) adds a Retry-After header to those answers.
        """
        with self._lock:
            self._next.extend([(status, code, retry_after)] * n)

    @property
    def failures_left(self) -> int:
        """Scripted failures (`fail_next`) not yet served."""
        with self._lock:
            return len(self._next)

    def throttle(self, n: int) -> None:
        self.fail_next(n, 429, 20429)

    @property
    def messages(self) -> list[FakeMessage]:
        with self._lock:
            return list(self._accepted)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._accepted)

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake Twilio server is not running")
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FakeTwilio:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.shutdown()
        thread.join(timeout=5)
        server.drop_connections()
        server.server_close()  # joins the connection threads

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the API ------------------------------------------------------------------------

    def answer(self, path: str, authorization: str | None, form: bytes) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) for one POST; runs on a connection thread."""
        status, payload, _ = self.respond(path, authorization, form)
        return status, payload

    def respond(self, path: str, authorization: str | None, form: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, JSON body, extra headers) for one POST; runs on a connection thread."""
        with self._lock:
            self.requests += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            return self._answer(path, authorization, form)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer(self, path: str, authorization: str | None, form: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        if authorization != self._auth:
            return 401, twilio_error(401, 20003), {}
        if path.partition("?")[0] != self._path:
            return 404, twilio_error(404, 20404), {}
        fields = {k: v[0] for k, v in parse_qs(form.decode("utf-8"), keep_blank_values=True).items()}
        to, from_, body = fields.get("To"), fields.get("From"), fields.get("Body")
        if not to:
            return 400, twilio_error(400, 21604), {}
        if not from_:
            return 400, twilio_error(400, 21603), {}
        if not body:
            return 400, twilio_error(400, 21602), {}
        with self._lock:
            if self._next:
                status, code, retry_after = self._next.pop(0)
                headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
                return status, twilio_error(status, code), headers
            canned = self._by_to.get(to)
            if canned is not None:
                status, code, message = canned
                return status, twilio_error(status, code, message), {}
            sid = "SM" + uuid.uuid4().hex
            self._accepted.append(FakeMessage(sid, self.account_sid, to, from_, body, fields.get("StatusCallback")))
        now = format_datetime(datetime.now(UTC))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        return (
            201,
            {
                "account_sid": self.account_sid,
                "api_version": API_VERSION,
                "body": body,
                "date_created": now,
                "date_sent": None,
                "date_updated": now,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": from_,
                "messaging_service_sid": None,
                "num_media": "0",
                "num_segments": str(_segments(body)),
                "price": None,
                "price_unit": "USD",
                "sid": sid,
                "status": "queued",
                "subresource_uris": {"media": f"{uri}/Media.json"},
                "to": to,
                "uri": f"{uri}.json",
            },
            {},
        )


class _Server(ThreadingHTTPServer):
    """Tracks open connections so `stop` can end keep-alive threads instead of waiting on them."""

    daemon_threads = False  # so server_close() joins them
    fake: FakeTwilio

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]):
        super().__init__(address, handler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with suppress(OSError):  # the client may have hung up already
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = self.rfile.read(length) if length else b""
        status, payload, headers = self.server.fake.respond(self.path, self.headers.get("Authorization"), form)
        self._reply(status, payload, headers)

    def do_GET(self) -> None:
        self._reply(404, twilio_error(404, 20404))

    def _reply(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode("utf-8")
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"{extra}"
            "\r\n"
        ).encode("ascii")
        self.wfile.write(head + body)  # one write: headers and body in one segment

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextmanager
def twilio_server(
    account_sid: str = DEFAULT_SID, auth_token: str = DEFAULT_TOKEN, delay: float = 0.0
) -> Iterator[FakeTwilio]:
    """A running fake for the length of a `with` block (wrap it in a pytest fixture where needed)."""
    fake = FakeTwilio(account_sid, auth_token, delay)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
