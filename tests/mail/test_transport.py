"""SMTP delivery against real aiosmtpd servers that misbehave in every known way; the outbox."""

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from reminder.core.errors import TransportConfigError
from reminder.inputs.config import Smtp
from reminder.mail.outbox import Outbox
from reminder.mail.ratelimit import RateLimit
from reminder.mail.smtp import SmtpTransport
from reminder.mail.smtpsink import SmtpSink, free_port
from reminder.mail.transport import Envelope, Result, Verdict, each
from reminder.mail.wire import wired
from tests.support.project import until
from tests.support.smtp import FaultyRecorder, Server

SENDER = "contact@irev.fr"


def envelopes(count: int, prefix: str = "p") -> list[Envelope]:
    return [
        Envelope(
            n,
            SENDER,
            f"{prefix}{n}@example.org",
            f"<m{n}@irev.fr>",
            f"Message-ID: <m{n}@irev.fr>\r\nSubject: n{n}\r\n\r\nbody {n}\r\n".encode(),
        )
        for n in range(count)
    ]


def plain(server: Server, **options: object) -> Smtp:
    settings: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "timeout": 5,
        "retry_base": 0.01,
    }
    settings.update(options)
    return Smtp(**settings)  # type: ignore[arg-type]


async def deliver(settings: Smtp, items: list[Envelope]) -> dict[object, Result]:
    transport = SmtpTransport(settings)
    results: dict[object, Result] = {}
    try:
        await transport.deliver(each(items), lambda r: results.__setitem__(r.envelope.token, r))
    finally:
        await transport.close()
    return results


def message_ids(handler: FaultyRecorder) -> list[str]:
    return [str(message_from_bytes(m.data)["Message-ID"]) for m in handler.messages]


async def test_a_batch_over_a_pool_of_reused_connections(smtp_server: Server) -> None:
    results = await deliver(plain(smtp_server, connections=4), envelopes(40))
    assert all(r.verdict is Verdict.SENT for r in results.values())
    assert results[0].reply.startswith("250")
    assert sorted(smtp_server.handler.recipients()) == sorted(
        f"p{n}@example.org" for n in range(40)
    )
    assert len(smtp_server.handler.peers) <= 4  # 40 messages, at most 4 connections


async def test_starttls_and_auth(starttls_server: Server) -> None:
    settings = plain(
        starttls_server,
        security="starttls",
        username="cycle",
        password=SecretStr("s3cret"),
        ca_file=starttls_server.ca_file,
    )
    results = await deliver(settings, envelopes(3))
    assert [r.verdict for r in results.values()] == [Verdict.SENT] * 3
    assert starttls_server.handler.tls == [True, True, True]


async def test_a_wrong_password_stops_at_once_and_names_the_setting(
    starttls_server: Server,
) -> None:
    settings = plain(
        starttls_server,
        security="starttls",
        username="cycle",
        password=SecretStr("wrong-secret"),
        ca_file=starttls_server.ca_file,
    )
    with pytest.raises(TransportConfigError) as caught:
        await deliver(settings, envelopes(5))
    assert "refused the login of 'cycle'" in str(caught.value)
    assert "REMINDER_SMTP__PASSWORD" in str(caught.value)
    assert "wrong-secret" not in str(caught.value)
    assert starttls_server.handler.messages == []


async def test_an_untrusted_certificate_stops_with_the_settings_to_check(
    starttls_server: Server,
) -> None:
    settings = plain(
        starttls_server, security="starttls", username="cycle", password=SecretStr("s3cret")
    )  # no ca_file: the test CA is unknown
    with pytest.raises(TransportConfigError, match=r"smtp\.ca_file"):
        await deliver(settings, envelopes(1))


async def test_starttls_is_required_never_optional(smtp_server: Server) -> None:
    # A server (or a man in the middle) that does not offer STARTTLS gets nothing in clear.
    settings = plain(smtp_server, security="starttls", allow_insecure=True)
    with pytest.raises(TransportConfigError, match=r"smtp\.security"):
        await deliver(settings, envelopes(1))
    assert smtp_server.handler.messages == []


