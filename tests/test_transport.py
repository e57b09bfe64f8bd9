"""SMTP delivery against real aiosmtpd servers that misbehave in every known way; the outbox."""

import asyncio
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path

import pytest
from pydantic import SecretStr

from reminder.config import Smtp
from reminder.errors import TransportConfigError
from reminder.outbox import Outbox
from reminder.ratelimit import RateLimit
from reminder.smtpsink import free_port
from reminder.transport import Envelope, Result, SmtpTransport, Verdict, each

from .conftest import FaultyRecorder, Server, until

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
        "sender": SENDER,
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


async def test_server_down_at_start_then_back() -> None:
    port = free_port()
    handler = FaultyRecorder()
    settings = Smtp(
        host="127.0.0.1",
        port=port,
        security="none",
        sender=SENDER,
        attempts=20,
        retry_base=0.05,
        timeout=2,
    )
    transport = SmtpTransport(settings)
    results: list[Result] = []
    task = asyncio.create_task(transport.deliver(each(envelopes(3)), results.append))
    await until(lambda: transport.failed_attempts >= 2)
    from reminder.smtpsink import SmtpSink

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
    transport = SmtpTransport(
        Smtp(host="smtp.example.org", max_per_minute=30, max_per_second=2.5, sender=SENDER)
    )
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
