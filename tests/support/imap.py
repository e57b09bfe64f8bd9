"""A real Dovecot IMAP server for the tests: unprivileged, in a temporary folder, on a free port."""

from __future__ import annotations

import getpass
import grp
import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "imap-secret-for-tests"


@dataclass
class Dovecot:
    port: int  # implicit TLS (IMAPS)
    ca_file: Path

    def client(self) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        client = imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=context, timeout=10)
        client.login(USER, PASSWORD)
        return client

    def deliver(self, folder: str, *messages: bytes) -> None:
        """Put messages in a folder, unread, as the mail server would."""
        client = self.client()
        try:
            client.create(f'"{folder}"')
            for message in messages:
                kind, _ = client.append(f'"{folder}"', "", None, message)
                assert kind == "OK"
        finally:
            client.logout()

    def unseen(self, folder: str) -> int:
        client = self.client()
        try:
            client.select(f'"{folder}"')
            _, found = client.search(None, "UNSEEN")
            return len((found[0] or b"").split())
        finally:
            client.logout()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _account() -> tuple[str, str, int, int]:
    """Dovecot's login processes refuse to run as root: as root, run it all as nobody."""
    if os.geteuid() != 0:
        return getpass.getuser(), grp.getgrgid(os.getegid()).gr_name, os.geteuid(), os.getegid()
    nobody = pwd.getpwnam("nobody")
    return "nobody", grp.getgrgid(nobody.pw_gid).gr_name, nobody.pw_uid, nobody.pw_gid


@contextmanager
def dovecot_server() -> Iterator[Dovecot]:
    if not Path(DOVECOT).exists():
        if os.environ.get("CI"):
            pytest.fail("dovecot is not installed: .ci/run installs dovecot-imapd")
        pytest.skip("dovecot is not installed (apt-get install dovecot-imapd)")
    user, group, uid, gid = _account()
    root = Path(tempfile.mkdtemp(prefix="reminder-dovecot-"))
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    certificate.private_key_pem.write_to_path(str(root / "key.pem"))
    certificate.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    port = _free_port()
    (root / "dovecot.conf").write_text(
        f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
auth_mechanisms = plain login
# A wrong password is a test case here: no 2 s failure delay, no per-address penalty.
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
default_login_user = {user}
default_internal_user = {user}
default_internal_group = {group}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
  }}
}}
service anvil {{
  chroot =
}}
"""
    )
    for path in [root, *root.rglob("*")]:
        os.chown(path, uid, gid)
    command = [DOVECOT, "-F", "-c", str(root / "dovecot.conf")]
    if os.geteuid() == 0:
        command = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *command]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    server = Dovecot(port, root / "ca.pem")
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                server.client().logout()
                break
            except (OSError, imaplib.IMAP4.error):
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (
                        (root / "dovecot.log").read_text()
                        if (root / "dovecot.log").exists()
                        else ""
                    )
                    output = process.stdout.read().decode() if process.stdout else ""
                    pytest.fail(f"dovecot did not start:\n{output}\n{log}")
                time.sleep(0.05)  # polling a condition, not waiting for a wall-clock instant
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
        shutil.rmtree(root, ignore_errors=True)
