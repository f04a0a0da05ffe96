"""config.yaml's `inbox:` section is checked like the rest, with the line of each mistake."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cadence.config import check_references, check_settings
from cadence.inbox_settings import Mailbox

BASE = """\
senders:
  - {id: alice, name: Alice, email: alice@acme.example}
inbox:
"""


def _check(tmp_path: Path, inbox: str) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(BASE + inbox)
    settings, diags = check_settings(path)
    if settings is not None and not diags:
        return [str(d) for d in check_references(path, settings, set())]
    return [str(d).replace(f"{path}:", "") for d in diags]


def test_a_full_inbox_section_is_read_with_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        BASE + "  poll: 2m\n  same_company: true\n  mailboxes:\n"
        "    - {sender: alice, host: imap.example, username_env: U, password_env: P}\n"
        "    - {id: shared, host: mail.example, security: starttls, username_env: U2, password_env: P2,"
        " folders: [INBOX, Bounces]}\n"
    )
    settings, diags = check_settings(path)
    assert settings is not None and not diags
    inbox = settings.inbox
    assert inbox.poll_interval == timedelta(minutes=2) and inbox.same_company and inbox.soft_bounce_limit == 3
    first, second = inbox.mailboxes
    assert (first.key, first.imap_port, first.folders, first.security) == ("alice", 993, ["INBOX"], "tls")
    assert (second.key, second.imap_port, second.folders) == ("shared", 143, ["INBOX", "Bounces"])
    assert inbox.mailbox("shared") is second
    assert check_references(path, settings, set()) == []


@pytest.mark.parametrize(
    ("inbox", "message"),
    [
        ("  poll: soon\n", "4:3: poll: duration must look like 30d, 12h, 45m, 2w or 60s, not 'soon'"),
        ("  soft_bounce_limit: 0\n", "4:3: soft_bounce_limit: Input should be greater than or equal to 1"),
        ("  mailboxes:\n    - {host: h, username_env: U}\n", "5:7: missing required key 'password_env'"),
        (
            "  mailboxes:\n    - {host: h, username_env: U, password_env: P, security: ssl}\n",
            "5:51: security: Input should be 'tls', 'starttls' or 'none'",
        ),
        ("  mailboxes:\n    - {host: h, username_env: U, password_env: P, password: hunter2}\n", "password"),
        ("  mailboxes:\n    - {host: h, username_env: U, password_env: P, folders: []}\n", "folders"),
        (
            "  mailboxes:\n    - {host: h, username_env: U, password_env: P}\n" * 1
            + "    - {host: h, username_env: U, password_env: Q}\n",
            "listed twice",
        ),
    ],
)
def test_mistakes_in_the_inbox_section_name_their_line(tmp_path: Path, inbox: str, message: str) -> None:
    problems = _check(tmp_path, inbox)
    assert any(message in p for p in problems), problems


def test_a_mailbox_names_a_known_sender(tmp_path: Path) -> None:
    problems = _check(tmp_path, "  mailboxes:\n    - {sender: carol, host: h, username_env: U, password_env: P}\n")
    assert len(problems) == 1 and problems[0].endswith(":5:8: unknown sender 'carol'")


def test_credentials_come_only_from_the_environment_and_say_what_is_missing() -> None:
    box = Mailbox(host="h", username_env="IMAP_U", password_env="IMAP_P", sender="alice")
    assert box.credentials({"IMAP_U": "a", "IMAP_P": "b"}) == ("a", "b")
    with pytest.raises(KeyError, match="mailbox alice: set IMAP_P in the environment"):
        box.credentials({"IMAP_U": "a"})
