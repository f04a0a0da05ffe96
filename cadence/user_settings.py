"""config.yaml's people: who may sign in to the web workspace, and how cadence knows who they are.

An SDR's user id is their sender id, so "my day" is the tasks of the sender they are; a
manager sees everyone's. Passwords are never in the file, only argon2 hashes in the standard
`$argon2id$...` form `argon2-cffi` writes (`cadence users add` writes them). Behind a single
sign-on proxy, `auth: proxy` trusts a header naming the user instead, and only when the
request comes from one of `trusted_proxies`: anyone else could send the header too.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["sdr", "manager"]


class User(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    id: str = Field(min_length=1, max_length=100, description="An SDR's id is their sender id")
    name: str | None = None
    role: Role = "sdr"
    password_hash: str | None = Field(None, description="An argon2 hash ($argon2id$...); none with auth: proxy")

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("$argon2id$", "$argon2i$", "$argon2d$")):
            raise ValueError("password_hash must be an argon2 hash ($argon2id$...); write it with `cadence users add`")
        return v

    @property
    def is_manager(self) -> bool:
        return self.role == "manager"

    @property
    def shown(self) -> str:
        return self.name or self.id


def user_problems(users: list[User], senders: set[str], auth: str) -> list[tuple[tuple[str | int, ...], str]]:
    """(where in config.yaml, what is wrong) for the `users:` list; needs the senders, so after validation."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    seen: set[str] = set()
    for i, user in enumerate(users):
        if user.id in seen:
            out.append((("users", i, "id"), f"user {user.id!r} appears twice"))
        seen.add(user.id)
        if user.role == "sdr" and user.id not in senders:
            out.append((("users", i, "id"), f"SDR {user.id!r} is not a sender (an SDR's id is their sender id)"))
        if auth == "password" and user.password_hash is None:
            out.append((("users", i), f"user {user.id!r} has no password_hash: run `cadence users add {user.id}`"))
    return out


def check_proxies(values: list[str]) -> list[str]:
    """Each entry is an address or a network (10.0.0.0/8); a ValueError names the one that is not."""
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ValueError(f"trusted_proxies: {value!r} is not an IP address or network") from exc
    return values


def trusted(client: str | None, proxies: list[str]) -> bool:
    """Whether a request's peer address is one of the trusted proxies."""
    if not client:
        return False
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(p, strict=False) for p in proxies)
