"""The global do-not-contact list: an address on it is never contacted by any sequence, on that channel.

Suppression is by address, not by lead, so it outlives the lead row: importing the same
email again does not make it contactable.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, delete, select

from cadence.names import Channel
from cadence.store.tables import SuppressionT


def add(conn: Connection, channel: Channel, address: str, reason: str, lead_id: str | None, now: datetime) -> bool:
    """Suppress `address` on `channel`; False if it already was (the first reason stands)."""
    if is_suppressed(conn, channel, address):
        return False
    conn.execute(
        SuppressionT.insert().values(channel=channel, address=address, reason=reason, lead_id=lead_id, created_at=now)
    )
    return True


def lift(conn: Connection, channel: Channel, address: str) -> bool:
    """Take `address` off the list for `channel` (an SMS START); False if it was not on it."""
    query = delete(SuppressionT).where(SuppressionT.c.channel == channel, SuppressionT.c.address == address)
    return bool(conn.execute(query).rowcount)


def is_suppressed(conn: Connection, channel: Channel, address: str) -> bool:
    query = select(SuppressionT.c.address).where(SuppressionT.c.channel == channel, SuppressionT.c.address == address)
    return conn.execute(query).first() is not None


def suppressed(conn: Connection, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Which (channel, address) pairs are on the list, and why, looked up by the (channel, address) key."""
    wanted = set(pairs)
    if not wanted:
        return {}
    # Both key columns constrained: the primary key is searched for each (channel, address) pair
    # (a condition on the address alone cannot use a key that starts with the channel).
    channels = sorted({c for c, _ in wanted})
    addresses = sorted({a for _, a in wanted})
    rows = conn.execute(
        select(SuppressionT.c.channel, SuppressionT.c.address, SuppressionT.c.reason).where(
            SuppressionT.c.channel.in_(channels), SuppressionT.c.address.in_(addresses)
        )
    )
    return {(c, a): reason for c, a, reason in rows if (c, a) in wanted}
