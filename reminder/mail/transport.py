"""Delivery of composed messages: SMTP with a connection pool, rate limit and retries."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import ssl
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fractions import Fraction
from typing import Any, Protocol, cast

import aiosmtplib

from ..core.clock import Clock, utc_now
from ..core.errors import TransportConfigError
from ..inputs.config import Smtp
from .ratelimit import Budget, RateLimit
from .wire import wired

MAX_BACKOFF = 120.0


class Verdict(StrEnum):
    SENT = "sent"
    FAILED = "failed"  # permanent for this recipient: do not try again
    RETRY = "retry"  # transient: try again later, with the same Message-ID


@dataclass(frozen=True)
class Envelope:
    """One message for one recipient; `token` is the caller's, handed back in the Result."""

    token: Any
    sender: str
    recipient: str
    message_id: str
    data: bytes
    not_after: datetime | None = None
    # `data` is already as it goes after DATA (`wire.wired`): prepared where it was
    # composed, off the sending process.
    wired: bool = False


@dataclass(frozen=True)
class Result:
    envelope: Envelope
    verdict: Verdict
    reply: str


Report = Callable[[Result], None]


async def each(envelopes: Iterable[Envelope]) -> AsyncIterator[Envelope]:
    """Envelopes already in hand, as the async iterator a transport takes."""
    for envelope in envelopes:
        yield envelope


class Transport(Protocol):
    """What the worker needs of a way to send mail."""

    description: str
    takes_wired: bool  # envelopes may come `wired`: this transport only sends them

    async def deliver(
        self,
        envelopes: AsyncIterator[Envelope],
        report: Report,
        stopping: asyncio.Event | None = None,
    ) -> None:
        """Send every envelope, calling `report` once per envelope with its final verdict.

        Raises TransportConfigError, leaving the rest unreported, when retrying cannot
        help (bad login, TLS failure, refused sender). When `stopping` is set, no new
        message is started; those already in a transaction finish.
        """

    async def close(self) -> None: ...


class SmtpTransport:
    """A pool of aiosmtplib connections, each sending many messages in turn."""

    takes_wired = True

    def __init__(self, settings: Smtp, *, clock: Clock = utc_now) -> None:
        self.settings = settings
        self.clock = clock  # judges whether a retry would still arrive before `not_after`
        limits: list[tuple[int, float]] = []
        if settings.max_per_minute:
            limits.append((settings.max_per_minute, 60.0))
        if settings.max_per_second:
            # 2.5 a second is 5 every 2 seconds: a whole count over a window.
            rate = Fraction(settings.max_per_second).limit_denominator(100)
            limits.append((rate.numerator, float(rate.denominator)))
        # Elapsed time, on the monotonic clock: a rate is not a date.
        self.rate: Budget = RateLimit(limits)
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
        report: Report,
        stopping: asyncio.Event | None = None,
    ) -> None:
        pending = _Pending(envelopes, stopping or asyncio.Event())
        workers = [
            asyncio.create_task(self._work(pending, report))
            for _ in range(self.settings.connections)
        ]
        # A fatal error in one connection halts the others between messages rather than
        # cancelling them mid-transaction: nothing is left half-sent or half-open.
        try:
            outcomes = await asyncio.gather(*workers, return_exceptions=True)
        finally:
            await pending.close()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _work(self, pending: _Pending, report: Report) -> None:
        client = self._client()
        self._clients.append(client)
        while (item := await pending.next()) is not None:
            envelope, attempt = item
            try:
                verdict, reply = await self._attempt(client, envelope)
            except BaseException:
                pending.halt()
                raise
            if verdict is not Verdict.SENT:
                self.failed_attempts += 1
            if verdict is Verdict.RETRY and attempt < self.settings.attempts:
                delay = _backoff(self.settings.retry_base, attempt)
                if envelope.not_after is None or (
                    self.clock().timestamp() + delay < envelope.not_after.timestamp()
                ):
                    pending.retry_later(envelope, attempt + 1, delay)
                    continue
            pending.done()
            try:
                # The caller makes the outcome durable here, before this connection
                # starts its next transaction.
                report(Result(envelope, verdict, reply))
            except BaseException:
                pending.halt()  # an outcome that cannot be recorded stops every connection
                raise

    async def _attempt(self, client: aiosmtplib.SMTP, envelope: Envelope) -> tuple[Verdict, str]:
        # Without a limit, no bookkeeping at all: this runs for every message.
        send = await self.rate.acquire() if self.rate.limits else None
        try:
            if not client.is_connected:
                await client.connect(timeout=self.settings.timeout)
            async with asyncio.timeout(self.settings.timeout):
                return Verdict.SENT, await _transaction(client, envelope)
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
                    f"{exc.message}); set smtp.sender to an address this account may send as",
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


