"""A poll of 10,000 messages in a private Dovecot, beside the raw imap-tools fetch of the same folder (issue 13).

What is timed, in one run, against the same Dovecot mailbox on 127.0.0.1:

- raw (the floor): imap-tools, logged in, fetching every message of INBOX with
  `fetch(mark_seen=False, bulk=...)` (UID FETCH ... BODY.PEEK[] in bulk) and parsing each into
  imap-tools' MailMessage: what any client reading this folder pays;
- cadence poll (the headline): `cadence.engine.inbox_poll.poll` over the same folder on a fresh
  SQLite store, cursor at zero: fetch (`BODY.PEEK[]<0.cap>` in chunks), read and classify each
  message, match it to a lead and a touch, act on it through the events and rules (a reply
  opens the owner's task, a bounce marks the address invalid, ...), record it once and move
  the cursor, one transaction per message;
- classify (context): read + classify alone over the tests/inbox/ corpus, no I/O at all.

The mailbox holds `--messages` messages (default 10,000): 70% replies from the store's leads
(matched by sender, each one a `replied` event with its task), 30% the corpus's own messages
(bounces from a dozen MTAs, out-of-office and automatic replies, strangers, malformed mail),
each with a unique Message-ID. They are written straight into the Maildir before Dovecot
starts, so filling it costs seconds, not an APPEND each. Needs `dovecot` on the PATH
(`apt-get install -y dovecot-imapd`). Nothing leaves the machine.

Run: `.venv/bin/python bench/inbox_poll.py [--messages N] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inbox_classify import classify_pass, load_corpus  # noqa: E402
from cadence.app import App  # noqa: E402
from cadence.clock import FixedClock, parse_instant  # noqa: E402
from cadence.engine.inbox_poll import poll  # noqa: E402
from cadence.enrollment.lead_import import import_leads  # noqa: E402
from tests.dovecot import Dovecot  # noqa: E402

USER, PASSWORD = "alice@acme.example", "secret"
NOW = "2026-11-24T09:00:00-05:00"
_MID = re.compile(rb"^Message-ID:.*?\r?\n(?![ \t])", re.IGNORECASE | re.MULTILINE | re.DOTALL)


def messages(count: int) -> list[bytes]:
    corpus = [raw for _, raw, _, _ in load_corpus()]
    out: list[bytes] = []
    for n in range(count):
        if n % 10 < 7:
            lead = n % 5000
            out.append(
                f"From: Lead {lead} <lead{lead}@prospect{lead % 97}.example>\r\nTo: {USER}\r\nSubject: Re: hello\r\n"
                f"Message-ID: <reply-{n}@prospect.example>\r\nDate: Tue, 24 Nov 2026 08:00:00 -0500\r\n\r\n"
                f"Thanks, send me the pricing for {n % 40 + 2} seats.\r\n\r\nOn Mon, Alice wrote:\r\n> Hi\r\n".encode()
            )
        else:
            raw = corpus[n % len(corpus)]
            unique = f"Message-ID: <bench-{n}@corpus.example>\r\n".encode()
            replaced, found = _MID.subn(unique, raw, count=1)
            out.append(replaced if found else unique + raw)
    return out


def fill_maildir(server: Dovecot, raws: list[bytes]) -> None:
    """Write the messages into the user's Maildir (cur/, seen by Dovecot on the first SELECT)."""
    maildir = server.root / "mail" / USER / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for n, raw in enumerate(raws):
        (maildir / "cur" / f"1764000000.M{n}P1.bench:2,").write_bytes(raw)
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for path in [server.root / "mail", *(server.root / "mail").rglob("*")]:
            os.chown(path, nobody.pw_uid, nobody.pw_gid)


def raw_fetch(server: Dovecot) -> tuple[int, float]:
    from imap_tools import MailBoxUnencrypted

    start = time.perf_counter()
    with MailBoxUnencrypted(server.host, server.port).login(USER, PASSWORD) as box:
        fetched = sum(1 for _ in box.fetch(mark_seen=False, bulk=500))
    return fetched, time.perf_counter() - start