async def test_421_in_the_middle_of_a_batch(smtp_server: Server) -> None:
    smtp_server.handler.data_replies = ["250"] * 4 + ["421 4.3.2 Service shutting down"]
    results = await deliver(plain(smtp_server, connections=2), envelopes(12))
    assert all(r.verdict is Verdict.SENT for r in results.values())
    assert sorted(smtp_server.handler.recipients()) == sorted(
        f"p{n}@example.org" for n in range(12)
    )


async def test_greylisting_450_then_success(smtp_server: Server) -> None:
    smtp_server.handler.rcpt_replies["p3@example.org"] = ["450 4.2.0 Greylisted, come back later"]
    results = await deliver(plain(smtp_server), envelopes(5))
    assert results[3].verdict is Verdict.SENT
    assert smtp_server.handler.recipients().count("p3@example.org") == 1


async def test_550_for_one_recipient_among_many(smtp_server: Server) -> None:
    smtp_server.handler.rcpt_replies["p2@example.org"] = ["550 5.1.1 No such user"]
    results = await deliver(plain(smtp_server), envelopes(6))
    assert results[2].verdict is Verdict.FAILED
    assert results[2].reply == "550 5.1.1 No such user"
    assert [results[n].verdict for n in (0, 1, 3, 4, 5)] == [Verdict.SENT] * 5


async def test_a_timeout_after_data_is_retried_with_the_same_message_id(
    smtp_server: Server,
) -> None:
    smtp_server.handler.stall_first_data = 2.0
    results = await deliver(
        plain(smtp_server, timeout=0.5, connections=1, attempts=1), envelopes(1)
    )
    assert (results[0].verdict, results[0].reply) == (Verdict.RETRY, "no reply within 0.5 s")
    results = await deliver(plain(smtp_server, timeout=0.5, connections=1), envelopes(1))
    assert results[0].verdict is Verdict.SENT
    # The server kept the first copy: the receiver sees the same Message-ID twice.
    assert message_ids(smtp_server.handler) == ["<m0@irev.fr>", "<m0@irev.fr>"]


async def test_transient_failures_give_up_as_retry_after_the_attempts(smtp_server: Server) -> None:
    smtp_server.handler.rcpt_replies["p0@example.org"] = ["451 4.7.1 Try later"] * 10
    results = await deliver(plain(smtp_server, attempts=3), envelopes(1))
    assert (results[0].verdict, results[0].reply) == (Verdict.RETRY, "451 4.7.1 Try later")


async def test_retries_never_run_past_the_deadline(smtp_server: Server) -> None:
    smtp_server.handler.rcpt_replies["p0@example.org"] = ["451 4.7.1 Try later"] * 10
    soon = datetime.now(UTC) + timedelta(seconds=0.05)
    item = Envelope(0, SENDER, "p0@example.org", "<m0@irev.fr>", b"Subject: x\r\n\r\nx\r\n", soon)
    results = await deliver(plain(smtp_server, attempts=10, retry_base=1.0), [item])
    assert results[0].verdict is Verdict.RETRY
    assert len(smtp_server.handler.messages) == 0


async def test_the_deadline_of_a_retry_is_judged_by_the_injected_clock(
    smtp_server: Server,
) -> None:
    smtp_server.handler.rcpt_replies["p0@example.org"] = ["451 4.7.1 Try later"]
    # Past by the real clock, a day ahead by the transport's own: the retry goes out.
    deadline = datetime.now(UTC) - timedelta(hours=1)
    item = Envelope(
        0, SENDER, "p0@example.org", "<m0@irev.fr>", b"Subject: x\r\n\r\nx\r\n", deadline
    )
    transport = SmtpTransport(plain(smtp_server), clock=lambda: deadline - timedelta(days=1))
    results: list[Result] = []
    try:
        await transport.deliver(each([item]), results.append)
    finally:
        await transport.close()
    assert [r.verdict for r in results] == [Verdict.SENT]


