"""SMTP: a pool of aiosmtplib connections, each sending many messages in turn, with
the rate limit, retries and the verdict on each reply."""

from __future__ import annotations

import asyncio
import random
import ssl
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from fractions import Fraction

import aiosmtplib

from ..core.clock import Clock, utc_now
from ..core.errors import TransportConfigError
from ..inputs.config import Smtp
from .ratelimit import Budget, BudgetMaker, RateLimit, own_budget
from .smtp_transaction import Abandoned, transaction
from .transport import Capabilities, Envelope, OnResult, Result, Verdict

MAX_BACKOFF = 120.0


class SmtpTransport:
    """A pool of aiosmtplib connections, each sending many messages in turn."""

    def __init__(
        self, settings: Smtp, *, clock: Clock = utc_now, budget: BudgetMaker = own_budget
    ) -> None:
        self.settings = settings
        self.clock = clock  # judges whether a retry would still arrive before `not_after`
        limits: list[tuple[int, float]] = []
        if settings.max_per_minute:
            limits.append((settings.max_per_minute, 60.0))
        if settings.max_per_second:
            # 2.5 a second is 5 every 2 seconds: a whole count over a window.
            rate = Fraction(settings.max_per_second).limit_denominator(100)
            limits.append((rate.numerator, float(rate.denominator)))
        # Elapsed time, on the monotonic clock: a rate is not a date. A send holds its
        # place in a shared budget for at most one transaction's deadline.
        self.rate: Budget = budget(limits, settings.timeout) if limits else RateLimit([])
        self.capabilities = Capabilities(
            wired=True,
            pipelining=True,
            rate_limits=tuple(limits),
            in_flight=settings.connections,
        )
        self._clients: list[aiosmtplib.SMTP] = []
        self.failed_attempts = 0  # transient failures so far, for logs and tests
        security = {"starttls": "STARTTLS", "tls": "TLS", "none": "no encryption"}
        self.description = (
            f"SMTP {settings.host}:{settings.effective_port} ({security[settings.security]}"
            f"{', as ' + settings.username if settings.username else ''}, "
            f"{settings.connections} connection{'s' if settings.connections > 1 else ''}"
            f"{', ' + self._rate_text() if limits else ''})"
        )

    def _rate_text(self) -> str:
        parts = []
        if self.settings.max_per_minute:
            parts.append(f"{self.settings.max_per_minute}/min")
        if self.settings.max_per_second:
            parts.append(f"{self.settings.max_per_second:g}/s")
        return "at most " + " and ".join(parts)

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        context = None
        if s.security != "none":
            context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
        return aiosmtplib.SMTP(
            hostname=s.host,
            port=s.effective_port,
            # One deadline per transaction (below) instead of aiosmtplib's per command:
            # the same bound, without a timer and a task for every SMTP line.
            timeout=None,
            use_tls=s.security == "tls",
            # True, never None: None would skip the upgrade when a man in the middle
            # strips STARTTLS from the server's reply.
            start_tls=s.security == "starttls",
            tls_context=context,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            local_hostname="localhost" if s.host_is_loopback else None,
        )

    async def deliver(
        self,
        envelopes: AsyncIterator[Envelope],
        on_result: OnResult,
        stopping: asyncio.Event | None = None,
    ) -> None:
        queue = _Queue(envelopes, stopping or asyncio.Event())
        workers = [
            asyncio.create_task(self._work(queue, on_result))
            for _ in range(self.settings.connections)
        ]
        # A fatal error in one connection halts the others between messages rather than
        # cancelling them mid-transaction: nothing is left half-sent or half-open.
        try:
            outcomes = await asyncio.gather(*workers, return_exceptions=True)
        finally:
            await queue.close()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _work(self, queue: _Queue, on_result: OnResult) -> None:
        client = self._client()
        self._clients.append(client)
        while (item := await queue.next()) is not None:
            envelope, attempt = item
            try:
                verdict, reply = await self._attempt(client, envelope)
            except BaseException:
                queue.halt()
                raise
            if verdict in (Verdict.FAILED, Verdict.RETRY):
                self.failed_attempts += 1
            if verdict is Verdict.RETRY and attempt < self.settings.attempts:
                delay = _backoff(self.settings.retry_base, attempt)
                if envelope.not_after is None or (
                    self.clock().timestamp() + delay < envelope.not_after.timestamp()
                ):
                    queue.retry_later(envelope, attempt + 1, delay)
                    continue
            queue.done()
            try:
                # The caller makes the outcome durable here, before this connection
                # starts its next transaction.
                recorded = on_result(Result(envelope, verdict, reply, attempt))
                if recorded is not None:
                    await recorded
            except BaseException:
                queue.halt()  # an outcome that cannot be recorded stops every connection
                raise

    async def _attempt(self, client: aiosmtplib.SMTP, envelope: Envelope) -> tuple[Verdict, str]:
        # Without a limit, no bookkeeping at all: this runs for every message.
        send = await self.rate.acquire() if self.rate.limits else None
        try:
            if not client.is_connected:
                await client.connect(timeout=self.settings.timeout)
            async with asyncio.timeout(self.settings.timeout):
                return Verdict.SENT, await transaction(client, envelope)
        except Abandoned as exc:
            if exc.in_data:
                # After DATA's 354 only the message can follow: closing the connection
                # without the final dot is how a client takes it back (RFC 5321 4.1.1.4).
                client.close()
            return Verdict.ABANDONED, str(exc)
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            raise TransportConfigError(
                f"the SMTP server refused the login of {self.settings.username!r} "
                f"({exc.code} {exc.message}); check smtp.username and the password in "
                "REMINDER_SMTP__PASSWORD or REMINDER_SMTP__PASSWORD_FILE",
                reply=f"{exc.code} {exc.message}",
            ) from None
        except aiosmtplib.SMTPSenderRefused as exc:
            if exc.code >= 500:
                raise TransportConfigError(
                    f"the SMTP server refuses the sender {envelope.sender} ({exc.code} "
                    f"{exc.message}); set sender.address to an address this account may send as",
                    reply=f"{exc.code} {exc.message}",
                ) from None
            return Verdict.RETRY, f"{exc.code} {exc.message}"
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421 or exc.code < 0:
                # The server is closing the channel, or its replies cannot be trusted
                # to pair with our commands: reconnect next time.
                client.close()
            return _by_code(exc.code), f"{exc.code} {exc.message}"
        except (
            aiosmtplib.SMTPTimeoutError,
            aiosmtplib.SMTPServerDisconnected,
            aiosmtplib.SMTPConnectError,
            OSError,
        ) as exc:
            client.close()
            self._refuse_tls_failure(exc)
            # After DATA a timeout is ambiguous: the server may have the message. The
            # retry carries the same Message-ID, so receivers can drop a duplicate.
            if isinstance(exc, TimeoutError) and not str(exc):
                return Verdict.RETRY, f"no reply within {self.settings.timeout:g} s"
            return Verdict.RETRY, f"{type(exc).__name__}: {exc}"
        except ValueError as exc:
            # A recipient address that could end the command or smuggle another (_address).
            return Verdict.FAILED, f"address refused before sending: {exc}"
        except aiosmtplib.SMTPException as exc:
            client.close()
            raise TransportConfigError(
                f"SMTP with {self.settings.host}: {exc}; check smtp.security "
                f"({self.settings.security}) and smtp.port",
                reply=str(exc),
            ) from None
        finally:
            if send is not None:
                await self.rate.release(send)

    def _refuse_tls_failure(self, exc: BaseException) -> None:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ssl.SSLCertVerificationError | ssl.SSLError):
                raise TransportConfigError(
                    f"TLS with {self.settings.host} failed ({cause}); check smtp.security "
                    f"({self.settings.security}), smtp.port, and smtp.ca_file if the server's "
                    "certificate comes from a private authority",
                    reply=str(cause),
                ) from None
            cause = cause.__cause__ or cause.__context__
        if "SSL" in str(exc) or "certificate" in str(exc).lower():
            raise TransportConfigError(
                f"TLS with {self.settings.host} failed ({exc}); check smtp.security, smtp.port "
                "and smtp.ca_file",
                reply=str(exc),
            ) from None

    async def close(self) -> None:
        """QUIT politely where a connection is up; drop whatever a failed attempt left."""
        for client in self._clients:
            if client.is_connected:
                try:
                    await asyncio.wait_for(client.quit(), timeout=5)
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()
            else:
                client.close()
        if self._clients:
            # A TLS connection closed after a failure shuts down asynchronously (its
            # close_notify); give it a moment before the caller's event loop may end.
            await asyncio.sleep(0.05)
        self._clients.clear()


