"""A real SMTP server that records what it receives and answers what a test tells it to."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword

from reminder.mail.smtpsink import Received, SmtpSink


@dataclass
class FaultyRecorder:
    """An aiosmtpd handler that records, and answers what a test tells it to.

    rcpt_replies: per recipient, replies to give to its next RCPT commands;
    data_replies: replies to give to the next DATA commands, in turn;
    data_delay: seconds to wait before answering each DATA (a slow remote relay).
    """

    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)
    data_delay: float = 0.0
    stall_first_data: float = 0.0
    messages: list[Received] = field(default_factory=list)
    peers: set[object] = field(default_factory=set)  # one per connection
    tls: list[bool] = field(default_factory=list)  # per message: did it come over TLS?
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self,
        server: Any,
        session: Any,
        envelope: Any,
        address: str,
        options: list[str],
    ) -> str:
        with self.lock:
            queued = self.rcpt_replies.get(address)
            if queued:
                return queued.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            reply = self.data_replies.pop(0) if self.data_replies else None
            stall, self.stall_first_data = self.stall_first_data, 0.0
        if reply is not None and not reply.startswith("250"):
            return reply
        received = Received.of(envelope)
        with self.lock:
            self.peers.add(session.peer)
            self.tls.append(session.ssl is not None)
        if stall:
            # The server has the message, then goes silent: the client times out after DATA.
            with self.lock:
                self.messages.append(received)
            await asyncio.sleep(stall)
            return "250 OK"
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        with self.lock:
            self.messages.append(received)
        return "250 2.0.0 Ok: queued"

    def parsed(self) -> list[EmailMessage]:
        with self.lock:
            return [
                message_from_bytes(m.data, policy=policy.default)  # type: ignore[misc]
                for m in self.messages
            ]

    def recipients(self) -> list[str]:
        with self.lock:
            return [r for m in self.messages for r in m.recipients]


@dataclass
class Server:
    sink: SmtpSink
    handler: FaultyRecorder
    ca: trustme.CA | None = None
    ca_file: Path | None = None

    @property
    def port(self) -> int:
        return self.sink.port


def authenticator(user: str, password: str) -> Callable[..., AuthResult]:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == user.encode()
            and (data.password == password.encode())
        )
        return AuthResult(success=ok, handled=False)

    return check