class _Pending:
    """Envelopes still to attempt: fresh ones from the iterator, and retries once due.

    A connection with nothing to take waits on `_changed`, set when a retry comes due, a
    message is settled or sending halts, or on `stopping`: no timer polls.
    """

    def __init__(self, fresh: AsyncIterator[Envelope], stopping: asyncio.Event) -> None:
        self.fresh: AsyncIterator[Envelope] | None = fresh
        self._taking = asyncio.Lock()  # an async generator serves one caller at a time
        self.stopping = stopping
        self.retries: deque[tuple[Envelope, int]] = deque()
        self.open = 0  # taken and not yet reported: in a transaction or waiting to retry
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


async def _transaction(client: aiosmtplib.SMTP, envelope: Envelope) -> str:
    """MAIL, RCPT, DATA and the message for one recipient; the server's reply to the message.

    aiosmtplib has opened the connection (EHLO, STARTTLS, AUTH); the transaction itself
    is written here, in two writes when the server offers PIPELINING (RFC 2920: MAIL,
    RCPT and DATA together, then the message) and command by command otherwise. Its
    replies raise the aiosmtplib exceptions that `_attempt` classifies.
    """
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            if not client.is_connected:
                raise
            await client.helo()
    transport = client.transport
    if transport is None or transport.is_closing():
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    message = envelope.data if envelope.wired else wired(envelope.data)
    # RFC 1870: the message's size; of a wired one, without the final dot (its doubled
    # dots counted: a few bytes high, where counting them would cost a pass over it).
    length = len(message) - 3 if envelope.wired else len(envelope.data)
    size = f" SIZE={length}".encode() if client.supports_extension("size") else b""
    try:
        sender = _address(envelope.sender)
    except ValueError as exc:
        raise TransportConfigError(f"{exc}; check smtp.sender", reply=str(exc)) from None
    mail = b"MAIL FROM:<" + sender + b">" + size + b"\r\n"
    rcpt = b"RCPT TO:<" + _address(envelope.recipient) + b">\r\n"
    pipelining = client.supports_extension("pipelining")
    previous = transport.get_protocol()
    replies = _Replies(previous)
    transport.set_protocol(replies)
    try:
        return await _exchange(
            cast(asyncio.WriteTransport, transport),
            replies,
            envelope,
            mail,
            rcpt,
            message,
            pipelining=pipelining,
        )
    finally:
        # aiosmtplib's protocol takes the connection back between transactions (QUIT,
        # a new EHLO after a reconnection); a loss already seen was passed on to it.
        transport.set_protocol(previous)


async def _exchange(
    transport: asyncio.WriteTransport,
    replies: _Replies,
    envelope: Envelope,
    mail: bytes,
    rcpt: bytes,
    message: bytes,
    *,
    pipelining: bool,
) -> str:
    try:
        if pipelining:
            transport.write(mail + rcpt + b"DATA\r\n")
            # RFC 2920: every reply is read, in order, whatever the earlier ones said;
            # a 421 ends the session at once (the server closes the connection).
            mail_reply = _closing(await replies.reply())
            rcpt_reply = _closing(await replies.reply())
            data_reply = _closing(await replies.reply())
            if data_reply[0] == 354 and (mail_reply[0] != 250 or rcpt_reply[0] not in (250, 251)):
                # A server that accepts DATA without a recipient gets an empty message,
                # never ours (RFC 2920 section 3.1).
                transport.write(b".\r\n")
                _closing(await replies.reply())
        else:
            transport.write(mail)
            mail_reply = _closing(await replies.reply())
            rcpt_reply = data_reply = (0, "")
            if mail_reply[0] == 250:
                transport.write(rcpt)
                rcpt_reply = _closing(await replies.reply())
                if rcpt_reply[0] in (250, 251):
                    transport.write(b"DATA\r\n")
                    data_reply = _closing(await replies.reply())
        if mail_reply[0] != 250:
            raise aiosmtplib.SMTPSenderRefused(*mail_reply, envelope.sender)
        if rcpt_reply[0] not in (250, 251):
            raise aiosmtplib.SMTPRecipientRefused(*rcpt_reply, envelope.recipient)
        if data_reply[0] != 354:
            raise aiosmtplib.SMTPDataError(*data_reply)
        transport.write(message)
        code, text = _closing(await replies.reply())
        if code != 250:
            raise aiosmtplib.SMTPDataError(code, text)
        return f"{code} {text}"
    except aiosmtplib.SMTPResponseException as exc:
        if exc.code > 0 and exc.code != 421 and not transport.is_closing():
            # Leave the connection ready for the next message.
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                transport.write(b"RSET\r\n")
                await replies.reply()
        raise