class _Queue:
    """Envelopes still to attempt: fresh ones from the iterator, and retries once due.

    A connection with nothing to take waits on `_changed`, set when a retry comes due, a
    message is settled or sending halts, or on `stopping`: no timer polls.
    """

    def __init__(self, fresh: AsyncIterator[Envelope], stopping: asyncio.Event) -> None:
        self.fresh: AsyncIterator[Envelope] | None = fresh
        self._taking = asyncio.Lock()  # an async generator serves one caller at a time
        self.stopping = stopping
        self.retries: deque[tuple[Envelope, int]] = deque()
        self.open = 0  # taken and without a result yet: in a transaction or waiting to retry
        self.halted = False
        self._changed = asyncio.Event()
        self._timers: set[asyncio.TimerHandle] = set()

    def halt(self) -> None:
        self.halted = True
        self._changed.set()

    def _closed(self) -> bool:
        return self.halted or self.stopping.is_set()

    async def next(self) -> tuple[Envelope, int] | None:
        while not self._closed():
            if self.retries:
                return self.retries.popleft()
            if self.fresh is not None:
                async with self._taking:
                    envelope = await anext(self.fresh, None) if self.fresh else None
                if envelope is not None:
                    self.open += 1
                    return envelope, 1
                self.fresh = None
                continue  # a retry may have come due while the iterator was read
            if self.open == 0:
                return None
            # Others still hold messages that may come back as retries.
            self._changed.clear()
            await self._change()
        return None

    async def _change(self) -> None:
        changed = asyncio.ensure_future(self._changed.wait())
        stopped = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({changed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
            stopped.cancel()

    async def close(self) -> None:
        """Stop the producer (and any helper processes composing for it), and the timers
        of retries nobody will take."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if isinstance(self.fresh, AsyncGenerator):
            await self.fresh.aclose()

    def retry_later(self, envelope: Envelope, attempt: int, delay: float) -> None:
        def due() -> None:
            self._timers.discard(timer)
            self.retries.append((envelope, attempt))
            self._changed.set()

        timer = asyncio.get_running_loop().call_later(delay, due)
        self._timers.add(timer)

    def done(self) -> None:
        self.open -= 1
        self._changed.set()


def _by_code(code: int) -> Verdict:
    # RFC 5321 4.2.1: 4yz is a transient negative completion, 5yz a permanent one.
    return Verdict.RETRY if code < 500 else Verdict.FAILED


def _backoff(base: float, attempt: int) -> float:
    """Exponential with full jitter, so a pool of retries does not come back in step."""
    return min(MAX_BACKOFF, base * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.5)  # noqa: S311
