"""A private Dovecot IMAP server on 127.0.0.1, one per test, so the mailbox reader is tested against a real server.

Each instance has its own directory (made with `mkdtemp` under /tmp and opened to 0755:
under pytest's 0700 `tmp_path` Dovecot's auth process cannot read the passwd file and
every login fails with "Temporary authentication failure"), its own port and its own
`instance_name`, so it ignores any system Dovecot. Users are written before the server
starts, because a passwd-file change within about a second of a lookup is missed.

The server runs in a session of its own under a small shell that kills the whole group
when the test process dies (it watches a pipe only the test process writes to), so a
killed test run leaves no server behind. `stop` ends the group in a few milliseconds.
With `tls=(cert, key)` it also speaks STARTTLS on `port` and implicit TLS on `tls_port`.

`append` and `messages` talk IMAP as the user (with imap-tools), which is how a test
puts mail in place and then checks that reading it marked nothing \\Seen and deleted
nothing. `stop_server` and `restart` take the server away and bring it back on the same
port and mail, for testing what the reader does when its server goes down.

Dovecot must be installed: without it the tests fail, they never skip.
"""

from __future__ import annotations

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
from contextlib import ExitStack, suppress
from pathlib import Path

from imap_tools import MailBoxUnencrypted

NOT_INSTALLED = "Dovecot is not installed: apt-get install -y dovecot-imapd (CI's .ci/run installs it)"
_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")
_FETCH_FLAGS = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\)|FLAGS \(([^)]*)\) UID (\d+)")


def dovecot_binary() -> str | None:
    """Where `dovecot` is; also looked for in /usr/sbin, which a non-root user's PATH often lacks."""
    return shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/usr/local/sbin")


# Dovecot under a small sh that is the session (and process-group) leader. The test process
# holds the write end of the shell's stdin; when it dies, even by SIGKILL, `read` sees EOF and
# the shell kills the whole group. (PR_SET_PDEATHSIG cannot do this: Dovecot's master clears it.)
_SUPERVISOR = """
exec 3<&0 </dev/null
"$0" -F -c "$1" 3<&- &
server=$!
{ read -r _ <&3; kill -KILL 0; } &
wait "$server"
"""


def _free_ports(count: int) -> list[int]:
    """Ports nothing listens on now, all different (every socket is held until all are chosen)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def _config(root: Path, port: int, tls_port: int | None) -> str:
    """The whole config. As root, mail belongs to `nobody` (Dovecot refuses root and dovecot); as
    anyone else, every Dovecot process runs as that user, unchrooted."""
    root_run = os.geteuid() == 0
    mail_user = "nobody" if root_run else pwd.getpwuid(os.geteuid()).pw_name
    mail_group = grp.getgrgid(pwd.getpwnam(mail_user).pw_gid).gr_name
    chroot = "" if root_run else "  chroot =\n"
    extra = ""
    if not root_run:
        extra = f"default_internal_user = {mail_user}\ndefault_internal_group = {mail_group}\n"
        extra += f"default_login_user = {mail_user}\n"
    ssl = f"ssl = yes\nssl_cert = <{root}/cert.pem\nssl_key = <{root}/key.pem" if tls_port else "ssl = no"
    return f"""\
instance_name = test-{port}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:~/Maildir
mail_fsync = never
{extra}namespace inbox {{
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
{chroot}  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
{chroot}  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port or 0}
  }}
}}
"""


class Dovecot:
    """One running Dovecot: `host`, `port`, and the users it was started with."""

    host = "127.0.0.1"

    def __init__(self, root: Path, port: int, users: dict[str, str], tls_port: int | None = None) -> None:
        self.root = root
        self.port = port
        self.tls_port = tls_port
        self.users = dict(users)
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, users: dict[str, str], tls: tuple[Path, Path] | None = None) -> Dovecot:
        """Write the config and passwd file, start the server, and return once it greets.

        With `tls` (a certificate and its key, PEM) the server also offers STARTTLS on `port`
        and implicit TLS on `tls_port`.
        """
        if dovecot_binary() is None:
            raise RuntimeError(NOT_INSTALLED)
        root = Path(tempfile.mkdtemp(prefix="cadence-dovecot-", dir="/tmp"))
        os.chmod(root, 0o755)
        port, tls_port = _free_ports(2)
        server = cls(root, port, users, tls_port if tls else None)
        try:
            if tls:
                shutil.copy(tls[0], root / "cert.pem")
                shutil.copy(tls[1], root / "key.pem")
            (root / "passwd").write_text("".join(f"{user}:{{PLAIN}}{pw}\n" for user, pw in users.items()))
            mail = root / "mail"
            mail.mkdir()
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody")
                os.chown(mail, nobody.pw_uid, nobody.pw_gid)
            (root / "dovecot.conf").write_text(_config(root, server.port, server.tls_port))
            server.restart()
        except BaseException:
            server.stop()
            raise
        return server

    def restart(self) -> None:
        """Start the server (again, after `stop_server`) on the same port, with the same mail."""
        if self._process is not None:
            return
        # The old master may linger a moment as an unreaped zombie (init reaps it, not us), which
        # Dovecot would take for a live server: its group is dead, so forget its pid file.
        (self.root / "run" / "master.pid").unlink(missing_ok=True)
        with open(self.root / "stderr.log", "ab") as stderr:
            self._process = subprocess.Popen(
                ["sh", "-c", _SUPERVISOR, dovecot_binary() or "dovecot", str(self.root / "dovecot.conf")],
                stdin=subprocess.PIPE,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,  # `setsid`: the shell's pid is the group `stop_server` ends
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
        """Stop the server (the whole process group) but keep its mail, so `restart` can bring it back.

        SIGTERM to the group ends it in a few ms, except when a child has just exited and
        is not yet reaped: then the master sleeps a whole second before it quits. So once
        the port closes (0.2 s at most) the group gets SIGKILL: a test server has nothing to save.
        """
        process, self._process = self._process, None
        if process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline and self._listening():
            time.sleep(0.005)
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        assert process.stdin is not None
        process.stdin.close()
        process.wait()
        deadline = time.monotonic() + 5  # the port is free once no process of the group holds it
        while time.monotonic() < deadline and self._listening():
            time.sleep(0.01)

    def _listening(self) -> bool:
        try:
            socket.create_connection((self.host, self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

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