async def test_connections_idle_while_a_retry_waits_instead_of_polling(
    smtp_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.handler.rcpt_replies["p0@example.org"] = ["451 4.7.1 Try later"]
    transport = SmtpTransport(plain(smtp_server, connections=4, retry_base=0.5))
    timed_waits = 0
    wait_for = asyncio.wait_for

    async def counted(awaitable: Any, timeout: float | None) -> Any:  # noqa: ASYNC109 - wait_for's own signature
        nonlocal timed_waits
        if timeout is not None and timeout < 0.5:  # shorter than the retry it waits for
            timed_waits += 1
        return await wait_for(awaitable, timeout)

    results: list[Result] = []
    monkeypatch.setattr(asyncio, "wait_for", counted)
    try:
        await transport.deliver(each(envelopes(1)), results.append)
    finally:
        monkeypatch.undo()
        await transport.close()
    assert [r.verdict for r in results] == [Verdict.SENT]
    # Connections idle for the half second the retry waits: none wakes on a shorter timer.
    assert timed_waits == 0


async def test_server_down_at_start_then_back() -> None:
    port = free_port()
    handler = FaultyRecorder()
    settings = Smtp(
        host="127.0.0.1",
        port=port,
        security="none",
        attempts=20,
        retry_base=0.05,
        timeout=2,
    )
    transport = SmtpTransport(settings)
    results: list[Result] = []
    task = asyncio.create_task(transport.deliver(each(envelopes(3)), results.append))
    await until(lambda: transport.failed_attempts >= 2)
    from reminder.mail.smtpsink import SmtpSink

    sink = SmtpSink(handler=handler)
    sink.port = port
    sink.controller.port = port
    with sink:
        await asyncio.wait_for(task, 20)
        await transport.close()
    assert sorted(r.verdict for r in results) == [Verdict.SENT] * 3
    assert len(handler.messages) == 3


async def test_the_rate_limit_holds_at_the_server(smtp_server: Server) -> None:
    transport = SmtpTransport(plain(smtp_server, connections=4))
    transport.rate = RateLimit([(5, 0.25)])  # 20 a second, in a window short enough to test
    results: list[Result] = []
    await transport.deliver(each(envelopes(30)), results.append)
    await transport.close()
    received = sorted(m.at for m in smtp_server.handler.messages)
    assert len(received) == 30
    for index in range(len(received) - 5):
        assert received[index + 5] - received[index] >= 0.25, "6 messages inside 0.25 s"


def test_configured_rates_become_limits() -> None:
    transport = SmtpTransport(Smtp(host="smtp.example.org", max_per_minute=30, max_per_second=2.5))
    assert transport.rate.limits == [(30, 60.0), (5, 2.0)]
    assert "at most 30/min and 2.5/s" in transport.description


async def test_the_outbox_writes_maildir_files_atomically(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    results: list[Result] = []
    await outbox.deliver(each(envelopes(3)), results.append)
    files = sorted((tmp_path / "outbox" / "new").iterdir())
    assert [f.name for f in files] == ["m0@irev.fr.eml", "m1@irev.fr.eml", "m2@irev.fr.eml"]
    assert list((tmp_path / "outbox" / "tmp").iterdir()) == []
    await outbox.deliver(each(envelopes(1)), results.append)  # a resend replaces its file
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 3
    assert all(r.verdict is Verdict.SENT for r in results)


@dataclass
class PipeliningRecorder(FaultyRecorder):
    """aiosmtpd, which does not offer PIPELINING by itself, offering it (it reads pipelined
    commands in order). Notes, at each RCPT, whether DATA had already arrived with it,
    and closes the connection when a recipient's queued reply is "disconnect"."""

    with_data: list[bool] = field(default_factory=list)
    mail_replies: list[str] = field(default_factory=list)

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.lock:
            if self.mail_replies:
                return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_EHLO(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        # What the server has read from the socket but not yet handled.
        waiting = bytes(server._reader._buffer)
        with self.lock:
            self.with_data.append(waiting.startswith(b"DATA\r\n"))
            queued = self.rcpt_replies.get(address)
            if queued and queued[0] == "disconnect":
                queued.pop(0)
                server.transport.close()
                return "250 OK"
        return await super().handle_RCPT(server, session, envelope, address, options)


@pytest.fixture
def pipelining_server() -> Iterator[Server]:
    handler = PipeliningRecorder()
    with SmtpSink(handler=handler) as sink:
        yield Server(sink, handler)


async def test_a_server_offering_pipelining_gets_mail_rcpt_and_data_in_one_write(
    pipelining_server: Server,
) -> None:
    handler = pipelining_server.handler
    assert isinstance(handler, PipeliningRecorder)
    items = envelopes(20)
    items[3] = Envelope(3, SENDER, "p3@example.org", "<m3@irev.fr>", b".dot\r\n..two\r\nend")
    results = await deliver(plain(pipelining_server, connections=2), items)
    assert all(r.verdict is Verdict.SENT for r in results.values())
    assert results[0].reply.startswith("250 2.0.0")
    assert handler.with_data == [True] * 20  # one round trip for the envelope
    # Lines starting with a dot, and no final line ending, arrive as they were written.
    assert {m.recipients[0]: m.data for m in handler.messages}["p3@example.org"] == (
        b".dot\r\n..two\r\nend\r\n"
    )


async def test_a_message_composed_in_its_wire_form_arrives_as_one_that_was_not(
    pipelining_server: Server, smtp_server: Server
) -> None:
    # Helpers prepare each message for the wire (dots doubled, the final dot) so that
    # the sending process does not: the server must not see the difference.
    message = b"Subject: x\r\n\r\n.starts with a dot\r\n..two\r\nend\r\n"
    for server in (pipelining_server, smtp_server):
        items = [
            Envelope(0, SENDER, "p0@example.org", "<m0@irev.fr>", message),
            Envelope(1, SENDER, "p1@example.org", "<m1@irev.fr>", wired(message), wired=True),
        ]
        results = await deliver(plain(server), items)
        assert all(r.verdict is Verdict.SENT for r in results.values())
        received = {m.recipients[0]: m for m in server.handler.messages}
        assert received["p0@example.org"].data == received["p1@example.org"].data == message
        # RFC 1870: the size announced is the message's; of the wired one, its two
        # doubled dots included (a size a little high is allowed).
        assert received["p0@example.org"].mail_options == (f"SIZE={len(message)}",)
        assert received["p1@example.org"].mail_options == (f"SIZE={len(message) + 2}",)


async def test_a_server_without_pipelining_is_sent_one_command_at_a_time(
    smtp_server: Server,
) -> None:
    # aiosmtpd does not offer PIPELINING: a command waits for the reply to the last.
    smtp_server.handler.rcpt_replies["p1@example.org"] = ["550 5.1.1 No such user"]
    results = await deliver(plain(smtp_server, connections=1), envelopes(3))
    assert [results[n].verdict for n in range(3)] == [Verdict.SENT, Verdict.FAILED, Verdict.SENT]
    assert smtp_server.handler.recipients() == ["p0@example.org", "p2@example.org"]


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [("550 5.1.1 No such user", Verdict.FAILED), ("451 4.3.0 Try again later", Verdict.SENT)],
)
async def test_a_refused_recipient_in_a_pipeline_sends_no_message(
    pipelining_server: Server, reply: str, verdict: Verdict
) -> None:
    # The server refuses DATA (503: no valid recipient), the message is not sent, the
    # connection goes on with the next one; a 4xx is tried again, a 5xx is final.
    pipelining_server.handler.rcpt_replies["p1@example.org"] = [reply]
    results = await deliver(plain(pipelining_server, connections=1), envelopes(3))
    assert [results[n].verdict for n in range(3)] == [Verdict.SENT, verdict, Verdict.SENT]
    if verdict is Verdict.FAILED:
        assert results[1].reply == reply
    recipients = pipelining_server.handler.recipients()
    assert recipients.count("p1@example.org") == (verdict is Verdict.SENT)
    assert len(pipelining_server.handler.peers) == 1  # the same connection throughout


@pytest.mark.parametrize("reply", ["421 4.3.2 Shutting down", "disconnect"])
async def test_a_421_or_a_disconnect_mid_pipeline_is_retried_on_a_new_connection(
    pipelining_server: Server, reply: str
) -> None:
    pipelining_server.handler.rcpt_replies["p1@example.org"] = [reply]
    results = await deliver(plain(pipelining_server, connections=1), envelopes(3))
    assert all(r.verdict is Verdict.SENT for r in results.values())
    assert sorted(pipelining_server.handler.recipients()) == [f"p{n}@example.org" for n in range(3)]
    assert len(pipelining_server.handler.peers) == 2  # p0 on the first, p1 and p2 on a new one


async def test_a_4xx_or_5xx_to_mail_in_a_pipeline(pipelining_server: Server) -> None:
    # A refused sender: 4xx is tried again later; 5xx stops everything (a configuration
    # fault), before any message goes out.
    handler = pipelining_server.handler
    assert isinstance(handler, PipeliningRecorder)
    handler.mail_replies = ["451 4.3.0 Sender check unavailable"]
    results = await deliver(plain(pipelining_server, connections=1), envelopes(2))
    assert all(r.verdict is Verdict.SENT for r in results.values())
    handler.mail_replies = ["553 5.7.1 Sender not allowed"] * 2
    with pytest.raises(TransportConfigError, match=r"sender\.address"):
        await deliver(plain(pipelining_server, connections=1), envelopes(2, "q"))
    assert not [r for r in handler.recipients() if r.startswith("q")]


@pytest.mark.parametrize("recipient", ["p0@example.org\r\nRCPT TO:<x@evil.example>", "a b@c.fr"])
async def test_an_address_that_could_smuggle_a_command_is_refused_before_sending(
    pipelining_server: Server, recipient: str
) -> None:
    items = [Envelope(0, SENDER, recipient, "<m0@irev.fr>", b"Subject: x\r\n\r\nx\r\n")]
    results = await deliver(plain(pipelining_server), items + envelopes(2)[1:])
    assert results[0].verdict is Verdict.FAILED
    assert results[0].reply.startswith("address refused before sending")
    assert results[1].verdict is Verdict.SENT
    assert pipelining_server.handler.recipients() == ["p1@example.org"]


async def test_a_sender_that_could_smuggle_a_command_stops_with_the_setting_to_check(
    pipelining_server: Server,
) -> None:
    item = Envelope(0, "contact@irev.fr\r\nRSET", "p0@example.org", "<m0@irev.fr>", b"x\r\n")
    with pytest.raises(TransportConfigError, match=r"sender\.address"):
        await deliver(plain(pipelining_server), [item])
    assert pipelining_server.handler.messages == []


class SlowRecipient(FaultyRecorder):
    """Answers RCPT only after `pause`: the client waits for DATA's 354 meanwhile."""

    pause: float = 0.3

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        await asyncio.sleep(self.pause)
        return await super().handle_RCPT(server, session, envelope, address, options)


async def test_a_sender_whose_lease_lapses_before_the_message_body_sends_none() -> None:
    # A worker frozen between MAIL and the message (SIGSTOP, a suspended VM) may have lost
    # its claim to another worker: after DATA's 354 it closes instead of sending the body.
    handler = SlowRecipient()
    with SmtpSink(handler=handler) as sink:
        settings = Smtp(host="127.0.0.1", port=sink.port, security="none", timeout=5)
        still_mine = [True]
        first = envelopes(1)[0]
        item = Envelope(
            first.token, first.sender, first.recipient, first.message_id, first.data,
            may_send=lambda: still_mine[0],
        )  # fmt: skip
        transport = SmtpTransport(settings)
        results: list[Result] = []
        try:
            sending = asyncio.create_task(transport.deliver(each([item]), results.append))
            await asyncio.sleep(0.1)  # MAIL, RCPT and DATA are written; RCPT's reply waits
            still_mine[0] = False
            await sending
            # Already lapsed before the transaction: not even MAIL is written.
            await transport.deliver(each([item]), results.append)
        finally:
            await transport.close()
        await asyncio.sleep(0.2)
    assert [r.verdict for r in results] == [Verdict.ABANDONED, Verdict.ABANDONED]
    assert handler.messages == []


async def test_a_result_carries_every_attempt_the_transport_made(smtp_server: Server) -> None:
    smtp_server.handler.rcpt_replies["p0@example.org"] = ["451 4.7.1 Try later"] * 2
    results = await deliver(plain(smtp_server, attempts=3), envelopes(1))
    assert results[0].verdict is Verdict.SENT and results[0].attempts == 3