def _closing(reply: tuple[int, str]) -> tuple[int, str]:
    """A reply, unless it is 421: the server is closing the channel (RFC 5321 3.8)."""
    if reply[0] == 421:
        raise aiosmtplib.SMTPResponseException(*reply)
    return reply


_UNSAFE_IN_ADDRESS = re.compile(r"[^\x21-\x7e]|[<>]")


def _address(address: str) -> bytes:
    """An address as it goes between < and >: refused (ValueError) if it could end the
    command or smuggle another one (CR, LF, any control or space, angle brackets), and
    if it is not ASCII (we do not ask for SMTPUTF8)."""
    if found := _UNSAFE_IN_ADDRESS.search(address):
        raise ValueError(f"{address!r} contains {found.group()!r}, not allowed in an SMTP address")
    return address.encode("ascii")


class _Replies(asyncio.Protocol):
    """The connection's incoming bytes for one transaction, as SMTP replies in order.

    aiosmtplib 5.1 reads one reply per command written (its `read_response` says so, and
    it parses one reply per chunk received), so the replies to pipelined commands, which
    arrive together, would be lost there. For the length of a transaction the transport's
    bytes come here instead (asyncio's `set_protocol`), and go back to aiosmtplib's
    protocol after, with the connection between two commands as it was left.
    """

    def __init__(self, previous: asyncio.BaseProtocol) -> None:
        self.previous = previous
        self.buffer = bytearray()
        self.lines: list[str] = []
        self.replies: deque[tuple[int, str]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.error: Exception | None = None

    def data_received(self, data: bytes) -> None:
        if self.error is not None:
            return  # after a malformed reply, nothing more pairs with our commands
        self.buffer += data
        while (end := self.buffer.find(b"\n")) != -1:
            line = bytes(self.buffer[: end + 1])
            del self.buffer[: end + 1]
            if not line[:3].isdigit() or len(line) > _MAX_REPLY_LINE:
                text = line[:80].decode("ascii", "replace").strip()
                self._fail(aiosmtplib.SMTPResponseException(-1, f"malformed reply: {text}"))
                return
            self.lines.append(line[4:].strip().decode("utf-8", "replace"))
            if line[3:4] != b"-":
                self.replies.append((int(line[:3]), "\n".join(self.lines)))
                self.lines.clear()
                self._wake()
        if len(self.buffer) > _MAX_REPLY_LINE:
            self._fail(aiosmtplib.SMTPResponseException(-1, "malformed reply: too long"))

    def eof_received(self) -> bool:
        self._fail(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(aiosmtplib.SMTPServerDisconnected("Connection lost"))
        self.previous.connection_lost(exc)  # aiosmtplib's side learns it as ever

    def pause_writing(self) -> None:
        self.previous.pause_writing()

    def resume_writing(self) -> None:
        self.previous.resume_writing()

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def reply(self) -> tuple[int, str]:
        while not self.replies:
            if self.error is not None:
                raise self.error
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.replies.popleft()


_MAX_REPLY_LINE = 8192


def _by_code(code: int) -> Verdict:
    # RFC 5321 4.2.1: 4yz is a transient negative completion, 5yz a permanent one.
    return Verdict.RETRY if code < 500 else Verdict.FAILED


def _backoff(base: float, attempt: int) -> float:
    """Exponential with full jitter, so a pool of retries does not come back in step."""
    return min(MAX_BACKOFF, base * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.5)  # noqa: S311
