"""The inbox's part of `cadence report`: what was read, by kind, and each sender's bounce health.

Replies counted here are messages; the sequences' reply rates count leads whose `replied`
event the inbox (or a person) recorded, and an out-of-office or other automatic reply is
never one of them. A block (the receiving server refused the sender for policy, reputation,
spam, authentication, relaying or content) says more about the sender than about the lead,
so blocks are counted per sender, beside hard and soft bounces.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cadence.names import InboundKind
from cadence.store import inbound

if TYPE_CHECKING:
    from sqlalchemy import Connection

BLOCKS = frozenset({"blocked", "policy", "spam", "auth", "relay", "content", "rate_limited"})
KINDS = tuple(k.value for k in InboundKind if k is not InboundKind.DUPLICATE)


def inbox_counts(conn: Connection, since: datetime | None) -> dict[str, Any]:
    read = inbound.counts(conn, since)
    senders: dict[str, dict[str, int]] = defaultdict(lambda: {"hard_bounces": 0, "soft_bounces": 0, "blocks": 0})
    for sender, kind, reason, n in inbound.bounces_by_sender(conn, since):
        health = senders[sender or "-"]
        if kind == InboundKind.BOUNCE:
            health["hard_bounces"] += n
        else:
            health["soft_bounces"] += n
            if reason in BLOCKS:
                health["blocks"] += n
    return {"read": {kind: read.get(kind, 0) for kind in KINDS}, "senders": dict(sorted(senders.items()))}