def project(folder: Path, server: Dovecot, leads: int) -> App:
    import yaml

    shutil.copytree(ROOT / "cadence" / "starter", folder, dirs_exist_ok=True)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["database"] = f"sqlite:///{folder / 'cadence.db'}"
    config["inbox"] = {
        "mailboxes": [{
            "sender": "alice", "host": server.host, "port": server.port, "security": "none",
            "username_env": "BENCH_IMAP_USER", "password_env": "BENCH_IMAP_PASSWORD",
        }],
    }  # fmt: skip
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    os.environ.update(BENCH_IMAP_USER=USER, BENCH_IMAP_PASSWORD=PASSWORD)
    app = App.load(folder / "config.yaml", FixedClock(parse_instant(NOW)))
    rows = [
        (n + 2, {"id": f"P{n}", "email": f"lead{n}@prospect{n % 97}.example", "first_name": f"Lead{n}",
                 "company": f"Prospect {n % 97}", "owner": "alice", "timezone": "America/New_York"})
        for n in range(leads)
    ]  # fmt: skip
    report = import_leads(app.engine, rows, app.settings, app.clock.now())
    assert not report.rejected, report.rejected[:3]
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="messages in the mailbox (default 10000)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    count = max(10, args.messages)
    raws = messages(count)
    work = Path(tempfile.mkdtemp(prefix="cadence-bench-inbox-"))
    server = Dovecot.start({USER: PASSWORD})
    try:
        server.stop_server()
        fill_maildir(server, raws)
        server.restart()
        raw_fetch(server)  # Dovecot builds its index on the first SELECT: not part of either figure
        fetched, raw_s = raw_fetch(server)
        assert fetched == count, f"imap-tools fetched {fetched} of {count}"
        app = project(work / "project", server, leads=5000)
        try:
            start, cpu = time.perf_counter(), time.process_time()
            report = poll(app, "bench")
            poll_s, poll_cpu = time.perf_counter() - start, time.process_time() - cpu
        finally:
            app.close()
        box = report.mailboxes[0]
        if box.error:
            raise SystemExit(f"the poll failed: {box.error}")
        kinds = Counter(m.kind for m in box.messages)
        corpus = load_corpus()
        times = 20
        start = time.perf_counter()
        classify_pass(corpus, times)
        classify_s = time.perf_counter() - start
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    figures: dict[str, Any] = {
        "messages": count,
        "bytes": sum(len(r) for r in raws),
        "raw_fetch_per_s": count / raw_s,
        "poll_per_s": len(box.messages) / poll_s,
        "poll_cpu_ms": 1000 * poll_cpu / max(1, len(box.messages)),
        "poll_over_raw": (len(box.messages) / poll_s) / (count / raw_s),
        "classify_per_s": len(corpus) * times / classify_s,
        "read": len(box.messages),
        "kinds": dict(sorted(kinds.items())),
        "measured_at": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    f = figures
    print(f"inbox poll of {count:,} messages ({f['bytes'] / 1e6:.1f} MB) in a private Dovecot on 127.0.0.1, one run")
    print(f"  raw imap-tools fetch   {f['raw_fetch_per_s']:>8,.0f} messages/s (fetch + parse, nothing stored)")
    print(
        f"  cadence poll           {f['poll_per_s']:>8,.0f} messages/s ({f['poll_over_raw']:.0%} of raw;"
        f" {f['poll_cpu_ms']:.2f} ms CPU a message: fetch, classify, match, act, record once, cursor)"
    )
    print(f"  classify alone         {f['classify_per_s']:>8,.0f} messages/s (the tests/inbox/ corpus, no I/O)")
    print(f"  read {f['read']:,}: " + ", ".join(f"{k} {n:,}" for k, n in f["kinds"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
