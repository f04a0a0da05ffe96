"""A private Dovecot IMAP server on 127.0.0.1, one per test, so the mailbox reader is tested against a real server.

Each instance has its own directory (made with `mkdtemp` under /tmp and opened to 0755:
under pytest's 0700 `tmp_path` Dovecot's auth process cannot read the passwd file and
every login fails with "Temporary authentication failure"), its own port and its own
`instance_name`, so it ignores any system Dovecot. Users are written before the server
starts, because a passwd-file change within about a second of a lookup is missed.

The server runs in a session of its own (its pid is the process group), and asks the
kernel to SIGTERM it if the test process dies (PR_SET_PDEATHSIG), so a killed test run
leaves no server behind. `stop` ends the whole group, which takes under 0.1 s.

`append` and `messages` talk IMAP as the user (with imap-tools), which is how a test
puts mail in place and then checks that reading it marked nothing \\Seen and deleted
nothing. `stop_server` and `restart` take the server away and bring it back on the same
port and mail, for testing what the reader does when its server goes down.

Dovecot must be installed: without it the tests fail, they never skip.
"""

from __future__ import annotations

import ctypes
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import suppress
from pathlib import Path

from imap_tools import MailBoxUnencrypted

NOT_INSTALLED = "Dovecot is not installed: apt-get install -y dovecot-imapd (CI's .ci/run installs it)"
_PR_SET_PDEATHSIG = 1
_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")
_FETCH_FLAGS = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\)|FLAGS \(([^)]*)\) UID (\d+)")


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends it SIGTERM when the test process ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(root: Path, port: int) -> str:
    if os.geteuid() == 0:
        mail_user, mail_group, unprivileged = "nobody", grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name, ""
    else:
        me = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
        mail_user, mail_group = me, group
        unprivileged = (
            f"default_internal_user = {me}\ndefault_internal_group = {group}\ndefault_login_user = {me}\n"
            "service anvil {\n  chroot =\n}\n"
        )
    login_chroot = "" if os.geteuid() == 0 else "  chroot =\n"
    return f"""\
instance_name = test-{port}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:~/Maildir
mail_fsync = never
{unprivileged}namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={root}/mail/%u
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
{login_chroot}  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


class Dovecot:
    """One running Dovecot: `host`, `port`, and the users it was started with."""

    host = "127.0.0.1"

    def __init__(self, root: Path, port: int, users: dict[str, str]) -> None:
        self.root = root
        self.port = port
        self.users = dict(users)
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, users: dict[str, str]) -> Dovecot:
        """Write the config and passwd file, start the server, and return once it greets."""
        if shutil.which("dovecot") is None:
            raise RuntimeError(NOT_INSTALLED)
        root = Path(tempfile.mkdtemp(prefix="cadence-dovecot-", dir="/tmp"))
        os.chmod(root, 0o755)
        server = cls(root, _free_port(), users)
        try:
            (root / "passwd").write_text("".join(f"{user}:{{PLAIN}}{pw}\n" for user, pw in users.items()))
            mail = root / "mail"
            mail.mkdir()
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody")
                os.chown(mail, nobody.pw_uid, nobody.pw_gid)
            (root / "dovecot.conf").write_text(_config(root, server.port))
            server.restart()
        except BaseException:
            server.stop()
            raise
        return server

    def restart(self) -> None:
        """Start the server (again, after `stop_server`) on the same port, with the same mail."""
        if self._process is not None:
            return
        with open(self.root / "stderr.log", "ab") as stderr:
            self._process = subprocess.Popen(
                ["dovecot", "-F", "-c", str(self.root / "dovecot.conf")],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,  # `setsid`: its pid is the group `stop_server` ends
                preexec_fn=_die_with_parent,
            )
        self._wait_for_greeting()

    def _wait_for_greeting(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"Dovecot exited with {self._process.returncode}:\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    if s.recv(256).startswith(b"* OK"):
                        return
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"Dovecot did not greet on port {self.port} within {timeout} s:\n{self.log()}")

    def stop_server(self) -> None:
        """Stop the server (the whole process group) but keep its mail, so `restart` can bring it back."""
        process, self._process = self._process, None
        if process is None:
            return
        _t = time.monotonic()
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        import sys
        try:
            process.wait(timeout=5)
            print("DBG master", time.monotonic() - _t, file=sys.stderr)
        except subprocess.TimeoutExpired:
            print("DBG master TIMEOUT", subprocess.run(["ps","-o","pid,ppid,stat,wchan,cmd","-g",str(process.pid)],capture_output=True,text=True).stdout, file=sys.stderr)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # The master is gone; wait for the rest of its group, so the port is free for a restart.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                print("DBG group", time.monotonic() - _t, file=sys.stderr)
                return
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        self.stop_server()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        """Dovecot's own log, for a failing test's message."""
        logs = (self.root / "dovecot.log", self.root / "stderr.log")
        return "".join(p.read_text(errors="replace") for p in logs if p.exists())

    def _login(self, user: str) -> MailBoxUnencrypted:
        return MailBoxUnencrypted(self.host, self.port, timeout=10).login(user, self.users[user], initial_folder=None)

    def append(self, user: str, folder: str, raw: bytes, flags: tuple[str, ...] = ()) -> int:
        """Put one message into `user`'s `folder` (created if missing) and return its UID."""
        with self._login(user) as box:
            if not box.folder.exists(folder):
                box.folder.create(folder)
            _, data = box.append(raw, folder, flag_set=list(flags))
        found = _APPENDUID.search(b" ".join(d for d in data if isinstance(d, bytes)))
        assert found, f"Dovecot gave no APPENDUID: {data!r}"
        return int(found.group(1))

    def messages(self, user: str, folder: str) -> list[tuple[int, frozenset[str]]]:
        r"""Every message in `user`'s `folder` as (uid, flags), read without changing anything (EXAMINE).

        \Recent is left out: it says only which session saw the message first.
        """
        with self._login(user) as box:
            box.folder.set(folder, readonly=True)
            typ, data = box.client.uid("FETCH", "1:*", "(UID FLAGS)")
        assert typ == "OK", data
        found = []
        for line in data:
            if not isinstance(line, bytes):
                continue
            match = _FETCH_FLAGS.search(line)
            assert match, line
            uid = match.group(1) or match.group(4)
            flags = (match.group(2) if match.group(1) else match.group(3)).decode().split()
            found.append((int(uid), frozenset(f for f in flags if f != "\\Recent")))
        return sorted(found, key=lambda m: m[0])

    def folders(self, user: str) -> list[str]:
        """The names of `user`'s folders."""
        with self._login(user) as box:
            return sorted(f.name for f in box.folder.list())
