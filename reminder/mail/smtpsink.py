"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives: for demos and tests."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes
    at: float  # time.time() when the server accepted it
    mail_options: tuple[str, ...] = ()  # MAIL FROM's parameters: SIZE=…

    @classmethod
    def of(cls, envelope: Any) -> Received:
        """What an aiosmtpd envelope holds, as the bytes the client sent."""
        return cls(
            envelope.mail_from,
            list(envelope.rcpt_tos),
            bytes(envelope.original_content or envelope.content),
            time.time(),
            tuple(envelope.mail_options),
        )


@dataclass
class Recorder:
    """An aiosmtpd handler: stores every accepted message, in memory and optionally on disk."""

    folder: Path | None = None
    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = Received.of(envelope)
        with self.lock:
            self.messages.append(message)
            number = len(self.messages)
        if self.folder is not None:
            (self.folder / f"{number:06d}.eml").write_bytes(message.data)
        return "250 2.0.0 Ok: queued"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SmtpSink:
    """Runs aiosmtpd in its own thread for the life of a `with` block."""

    def __init__(self, folder: Path | None = None, handler: Any = None, **options: Any) -> None:
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        self.handler = handler or Recorder(folder)
        self.port = free_port()
        # server_hostname avoids a slow getfqdn() at every start.
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="localhost",
            **options,
        )

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.controller.stop()
