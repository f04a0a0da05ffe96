"""config.yaml's `inbox:` section: the mailboxes cadence reads to hear replies, out-of-office replies and bounces.

Kept apart from `config.py` because it is one idea (where the prospect's answers arrive) with
rules of its own: a mailbox is named by a stable key (its cursor and its reader's lease live
under it in the database, so renaming one makes cadence read that mailbox afresh), passwords
come only from the environment, and the poll interval is a duration a manager writes ("60s").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cadence.spec import values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Mailbox(_Strict):
    """One IMAP mailbox: a rep's own, or a shared address (a catch-all, or the Reply-To cadence sets)."""

    id: str | None = Field(
        None, description="Stable name of the mailbox (its cursor is kept under it); default: sender, else user@host"
    )
    host: str
    port: int | None = Field(None, ge=1, le=65535, description="Default 993 with tls, else 143")
    security: Literal["tls", "starttls", "none"] = "tls"
    username_env: str = Field(description="Environment variable holding the IMAP user name")
    password_env: str = Field(description="Environment variable holding the IMAP password")
    folders: list[str] = Field(default_factory=lambda: ["INBOX"], min_length=1)
    sender: str | None = Field(None, description="The sender (an SDR's id) whose mail arrives here")
    sent_folder: str = Field("Sent", description="Where inbox.save_sent APPENDs each email this sender sends")
    timeout_seconds: float = Field(30.0, gt=0, le=600)

    @field_validator("folders")
    @classmethod
    def _folders(cls, v: list[str]) -> list[str]:
        if any(not f.strip() for f in v):
            raise ValueError("a folder name cannot be empty")
        if len(set(v)) != len(v):
            raise ValueError("each folder may be listed once")
        return v

    @property
    def key(self) -> str:
        """The name its cursor and lease are stored under."""
        return self.id or self.sender or f"{self.username_env}@{self.host}"

    @property
    def imap_port(self) -> int:
        return self.port or (993 if self.security == "tls" else 143)

    def credentials(self, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
        """The user name and password, read from the environment; a KeyError names what is missing."""
        env = os.environ if environ is None else environ
        missing = [name for name in (self.username_env, self.password_env) if not env.get(name)]
        if missing:
            raise KeyError(f"mailbox {self.key}: set {' and '.join(missing)} in the environment")
        return env[self.username_env], env[self.password_env]


class InboxSettings(_Strict):
    mailboxes: list[Mailbox] = Field(default_factory=list)
    poll: str = Field("60s", description="How often `cadence run` reads the mailboxes")
    same_company: bool = Field(
        False, description="A reply from a colleague at the lead's company (not a free-mail domain) ends its sequence"
    )
    soft_bounce_limit: int = Field(3, ge=1, description="Soft bounces of one address in a row that make it bounced")
    move_processed: str | None = Field(
        None, description="Folder bounces and auto-replies are moved to once processed (default: leave them)"
    )
    save_sent: bool = Field(False, description="APPEND each email sent to its sender's Sent folder")
    max_message_kib: int = Field(
        512, ge=16, le=65536, description="Bytes of one message read at most (headers and text come first)"
    )
    lease_seconds: int = Field(120, ge=10, description="How long one worker holds a mailbox before another may read it")

    @field_validator("poll", mode="before")
    @classmethod
    def _poll(cls, v: object) -> object:
        value = f"{v}s" if isinstance(v, int | float) and not isinstance(v, bool) else v
        if isinstance(value, str) and values.parse_duration(value) <= timedelta(0):
            raise ValueError("poll must be a positive duration, like 60s or 5m")
        return value

    @model_validator(mode="after")
    def _unique(self) -> InboxSettings:
        keys = [m.key for m in self.mailboxes]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(f"mailbox {twice[0]!r} is listed twice; give each an id of its own")
        return self

    @property
    def poll_interval(self) -> timedelta:
        return values.parse_duration(self.poll)

    def problems(self, senders: set[str]) -> list[tuple[tuple[str | int, ...], str]]:
        """(where in config.yaml, what is wrong): a mailbox's sender must be a configured sender."""
        return [
            (("inbox", "mailboxes", i, "sender"), f"unknown sender {m.sender!r}")
            for i, m in enumerate(self.mailboxes)
            if m.sender is not None and m.sender not in senders
        ]

    def mailbox(self, key: str) -> Mailbox:
        for m in self.mailboxes:
            if m.key == key:
                return m
        raise KeyError(f"no mailbox {key!r} in inbox.mailboxes")
