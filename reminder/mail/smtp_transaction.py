"""One SMTP transaction on an open connection: MAIL, RCPT, DATA and the message, pipelined
(RFC 2920) when the server offers it, with its replies read in order."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from typing import cast

import aiosmtplib

from ..core.errors import ReminderError, TransportConfigError
from .transport import Envelope
from .wire import wired


class Abandoned(ReminderError):  # noqa: N818 - reads as a sentence where raised
    """The envelope's sender may no longer send it (`Envelope.may_send`): nothing of the
    message went out. `in_data`: after DATA's 354, where only closing takes it back."""

    def __init__(self, in_data: bool) -> None:
        super().__init__(
            "abandoned before the message was sent: this worker's lease lapsed, another "
            "worker may hold the claim"
        )
        self.in_data = in_data


def _still(envelope: Envelope, in_data: bool) -> None:
    if envelope.may_send is not None and not envelope.may_send():
        raise Abandoned(in_data)


async def transaction(client: aiosmtplib.SMTP, envelope: Envelope) -> str:
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
        raise TransportConfigError(f"{exc}; check sender.address", reply=str(exc)) from None
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
    _still(envelope, in_data=False)
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
        # The last moment to take the message back: a worker frozen (SIGSTOP, a suspended
        # VM) since MAIL may have lost its lease, and its claim to another worker.
        _still(envelope, in_data=True)
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
