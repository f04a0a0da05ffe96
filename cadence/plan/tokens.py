"""Signed unsubscribe tokens: the token alone identifies the lead (RFC 8058 posts carry no cookie).

A token is `base64url(lead_id).base64url(hmac_sha256(secret, lead_id)[:16])`; an
altered or forged token fails the constant-time comparison and changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SECRET_ENV = "CADENCE_SECRET"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, lead_id: str) -> bytes:
    return hmac.new(secret.encode(), b"unsubscribe:" + lead_id.encode(), hashlib.sha256).digest()[:16]


def sign(lead_id: str, secret: str) -> str:
    return f"{_b64(lead_id.encode())}.{_b64(_mac(secret, lead_id))}"


def verify(token: str, secret: str) -> str | None:
    """The lead id the token was made for, or None if it was not made with `secret`."""
    try:
        encoded_id, encoded_mac = token.split(".", 1)
        lead_id = _unb64(encoded_id).decode()
        mac = _unb64(encoded_mac)
    except (ValueError, UnicodeDecodeError):
        return None
    return lead_id if hmac.compare_digest(mac, _mac(secret, lead_id)) else None
