"""Every HTTP endpoint of a real worker: health, readiness, metrics, unsubscribe, staff page."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import time_machine

from reminder.core.mailing import DeliveryKey
from reminder.core.unsubscribe import token
from reminder.service.monitor import Monitor
from reminder.storage.ledger import Ledger
from tests.support.http import (
    CYCLE,
    SECRET,
    SEVEN_DAYS_BEFORE,
    basic,
    get,
    one_click,
    serving,
    staff,
    unsubscribe_link,
    use_server,
)
from tests.support.project import Project, person, until
from tests.support.smtp import Server
from tests.support.worker import suppressed

PARIS = ZoneInfo("Europe/Paris")
pytestmark = pytest.mark.timeout(60)


async def post(url: str, **options: object) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, **options) as response,  # type: ignore[arg-type]
    ):
        return response.status, await response.text()


async def test_health_ready_and_metrics_of_a_worker_that_sent_a_batch(
    project: Project, smtp_server: Server
) -> None:
    use_server(project, smtp_server)
    project.registrants([person(n) for n in range(3)])
    with time_machine.travel(SEVEN_DAYS_BEFORE, tick=True):
        async with serving(project) as (worker, base):
            await until(lambda: len(smtp_server.handler.messages) == 3)
            await until(lambda: worker.monitor.wakeups != ())
            status, headers, body = await get(f"{base}/healthz")
            assert (status, body) == (200, '{"status": "ok"}')
            status, headers, body = await get(f"{base}/readyz")
            assert status == 200, body
            assert '"status": "ready"' in body
            status, headers, metrics = await get(f"{base}/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'reminder_deliveries_total{kind="reminder",lead="7d",outcome="sent"} 3.0' in metrics
    assert 'reminder_deliveries_total{kind="reminder",lead="1d",outcome="failed"} 0.0' in metrics
    assert "reminder_due_to_accept_seconds_count 3.0" in metrics
    assert 'reminder_registrants{state="served"} 3.0' in metrics
    assert "reminder_transport_paused 0.0" in metrics
    assert "reminder_messages_in_flight 0.0" in metrics
    next_wakeup = re.search(r"^reminder_next_wakeup_timestamp_seconds (\S+)$", metrics, re.M)
    assert next_wakeup
    assert float(next_wakeup.group(1)) == datetime(2023, 2, 28, 17, tzinfo=PARIS).timestamp()
    last = re.search(r"^reminder_last_delivery_timestamp_seconds (\S+)$", metrics, re.M)
    assert last and float(last.group(1)) > SEVEN_DAYS_BEFORE.timestamp()
    assert "@" not in metrics  # never an address in a label


async def test_readyz_is_503_while_the_smtp_password_is_wrong(
    project: Project, starttls_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert starttls_server.ca_file is not None
    project.edit(
        "connections = 4\nmax_per_minute = 30",
        f'host = "127.0.0.1"\nport = {starttls_server.port}\nsecurity = "starttls"\n'
        f'username = "cycle"\nca_file = "{starttls_server.ca_file}"',
    )
    monkeypatch.setenv("REMINDER_SMTP__PASSWORD", "wrong")
    project.registrants([person(0)])
    with time_machine.travel(SEVEN_DAYS_BEFORE, tick=True):
        async with serving(project) as (_, base):
            status, _, body = await get(f"{base}/readyz")
            _, _, metrics = await get(f"{base}/metrics")
    assert status == 503
    assert "deliveries paused" in body
    assert "wrong" not in body  # the password never shows
    assert "reminder_transport_paused 1.0" in metrics
    assert starttls_server.handler.messages == []


async def test_readyz_is_503_while_another_process_locks_the_ledger(project: Project) -> None:
    async with serving(project) as (worker, base):
        assert (await get(f"{base}/readyz"))[0] == 200
        holder = sqlite3.connect(project.root / "state" / "ledger.sqlite", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            # The ledger is probed every second, in its thread: readiness reads its answer.
            await until(lambda: "database is locked" in str(worker.monitor.readiness()), 5)
            status, _, body = await get(f"{base}/readyz")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    assert status == 503
    assert "the ledger is not writable: database is locked" in body


def test_a_due_instant_left_unserved_past_one_sweep_makes_the_worker_not_ready() -> None:
    now = datetime(2023, 2, 22, 17, tzinfo=PARIS)
    clock = [now]
    monitor = Monitor(lambda: clock[0])
    monitor.ledger_problem = lambda: None  # type: ignore[method-assign]
    monitor.pass_started()
    monitor.pass_ended()
    monitor.scheduled([now + timedelta(hours=1)])
    clock[0] = now + timedelta(hours=1, minutes=4)
    assert monitor.readiness().ready
    clock[0] = now + timedelta(hours=1, minutes=6)  # the default sweep is 5 minutes
    readiness = monitor.readiness()
    assert not readiness.ready
    assert "is unserved for more than the sweep interval" in readiness.reasons[0]
    # A pass that starts serving that instant makes it ready again, however long it takes.
    monitor.pass_started()
    clock[0] = now + timedelta(hours=1, minutes=10)
    monitor.settled(DeliveryKey("2023-03-01T17:00+01:00", "reminder", "1h", "a@x.org"), "sent")
    assert monitor.readiness().ready


async def test_one_click_unsubscribe_stops_the_next_reminders(
    project: Project, smtp_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_server(project, smtp_server)
    one_click(project, monkeypatch)
    project.registrants([person(n) for n in range(3)])
    with time_machine.travel(SEVEN_DAYS_BEFORE, tick=True) as traveller:
        async with serving(project) as (worker, base):
            await until(lambda: len(smtp_server.handler.messages) == 3)
            raw = next(m.data for m in smtp_server.handler.messages if "alex1@" in m.recipients[0])
            link = unsubscribe_link(raw)
            local = link.replace("https://rappels.irev.fr", base)
            # GET shows the button and unsubscribes nobody: scanners follow links.
            status, headers, page = await get(local)
            assert status == 200
            assert "Ne plus recevoir ces rappels" in page
            assert "a***@example.org" in page and "alex1@example.org" not in page
            assert headers["Referrer-Policy"] == "no-referrer"
            assert headers["Server"] == "reminder"  # no version for scanners to match
            assert await suppressed(worker) == frozenset()
            # The mail client's one-click POST (RFC 8058).
            status, page = await post(local, data={"List-Unsubscribe": "One-Click"})
            assert status == 200
            assert "C’est fait" in page
            assert await suppressed(worker) == {"alex1@example.org"}
            again = await post(local, data={"List-Unsubscribe": "One-Click"})
            assert again[0] == 200  # twice is still fine
            # The next reminder goes to the two others only.
            traveller.move_to(datetime(2023, 2, 28, 17, 0, 1, tzinfo=PARIS))
            await worker.wake("sweep")
            await until(lambda: len(smtp_server.handler.messages) == 5)
            await worker.wake("sweep")
            _, _, metrics = await get(f"{base}/metrics")
    later = [m.recipients[0] for m in smtp_server.handler.messages[3:]]
    assert sorted(later) == ["alex0@example.org", "alex2@example.org"]
    assert "reminder_unsubscribes_total 1.0" in metrics
    assert 'reminder_registrants{state="suppressed"} 1.0' in metrics
    with Ledger(project.root / "state" / "ledger.sqlite", readonly=True) as ledger:
        (suppression,) = ledger.suppressions()
    assert (suppression.address, suppression.source) == ("alex1@example.org", "unsubscribe")
    assert suppression.created_at.astimezone(PARIS).date() == SEVEN_DAYS_BEFORE.date()


async def test_the_link_of_a_mail_sent_keeps_working_after_its_registrant_left_the_export(
    project: Project, smtp_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_server(project, smtp_server)
    one_click(project, monkeypatch)
    project.registrants([person(n) for n in range(2)])
    with time_machine.travel(SEVEN_DAYS_BEFORE, tick=True):
        async with serving(project) as (worker, base):
            await until(lambda: len(smtp_server.handler.messages) == 2)
            raw = next(m.data for m in smtp_server.handler.messages if "alex1@" in m.recipients[0])
            local = unsubscribe_link(raw).replace("https://rappels.irev.fr", base)
            project.registrants([person(0)])  # staff remove them from the export
            await worker.reload("test")
            assert len(worker.snapshot.roster.registrants) == 1
            status, _, page = await get(local)
            assert status == 200 and "Ne plus recevoir ces rappels" in page
            assert (await post(local, data={"List-Unsubscribe": "One-Click"}))[0] == 200
            assert await suppressed(worker) == {"alex1@example.org"}


async def test_forged_unknown_and_malformed_tokens_get_a_bare_404(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_click(project, monkeypatch)
    project.registrants([person(0)])
    async with serving(project) as (worker, base):
        real = token(SECRET, CYCLE, "alex0@example.org")
        forged = ("A" if real[0] != "A" else "B") + real[1:]
        other_cycle = token(SECRET, "another-cycle", "alex0@example.org")
        stranger = token(SECRET, CYCLE, "nobody@example.org")
        wrong_key = token("x" * 40, CYCLE, "alex0@example.org")
        for candidate in (forged, other_cycle, stranger, wrong_key, "short", real + "x", "%00"):
            status, _, body = await get(f"{base}/u/{candidate}")
            assert status == 404, candidate
            assert "alex" not in body and "example.org" not in body
            assert (await post(f"{base}/u/{candidate}"))[0] == 404
        assert (await get(f"{base}/u/{real}"))[0] == 200
        assert await suppressed(worker) == frozenset()


async def test_a_post_without_rfc_8058_body_unsubscribes_nobody(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_click(project, monkeypatch)
    project.registrants([person(0), person(1)])
    async with serving(project) as (worker, base):
        url = f"{base}/u/{token(SECRET, CYCLE, 'alex0@example.org')}"
        multipart = aiohttp.MultipartWriter("form-data")  # the other encoding RFC 8058 allows
        multipart.append("One-Click").set_content_disposition("form-data", name="List-Unsubscribe")
        for body in (
            {},
            {"data": b""},
            {"data": {"List-Unsubscribe": "one-click"}},
            {"data": {"List-Unsubscribe": ["One-Click", "Other"]}},
            {"data": b"List-Unsubscribe=One-Click"},  # with no form content type
            {"json": {"List-Unsubscribe": "One-Click"}},
        ):
            status, text = await post(url, **body)
            assert status == 400, body
            assert "List-Unsubscribe=One-Click" in text
        assert await suppressed(worker) == frozenset()
        assert (await post(url, data=multipart))[0] == 200
        assert await suppressed(worker) == {"alex0@example.org"}


async def test_oversized_and_malformed_requests_are_refused(
    project: Project, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    one_click(project, monkeypatch)
    project.registrants([person(0)])
    async with serving(project) as (worker, base):
        url = f"{base}/u/{token(SECRET, CYCLE, 'alex0@example.org')}"
        status, _ = await post(url, data=b"x" * 100_000)
        assert status == 413
        assert (await get(url, allow_redirects=False))[0] == 200
        async with aiohttp.ClientSession() as session, session.put(url) as response:
            assert response.status == 405
        host, port = base.removeprefix("http://").split(":")
        path = url.removeprefix(base).encode()
        malformed = [
            b"GET " + path + b"\r\n HTTP/1.1\r\nHost: x\r\n\r\n",  # CRLF in the path
            b"GET " + path + b"\rx HTTP/1.1\r\nHost: x\r\n\r\n",  # a bare CR
            b"GET " + path + b"\x00 HTTP/1.1\r\nHost: x\r\n\r\n",  # NUL
            b"GET /healthz HTTP/1.1\nHost: x\n\n",  # bare LF
            b"GET /healthz HTTP/1.1\r\nX-Big: " + b"y" * 100_000 + b"\r\n\r\n",
            b"\x16\x03\x01\x02\x00\r\n\r\n",  # TLS on the HTTP port
            b"GET /healthz HTTP/9.9\r\n\r\n",
        ]
        caplog.clear()
        caplog.set_level(logging.DEBUG)
        for garbage in malformed:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(garbage)
            await writer.drain()
            reply = await asyncio.wait_for(reader.read(200), 5)
            writer.close()
            assert reply.startswith(b"HTTP/1.") and b" 400 " in reply.split(b"\r\n")[0], garbage
        # The worker is unharmed and nobody was unsubscribed.
        assert (await get(f"{base}/readyz"))[0] == 200
        _, _, metrics = await get(f"{base}/metrics")
        assert await suppressed(worker) == frozenset()
    # A stranger's bytes are not the service's fault: no ERROR, no traceback, one line each.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    refused = [r for r in caplog.records if "refused a malformed request" in r.getMessage()]
    assert len(refused) == len(malformed)
    assert all(r.exc_info is None and r.levelno <= logging.INFO for r in refused)
    assert not any(path.decode()[3:] in r.getMessage() for r in caplog.records)  # no token
    assert f"reminder_http_bad_requests_total {len(malformed)}.0" in metrics


async def test_the_status_page_needs_the_staff_login_and_sends_strict_headers(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    login = staff(monkeypatch)
    project.registrants([person(n) for n in range(4)])
    async with serving(project) as (_, base):
        assert (await get(f"{base}/"))[0] == 401
        assert (await get(f"{base}/apercu"))[0] == 401
        status, headers, body = await get(f"{base}/", headers=basic("equipe", "devine"))
        assert status == 401
        assert headers["WWW-Authenticate"].startswith("Basic")
        assert "Premier semestre" not in body and "mars" not in body
        status, headers, page = await get(f"{base}/", headers=login)
        _, preview_headers, preview = await get(f"{base}/apercu", headers=login)
    assert status == 200
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none'
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert '<html lang="fr">' in page
    assert "mercredi 1er mars 2023" in page
    assert "4 inscrits" in page
    assert "Rejoindre" in preview or "Zoom" in preview
    assert preview_headers["X-Frame-Options"] == "SAMEORIGIN"


async def test_two_hundred_wrong_staff_passwords_are_throttled_and_logged_once(
    project: Project, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    login = staff(monkeypatch)
    # Behind the reverse proxy on this machine: its X-Forwarded-For names the client.
    project.edit(
        'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\ntrusted_proxies = ["127.0.0.1"]'
    )
    attacker = {"X-Forwarded-For": "203.0.113.7"}
    async with serving(project) as (_, base):
        caplog.clear()
        started = asyncio.get_running_loop().time()
        answers = await asyncio.gather(
            *(
                get(f"{base}/", headers={**basic("equipe", f"guess-{n}"), **attacker})
                for n in range(200)
            )
        )
        took = asyncio.get_running_loop().time() - started
        statuses = [status for status, _, _ in answers]
        # Ten were checked, each held a little longer than the one before; the rest refused.
        assert statuses.count(401) == 10 and statuses.count(429) == 190
        assert 1.9 <= took < 10  # the tenth was held 2 s
        assert all(int(h["Retry-After"]) > 800 for s, h, _ in answers if s == 429)
        # Refused unchecked: the right password from that client is refused too...
        assert (await get(f"{base}/", headers={**login, **attacker}))[0] == 429
        # ... and a client the proxy names differently, whatever it writes itself, logs in.
        spoofed = {"X-Forwarded-For": "203.0.113.7, 198.51.100.20"}
        assert (await get(f"{base}/", headers={**login, **spoofed}))[0] == 200
        _, _, metrics = await get(f"{base}/metrics")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "failed staff login from 203.0.113.7" in warnings[0]
    assert "guess" not in caplog.text and "mot de passe" not in caplog.text
    assert "reminder_staff_login_failures_total 10.0" in metrics
    assert "reminder_staff_logins_refused_total 191.0" in metrics


async def test_the_status_page_is_off_without_staff_credentials(project: Project) -> None:
    async with serving(project) as (_, base):
        status, _, body = await get(f"{base}/", headers=basic("equipe", "x"))
    assert status == 404
    assert "mars" not in body


async def test_reloads_are_counted_and_a_refused_one_keeps_the_worker_ready(
    project: Project,
) -> None:
    async with serving(project) as (worker, base):
        project.edit('title = "Préparer', 'title = 17\ntitre = "Préparer')
        await worker.reload("test")
        project.edit("title = 17\ntitre = ", "title = ")
        await worker.reload("test")
        status, _, _ = await get(f"{base}/readyz")
        _, _, metrics = await get(f"{base}/metrics")
    assert status == 200
    assert 'reminder_reloads_total{result="refused"} 1.0' in metrics
    assert 'reminder_reloads_total{result="ok"} 1.0' in metrics
