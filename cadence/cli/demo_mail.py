"""The prospects' side of `make demo`: the raw emails their mail servers would send back.

The demo writes each as an .eml file beside the outbox and hands it to `cadence inbox
process`, the path a message read from a rep's mailbox takes, so the reply, the out-of-office
and the bounce in the story are heard from mail, not typed in as events. Each is shaped like
the real thing: a Gmail reply quoting our email, an Exchange auto-reply with its headers, a
Postfix delivery status notification (RFC 3464) returning our message's headers.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from cadence.store.rows import LeadRow, TouchRow


def _base(touch: TouchRow, lead: LeadRow, sender: str, at: datetime, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"{lead.name} <{lead.email}>"
    msg["To"] = sender
    msg["Subject"] = subject
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = f"<demo-{touch.id}-{int(at.timestamp())}@{(lead.email or 'x@lead.example').split('@')[1]}>"
    msg["In-Reply-To"] = touch.message_id or ""
    msg["References"] = touch.message_id or ""
    return msg


def reply(touch: TouchRow, lead: LeadRow, sender: str, at: datetime) -> bytes:
    msg = _base(touch, lead, sender, at, f"Re: {touch.subject}")
    quoted = "\n".join(f"> {line}" for line in (touch.body or "").splitlines()[:6])
    msg.set_content(
        f"Thanks for following up. Could you send me pricing for a team of 12?\n\n{lead.first_name}\n\n"
        f"On {format_datetime(touch.sent_at or at)}, {sender} wrote:\n{quoted}\n"
    )
    return msg.as_bytes()


def out_of_office(touch: TouchRow, lead: LeadRow, sender: str, at: datetime) -> bytes:
    msg = _base(touch, lead, sender, at, f"Automatic reply: {touch.subject}")
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-MS-Exchange-Inbox-Rules-Loop"] = lead.email or ""
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(
        "Thank you for your message. I am out of the office until December 9 with no access to email.\n"
        "For urgent matters, please contact comercial@acme-br.example.\n"
    )
    return msg.as_bytes()


def bounce(touch: TouchRow, lead: LeadRow, sender: str, at: datetime) -> bytes:
    """A Postfix DSN: the address no longer exists (550 5.1.1), with our message's headers returned."""
    domain = (lead.email or "x@lead.example").split("@")[1]
    said = f"550 5.1.1 <{lead.email}>: Recipient address rejected: User unknown in virtual mailbox table"
    text = f"""From: MAILER-DAEMON@mx.acme.example (Mail Delivery System)
To: {sender}
Subject: Undelivered Mail Returned to Sender
Date: {format_datetime(at)}
Message-ID: <dsn-{touch.id}@mx.acme.example>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="dsn-{touch.id}"

--dsn-{touch.id}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.acme.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{lead.email}>: host mx.{domain} said: {said}

--dsn-{touch.id}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.acme.example

Final-Recipient: rfc822; {lead.email}
Original-Recipient: rfc822;{lead.email}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.{domain}
Diagnostic-Code: smtp; {said}

--dsn-{touch.id}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: {sender}
To: {lead.email}
Subject: {touch.subject}
Message-ID: {touch.message_id}

--dsn-{touch.id}--
"""
    return text.replace("\n", "\r\n").encode()


BUILDERS = {"reply": reply, "out_of_office": out_of_office, "bounce": bounce}


def write(folder: Path, kind: str, touch: TouchRow, lead: LeadRow, sender: str, at: datetime) -> str:
    """Write the message to inbox/ in the demo folder; its path relative to the folder, for the command line."""
    target = folder / "inbox" / f"{lead.id}-{kind}.eml"
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(BUILDERS[kind](touch, lead, sender, at))
    return str(target.relative_to(folder))
