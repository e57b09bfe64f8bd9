"""The staff page's login against guessing: failed logins counted per client and in
total, each new try from a failing client held a little longer, then refused for a while.

An attempt counts as failed from the moment it is admitted until its password proves
right, so a hundred guesses sent at once are held like a hundred sent one by one. Each
burst of failures from a client is logged once, at WARNING, with the client's address
and never what it tried; the metrics count every one. The client is the connection's
peer, or what a trusted reverse proxy says it is (http.trusted_proxies).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from .metrics import Metrics

log = logging.getLogger("reminder")

FAILURES_PER_CLIENT = 10  # then the client waits out WINDOW, refused (429)
FAILURES_IN_TOTAL = 100  # from all clients within WINDOW: then every client waits
WINDOW = 15 * 60.0  # seconds: a burst ends after this long without a failure
STEP = 0.25  # seconds more of holding for each failure of the client's burst so far
MOST = 2.0  # seconds of holding at most


def same_secret(given: str, expected: str) -> bool:
    """Compared in constant time, their lengths included: digests of both."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


@dataclass
class _Burst:
    """One client's failures since its last success or its last quiet WINDOW."""

    failures: int = 0  # failed attempts, and those admitted but not settled yet
    last: float = 0.0  # when the last of them was admitted
    refused_until: float = 0.0
    logged: bool = False


class LoginGuard:
    """Decides whether a login attempt is checked (after how long) or refused."""

    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.clock = clock
        self._bursts: dict[str, _Burst] = {}
        self._failed: deque[float] = deque()  # when each failure in WINDOW happened
        self._pending = 0  # attempts admitted, not settled yet
        self._all_refused_until = 0.0

    @property
    def held(self) -> int:
        """Attempts admitted and not settled yet: waiting out their hold."""
        return self._pending

    def admit(self, client: str) -> float | None:
        """Seconds to hold this attempt before checking it, or None to refuse it (429)."""
        now = self.clock()
        self._forget(now)
        burst = self._bursts.get(client)
        if now < self._all_refused_until or (burst and now < burst.refused_until):
            self.metrics.logins_refused.inc()
            return None
        if len(self._failed) + self._pending >= FAILURES_IN_TOTAL:
            self._all_refused_until = now + WINDOW
            log.warning(
                "%d failed staff logins within %d minutes, from %d address(es): every staff "
                "login is refused for %d minutes (reminder_staff_logins_refused_total)",
                len(self._failed) + self._pending,
                WINDOW // 60,
                len(self._bursts),
                WINDOW // 60,
            )
            self.metrics.logins_refused.inc()
            return None
        burst = self._bursts.setdefault(client, _Burst())
        if burst.failures >= FAILURES_PER_CLIENT:
            burst.refused_until = now + WINDOW
            self.metrics.logins_refused.inc()
            return None
        hold = min(STEP * burst.failures, MOST)
        burst.failures += 1
        burst.last = now
        self._pending += 1
        return hold

    def settle(self, client: str, ok: bool) -> None:
        """The attempt `admit` let through was right, or not."""
        self._pending -= 1
        burst = self._bursts.get(client)
        if ok:
            self._bursts.pop(client, None)  # a client that knows the password starts afresh
            return
        self.metrics.login_failures.inc()
        self._failed.append(self.clock())
        if burst is not None and not burst.logged:
            burst.logged = True
            log.warning(
                "failed staff login from %s; more failures from it are held, then refused, "
                "and counted in reminder_staff_login_failures_total without another line "
                "until it stops for %d minutes",
                client,
                WINDOW // 60,
            )

    async def attempt(self, client: str, check: Callable[[], bool]) -> bool | None:
        """Hold the attempt, then `check` it: True or False, or None when it is refused.

        It is settled however the wait ends: one cancelled while held (the service
        stopping) counts as failed, and never stays admitted forever, where a hundred
        would have refused every staff login until a restart.
        """
        hold = self.admit(client)
        if hold is None:
            return None
        ok = False
        try:
            if hold:
                await asyncio.sleep(hold)
            ok = check()
        finally:
            self.settle(client, ok)
        return ok

    def retry_after(self, client: str) -> int:
        """Whole seconds until a refused client may try again."""
        burst = self._bursts.get(client)
        until = max(self._all_refused_until, burst.refused_until if burst else 0.0)
        return max(1, round(until - self.clock()))

    def _forget(self, now: float) -> None:
        """Drop what WINDOW has passed: bursts that ended, failures too old to count."""
        while self._failed and now - self._failed[0] > WINDOW:
            self._failed.popleft()
        ended = [
            client
            for client, burst in self._bursts.items()
            if now - burst.last > WINDOW and now >= burst.refused_until
        ]
        for client in ended:
            del self._bursts[client]


def client_address(request: web.Request, trusted_proxies: Sequence[str]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted reverse proxy,
    the address the proxy appended to X-Forwarded-For (the nearest hop it did not add
    itself: whatever the client wrote further left proves nothing)."""
    peer = request.remote or ""
    networks = [ipaddress.ip_network(network) for network in trusted_proxies]
    if not _within(peer, networks):
        return peer
    hops = ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")
    for hop in reversed([h.strip() for h in hops if h.strip()]):
        if not _within(hop, networks):
            return hop if _ip(hop) else peer
    return peer


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _within(
    address: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    found = _ip(address)
    return found is not None and any(found in network for network in networks)
