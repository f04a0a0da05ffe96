"""Inbound SMS already acted on: Twilio retries a webhook whose answer it did not get, so the same
MessageSid can arrive twice, and the second must record nothing.

The check is the insert itself (a unique key, ON CONFLICT DO NOTHING), made in the transaction
that acts on the message: two deliveries racing each other still act once, on PostgreSQL too,
and a message whose handling failed and rolled back leaves no receipt, so Twilio's retry is acted on.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from cadence.store.tables import SmsReceiptT

MAX_SID = 64  # the column's width; Twilio's SIDs are 34 characters


def first_receipt(conn: Connection, message_sid: str, now: datetime) -> bool:
    """Record that `message_sid` is being acted on; False when it already was (a replay)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(SmsReceiptT)
        .values(message_sid=message_sid, received_at=now)
        .on_conflict_do_nothing(index_elements=["message_sid"])
        .returning(SmsReceiptT.c.message_sid)  # a row comes back only when it was inserted (rowcount is not kept)
    )
    return conn.execute(statement).first() is not None
