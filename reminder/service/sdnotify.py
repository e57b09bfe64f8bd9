"""systemd's notify protocol (sd_notify(3)): one datagram of KEY=VALUE lines to $NOTIFY_SOCKET."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("reminder")


class Notifier:
    """Tells systemd READY, STATUS, WATCHDOG and STOPPING; does nothing outside systemd.

    The protocol is small enough to speak directly: a datagram to the unix socket named
    by NOTIFY_SOCKET, a leading "@" meaning Linux's abstract namespace.
    """

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        path = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path
        self.watchdog_seconds: float | None = None
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        # WATCHDOG_PID, when set, names the one process the watchdog is meant for.
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_seconds = int(usec) / 1_000_000
        self._failed = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    @property
    def ping_interval(self) -> float | None:
        """How often to send WATCHDOG=1: half the timeout, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_seconds / 2 if self.watchdog_seconds else None

    def notify(self, **fields: str) -> bool:
        """Send one datagram (READY="1", STATUS="…"); True if systemd got it."""
        if not self.address:
            return False
        lines = [f"{key.upper()}={' '.join(value.splitlines())}" for key, value in fields.items()]
        payload = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never waits: a listener that does not read (its queue full) would
                # otherwise hold the event loop in sendto (invariant 13).
                sock.sendto(payload, socket.MSG_DONTWAIT, self.address)
        except OSError as exc:
            if not self._failed:  # say it once, not at every watchdog ping
                log.warning("cannot notify systemd at %s: %s", self.address.lstrip("\0"), exc)
                self._failed = True
            return False
        self._failed = False
        return True
