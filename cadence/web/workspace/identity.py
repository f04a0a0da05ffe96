"""Who is signed in: a password checked against an argon2 hash, or a trusted proxy's header.

A session cookie (signed with CADENCE_SECRET, HttpOnly, SameSite=Lax, Secure when public_url is
https) remembers the user id between requests; the user's role is read from config.yaml on every
request, so a demoted or removed user loses access at once. Failed sign-ins are limited per
address and per user (LoginLimiter), so neither one address trying many users nor many
addresses trying one user gets far. An unknown user costs the same argon2 verification as a
wrong password, so the answer's timing does not tell which user ids exist.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from threading import Lock

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.requests import Request

from cadence.user_settings import User, trusted
from cadence.web.context import context

HASHER = PasswordHasher()
_DUMMY = HASHER.hash("not a password anyone has")  # verified for unknown users: the same cost either way
SESSION_USER = "user"


@dataclass(frozen=True)
class Viewer:
    """The signed-in user, and what they may see: an SDR their own leads and tasks, a manager everyone's."""

    user: User

    @property
    def id(self) -> str:
        return self.user.id

    @property
    def is_manager(self) -> bool:
        return self.user.is_manager

    def may_see(self, owner: str | None) -> bool:
        return self.is_manager or owner == self.user.id


def check_password(user: User | None, password: str) -> bool:
    """True when `password` is the user's; always pays one verification (timing says nothing)."""
    try:
        HASHER.verify(user.password_hash if user and user.password_hash else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return False
    return user is not None and user.password_hash is not None


@dataclass
class LoginLimiter:
    """At most `per_user` failed sign-ins per user and `per_address` per address in `window`."""

    per_user: int = 5
    per_address: int = 20
    window: timedelta = timedelta(minutes=15)
    _failures: dict[str, deque[datetime]] = field(default_factory=lambda: defaultdict(deque))
    _lock: Lock = field(default_factory=Lock)

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        times = self._failures[key]
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def blocked(self, user_id: str, address: str, now: datetime) -> datetime | None:
        """When the user or address may try again, or None when they may now."""
        with self._lock:
            for key, limit in ((f"user:{user_id}", self.per_user), (f"address:{address}", self.per_address)):
                times = self._recent(key, now)
                if len(times) >= limit:
                    return times[0] + self.window
        return None

    def failed(self, user_id: str, address: str, now: datetime) -> None:
        with self._lock:
            for key in (f"user:{user_id}", f"address:{address}"):
                self._recent(key, now).append(now)

    def succeeded(self, user_id: str) -> None:
        with self._lock:
            self._failures.pop(f"user:{user_id}", None)


def address_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def viewer(request: Request) -> Viewer | None:
    """The signed-in user, or None."""
    settings = context(request).app.settings
    if settings.auth == "proxy":
        if not trusted(address_of(request), settings.trusted_proxies):
            return None
        name = request.headers.get(settings.auth_header, "").strip()
    else:
        name = str(request.session.get(SESSION_USER) or "")
    user = settings.user(name) if name else None
    return Viewer(user) if user is not None else None
