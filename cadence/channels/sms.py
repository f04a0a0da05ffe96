"""SMS transports: an outbox file for demos and dry runs, and Twilio for real sends.

Both follow `cadence.channels.base.SmsTransport`: a batch in, one `Receipt` per
message out, in order, and never an exception for one message's failure.

How Twilio's answers become our errors (see `error_for`):

    SendError
    ├── TransientError     HTTP 429 and 5xx; Twilio 30003 (unreachable) and 30008 (unknown);
    │                      Twilio could not be reached (connection refused)
    ├── UncertainError     the request went out and no usable answer came back: a timeout, a
    │                      dropped connection, or anything unexpected while reading the answer
    │                      (the touch becomes `unknown`, resent only by `cadence retry`)
    └── PermanentError     event "sms_stop" (21610), "phone_invalid" (21211),
                           "not_mobile" (21614); any other 4xx has event None

Retries belong to the dispatcher, which backs off with jitter across batches.
The twilio client does not retry on its own as we build it: `AsyncTwilioHttpClient`
wraps its session in aiohttp-retry only when given `max_retries`, and we never pass
it, so a 429 reaches us on the first answer and becomes a TransientError.

Once the request may have reached Twilio, nothing is called transient or permanent
by guesswork: the Messages API has no idempotency key, so a resend could text a
prospect twice, and a permanent failure would wrongly tell the rules the message
never went. Such errors are uncertain; the timeout is generous so that this stays rare.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from cadence.channels.base import (
    OutgoingSms,
    PermanentError,
    Receipt,
    SendError,
    SmsTransport,
    TransientError,
    UncertainError,
    missing_secrets,
)
from cadence.clock import Clock
from cadence.config import Settings, TwilioSettings
from cadence.names import CarrierEvent, Event

# -- errors -----------------------------------------------------------------------------

_PERMANENT_EVENTS: dict[int, str] = {
    21610: Event.SMS_STOP,
    21211: CarrierEvent.PHONE_INVALID,
    21614: CarrierEvent.NOT_MOBILE,
}
_TRANSIENT_CODES = frozenset({30003, 30008})


def error_for(status: int | None, code: int | str | None, message: str) -> SendError:
    """Twilio's (HTTP status, error code) -> the error class the dispatcher acts on.

    The code is checked before the status, because 21610 and friends arrive as
    plain 400s and only the code says what they mean for the lead. Kept public so
    status callbacks (where 30003/30008 actually show up) can use the same table.
    """
    try:
        number = int(code) if code is not None else None
    except (TypeError, ValueError):
        number = None
    if number in _PERMANENT_EVENTS:
        return PermanentError(message, number, event=_PERMANENT_EVENTS[number])
    if number in _TRANSIENT_CODES:
        return TransientError(message, number)
    if status is not None and (status == 429 or status >= 500):
        return TransientError(message, number if number is not None else status)
    return PermanentError(message, number if number is not None else status)


def _twilio_error(exc: TwilioRestException | TwilioServiceException) -> SendError:
    # str() of these exceptions paints ANSI colours when stderr is a terminal; build our own text.
    if isinstance(exc, TwilioServiceException):
        text = f"Twilio: {exc.title}" + (f": {exc.detail}" if exc.detail else "")
    else:
        text = f"Twilio: {exc.msg}" if exc.msg else f"Twilio answered HTTP {exc.status}"
    return error_for(exc.status, exc.code, text)


def new_sid() -> str:
    """A Twilio-shaped message SID: "SM" and 32 hex digits."""
    return "SM" + uuid.uuid4().hex


# -- outbox -----------------------------------------------------------------------------


class OutboxSmsTransport:
    """Appends each message as a JSON line instead of sending it (demos, dry runs, tests).

    A batch is written and fsynced at once, so a crash never leaves a touch recorded
    as sent without its line. If the file cannot be written, every message in the
    batch gets a TransientError and the dispatcher tries again later. Batches sent at
    once are appended one after the other, in the order they were handed over.
    """

    def __init__(self, path: Path, clock: Clock):
        self.path = path
        self.clock = clock
        self._turns: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    def _turn(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        self._turns = {k: v for k, v in self._turns.items() if not k.is_closed()}
        return self._turns.setdefault(loop, asyncio.Lock())

    async def send_batch(self, messages: Sequence[OutgoingSms]) -> list[Receipt]:
        if not messages:
            return []
        at = self.clock.now().isoformat()
        sids = [new_sid() for _ in messages]
        lines = [
            json.dumps(
                {
                    "touch_id": m.touch_id,
                    "to": m.to,
                    "from": m.from_,
                    "body": m.body,
                    "status_callback": m.status_callback,
                    "at": at,
                    "sid": sid,
                },
                ensure_ascii=False,
            )
            + "\n"
            for m, sid in zip(messages, sids, strict=True)
        ]
        try:
            async with self._turn():  # asyncio.Lock is first come, first served: lines keep the batches' order
                await asyncio.to_thread(self._append, "".join(lines))
        except OSError as exc:
            error = TransientError(f"cannot write the SMS outbox {self.path}: {exc}")
            return [Receipt(m.touch_id, error=error) for m in messages]
        return [Receipt(m.touch_id, provider_id=sid) for m, sid in zip(messages, sids, strict=True)]

    def _append(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    async def aclose(self) -> None:
        return None


# -- twilio -----------------------------------------------------------------------------


class MissingTwilioCredentials(ValueError):
    """Raised at startup, so a misconfigured `cadence run` stops before it claims any work."""


class _RedirectingHttpClient(AsyncTwilioHttpClient):
    """The stock async client's contract, with its `request` rewritten for three reasons.

    - Upstream authenticates with `aiohttp.BasicAuth`, deprecated since aiohttp 3.14
      (a DeprecationWarning on every send); we send the Authorization header ourselves.
    - Upstream passes `timeout=None` straight to aiohttp, which means no timeout at
      all; we apply ours, and bound the pool to `connections`.
    - With `api_base` set, every *.twilio.com URL goes to that origin instead (a local
      fake in tests, or a proxy), path and query kept.
    """

    def __init__(self, api_base: str | None, *, connections: int, timeout: float):
        super().__init__(pool_connections=False, timeout=timeout)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections))
        self._origin: tuple[str, str, str] | None = None
        if api_base:
            base = urlsplit(api_base)
            if not base.scheme or not base.netloc:
                raise ValueError(
                    f"sms.twilio.api_base must be an absolute URL like http://127.0.0.1:8080, not {api_base!r}"
                )
            self._origin = (base.scheme, base.netloc, base.path.rstrip("/"))

    def _rewrite(self, url: str) -> str:
        if self._origin is None:
            return url
        parts = urlsplit(url)
        if not (parts.hostname or "").endswith("twilio.com"):
            return url
        scheme, netloc, prefix = self._origin
        query = f"?{parts.query}" if parts.query else ""
        return f"{scheme}://{netloc}{prefix}{parts.path}{query}"

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        if self.session is None:
            raise RuntimeError("the Twilio HTTP client is closed")
        if timeout is not None and timeout <= 0:
            raise ValueError(timeout)
        sent_headers = dict(headers or {})
        if auth is not None:
            pair = f"{auth[0]}:{auth[1]}".encode()
            sent_headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        kwargs: dict[str, Any] = {
            "method": method.upper(),
            "url": self._rewrite(url),
            "params": params,
            "data": data,
            "headers": sent_headers,
            "timeout": aiohttp.ClientTimeout(total=timeout if timeout is not None else self.timeout),
            "allow_redirects": allow_redirects,
        }
        self.log_request(kwargs)  # leaves out the Authorization header
        async with self.session.request(**kwargs) as response:
            text = await response.text()
        self.log_response(response.status, response)
        return Response(response.status, text, response.headers)


class TwilioSmsTransport:
    """Sends through the official twilio client (`messages.create_async`), a few messages at a time.

    Credentials come only from the environment variables named in the settings, and
    are checked here so a missing one fails at startup rather than on the first batch.
    The aiohttp session is opened on the first batch, inside the running loop (aiohttp
    binds a session to its loop), and `aclose` closes it; one transport serves one loop.
    """

    def __init__(
        self,
        settings: TwilioSettings,
        environ: Mapping[str, str] = os.environ,
        *,
        timeout_seconds: float = 30.0,
    ):
        sid = (environ.get(settings.account_sid_env) or "").strip()
        token = (environ.get(settings.auth_token_env) or "").strip()
        missing = [
            name for name, value in ((settings.account_sid_env, sid), (settings.auth_token_env, token)) if not value
        ]
        if missing:
            raise MissingTwilioCredentials(
                missing_secrets(
                    "SMS goes through Twilio (sms.transport: twilio)",
                    missing,
                    "sms.twilio.account_sid_env / auth_token_env",
                )
            )
        self.settings = settings
        self._sid = sid
        self._token = token
        self._environ = environ
        self._timeout = timeout_seconds
        self._http: _RedirectingHttpClient | None = None
        self._client: Client | None = None
        self._gate: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client_for_this_loop(self) -> tuple[Client, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._gate is None:
            self._http = _RedirectingHttpClient(
                self.settings.api_base, connections=self.settings.concurrency, timeout=self._timeout
            )
            self._client = Client(self._sid, self._token, http_client=self._http, environment=dict(self._environ))
            self._gate = asyncio.Semaphore(self.settings.concurrency)
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("TwilioSmsTransport is bound to the event loop that first used it; make one per loop")
        return self._client, self._gate

    async def send_batch(self, messages: Sequence[OutgoingSms]) -> list[Receipt]:
        if not messages:
            return []
        client, gate = self._client_for_this_loop()
        return list(await asyncio.gather(*(self._send_one(client, gate, m) for m in messages)))

    async def _send_one(self, client: Client, gate: asyncio.Semaphore, message: OutgoingSms) -> Receipt:
        # The gate is taken before the request so aiohttp's timeout measures the request, not the queue.
        options: dict[str, Any] = {"to": message.to, "from_": message.from_, "body": message.body}
        if message.status_callback:
            options["status_callback"] = message.status_callback
        async with gate:
            try:
                created = await client.messages.create_async(**options)
            except (TwilioRestException, TwilioServiceException) as exc:
                return Receipt(message.touch_id, error=_twilio_error(exc))
            except (aiohttp.ClientConnectorError, ConnectionRefusedError) as exc:
                detail = str(exc) or type(exc).__name__
                return Receipt(message.touch_id, error=TransientError(f"could not reach Twilio: {detail}"))
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                # The request may have reached Twilio (which has no idempotency key): never resend blindly.
                detail = str(exc) or type(exc).__name__
                return Receipt(message.touch_id, error=UncertainError(f"no answer from Twilio after sending: {detail}"))
            except Exception as exc:  # a malformed answer, say: it may well have been sent, so never resend blindly
                detail = f"{type(exc).__name__}: {exc}"
                return Receipt(
                    message.touch_id, error=UncertainError(f"unexpected error after sending via Twilio: {detail}")
                )
        return Receipt(message.touch_id, provider_id=created.sid)

    async def aclose(self) -> None:
        http, self._http, self._client, self._gate, self._loop = self._http, None, None, None, None
        if http is not None:
            await http.close()


def make_sms_transport(settings: Settings, clock: Clock, environ: Mapping[str, str] | None = None) -> SmsTransport:
    """The transport config.yaml asks for (sms.transport: outbox | twilio)."""
    if settings.sms.transport == "twilio":
        return TwilioSmsTransport(settings.sms.twilio, os.environ if environ is None else environ)
    return OutboxSmsTransport(settings.outbox_dir / "sms.jsonl", clock)
