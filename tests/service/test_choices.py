"""A registrant's choices through a real worker's HTTP face: decline one session from the
link of a reminder, come after all, the page of their sessions; signed tokens only."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from email import message_from_bytes, policy

import aiohttp
import pytest
import time_machine

from reminder.core.unsubscribe import token
from tests.support.http import (
    CYCLE,
    SECRET,
    SEVEN_DAYS_BEFORE,
    basic,
    get,
    one_click,
    serving,
    staff,
    use_server,
)
from tests.support.project import Project, person, until
from tests.support.smtp import Server
from tests.support.worker import PARIS, declines, suppressed

pytestmark = pytest.mark.timeout(60)
ONE_DAY_BEFORE = datetime(2023, 2, 28, 17, 0, 1, tzinfo=PARIS)  # March 1st's 1d reminder


async def post(url: str, **options: object) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, **options) as response,  # type: ignore[arg-type]
    ):
        return response.status, await response.text()


def decline_link(raw: bytes) -> str:
    """The "Je ne pourrai pas assister à cette séance" link of a mail's HTML part."""
    message = message_from_bytes(raw, policy=policy.default)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    found = re.search(r'href="([^"]+)"[^>]*>Je ne pourrai pas assister', html)
    assert found, html
    return found.group(1)


def kinds(server: Server, since: int = 0) -> list[tuple[str, str]]:
    """(recipient, what) of each message received since the `since`-th."""
    found = []
    for m in server.handler.messages[since:]:
        message = message_from_bytes(m.data, policy=policy.default)
        calendar = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
        method = calendar.get_param("method")
        found.append((m.recipients[0], f"{method} {message['Subject']}"))
    return found


async def test_a_decline_stops_that_session_s_mails_to_them_and_coming_after_all_sends_it(
    project: Project, smtp_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_server(project, smtp_server)
    one_click(project, monkeypatch)
    project.registrants([person(n) for n in range(3)])
    with time_machine.travel(SEVEN_DAYS_BEFORE, tick=True) as traveller:
        async with serving(project) as (worker, base):
            await until(lambda: len(smtp_server.handler.messages) == 3)
            raw = next(m.data for m in smtp_server.handler.messages if "alex1@" in m.recipients[0])
            link = decline_link(raw)
            assert link.endswith("/2023-03-01")
            local = link.replace("https://rappels.irev.fr", base)
            # GET shows one button and changes nothing: mail scanners follow links.
            status, headers, page = await get(local)
            assert status == 200
            assert 'id="decline"' in page and "a***@example.org" in page
            assert "alex1@example.org" not in page
            assert headers["Referrer-Policy"] == "no-referrer"
            assert not (await declines(worker))
            status, page = await post(local, data={"choice": "decline"})
            assert status == 200
            assert "C’est noté" in page and 'id="attend"' in page
            (recorded,) = await declines(worker)
            assert (recorded.recipient, recorded.session_id) == ("alex1@example.org", "2023-03-01")
            assert recorded.declined_at.astimezone(PARIS).date() == SEVEN_DAYS_BEFORE.date()
            assert (await post(local, data={"choice": "decline"}))[0] == 200  # twice is fine
            _, _, metrics = await get(f"{base}/metrics")
            assert 'reminder_declines{session="2023-03-01"} 1.0' in metrics
            assert 'reminder_registrant_choices_total{choice="decline"} 1.0' in metrics
            assert "alex1" not in metrics and "example.org" not in metrics

            # Once the settling delay has passed, one cancellation for them alone takes
            # the session out of their calendar.
            traveller.move_to(SEVEN_DAYS_BEFORE + timedelta(minutes=11))
            await worker.wake("sweep")
            await until(lambda: len(smtp_server.handler.messages) == 4)
            [(who, what)] = kinds(smtp_server, 3)
            assert who == "alex1@example.org"
            assert what.startswith("CANCEL Séance du mercredi 1er mars retirée de votre agenda")

            # The next reminder goes to the two others only.
            traveller.move_to(ONE_DAY_BEFORE)
            await worker.wake("sweep")
            await until(lambda: len(smtp_server.handler.messages) == 6)
            assert sorted(who for who, _ in kinds(smtp_server, 4)) == [
                "alex0@example.org",
                "alex2@example.org",
            ]

            # "Finalement je viendrai": the reminder still owed goes out at once, late,
            # and puts the session back in their calendar.
            status, page = await post(local, data={"choice": "attend"})
            assert status == 200 and "Vous êtes attendu(e)" in page
            await until(lambda: len(smtp_server.handler.messages) == 7)
            [(who, what)] = kinds(smtp_server, 6)
            assert who == "alex1@example.org" and what.startswith("REQUEST Rappel")
            ics = next(
                p
                for p in message_from_bytes(
                    smtp_server.handler.messages[6].data, policy=policy.default
                ).walk()
                if p.get_content_type() == "text/calendar"
            ).get_content()
            assert "SEQUENCE:2" in ics  # above the cancellation's, so calendars take it
            # Nothing more is owed to anyone: no update on top of the reminder.
            traveller.move_to(ONE_DAY_BEFORE + timedelta(minutes=30))
            await worker.wake("sweep")
            _, _, metrics = await get(f"{base}/metrics")
    assert len(smtp_server.handler.messages) == 7
    assert 'reminder_declines{session="2023-03-01"} 0.0' in metrics
    assert 'reminder_registrant_choices_total{choice="attend"} 1.0' in metrics


async def test_a_decline_undone_before_the_delay_sends_nothing(
    project: Project, smtp_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_server(project, smtp_server)
    one_click(project, monkeypatch)
    project.registrants([person(0)])
    with time_machine.travel(SEVEN_DAYS_BEFORE, tick=True) as traveller:
        async with serving(project) as (worker, base):
            await until(lambda: len(smtp_server.handler.messages) == 1)
            local = decline_link(smtp_server.handler.messages[0].data).replace(
                "https://rappels.irev.fr", base
            )
            assert (await post(local, data={"choice": "decline"}))[0] == 200
            traveller.move_to(SEVEN_DAYS_BEFORE + timedelta(minutes=2))
            assert (await post(local, data={"choice": "attend"}))[0] == 200
            traveller.move_to(SEVEN_DAYS_BEFORE + timedelta(minutes=30))
            await worker.wake("sweep")
            await worker.wake("sweep")
    assert len(smtp_server.handler.messages) == 1


async def test_the_page_of_their_sessions_and_its_toggles(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_click(project, monkeypatch)
    project.edit("date = 2023-05-03\n", "date = 2023-05-03\ncancelled = true\n")
    project.edit("date = 2023-06-07\n", "date = 2023-06-07\nmoved_to = 2023-06-14\n")
    project.registrants([person(0, "01/03/2023, 05/04/2023, 03/05/2023")])
    page_url = f"/m/{token(SECRET, CYCLE, 'alex0@example.org')}"
    with time_machine.travel(datetime(2023, 2, 20, 9, tzinfo=PARIS), tick=True):
        async with serving(project) as (worker, base):
            status, _, page = await get(base + page_url)
            assert status == 200
            assert "a***@example.org" in page and "alex0@example.org" not in page
            assert "IREV" in page and "m.petit@irev.fr" in page  # organiser and contact
            march = page[page.index('id="session-2023-03-01"') :]
            assert "à venir" in march[:600] and "vous êtes inscrit(e)" in march[:600]
            may = page[page.index('id="session-2023-05-03"') :]
            assert "annulée" in may[:600] and 'id="decline-2023-05-03"' not in page
            june = page[page.index('id="session-2023-06-07"') :]
            assert "Mercredi 14 juin 2023" in june[:600] and "déplacée" in june[:600]
            assert "Initialement prévue le mercredi 7 juin 2023 à 17h00" in june[:900]
            assert "non inscrit(e)" in june[:600] and 'id="decline-2023-06-07"' not in page
            assert "<script" not in page
            status, page = await post(
                base + page_url, data={"session": "2023-04-05", "choice": "decline"}
            )
            assert status == 200 and 'id="confirmation"' in page
            assert 'id="attend-2023-04-05"' in page
            assert [d.session_id for d in (await declines(worker))] == ["2023-04-05"]
            # A session the export does not give them is not theirs to decline.
            status, page = await post(
                base + page_url, data={"session": "2023-06-07", "choice": "decline"}
            )
            assert status == 200 and "pas inscrit(e)" in page
            assert [d.session_id for d in (await declines(worker))] == ["2023-04-05"]
            for bad in ({"session": "2023-04-05", "choice": "maybe"}, {"session": "2023-04-05"}):
                assert (await post(base + page_url, data=bad))[0] == 400
            assert (
                await post(base + page_url, data={"session": "2023-04-06", "choice": "decline"})
            )[0] == 404


async def test_a_session_that_has_started_can_no_longer_be_declined(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_click(project, monkeypatch)
    project.registrants([person(0)])
    url = f"/m/{token(SECRET, CYCLE, 'alex0@example.org')}/2023-03-01"
    with time_machine.travel(datetime(2023, 3, 1, 17, 5, tzinfo=PARIS), tick=True):
        async with serving(project) as (worker, base):
            status, _, page = await get(base + url)
            assert status == 200 and 'id="decline"' not in page
            # The link of a reminder opened late says why there is no button.
            assert "Trop tard" in page and "ne recevra plus" not in page
            status, page = await post(base + url, data={"choice": "decline"})
            assert status == 200 and "Trop tard" in page
            assert not (await declines(worker))


async def test_the_link_of_a_session_called_off_since_says_so(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_click(project, monkeypatch)
    project.registrants([person(0)])
    project.edit("date = 2023-03-01\n", "date = 2023-03-01\ncancelled = true\n")
    url = f"/m/{token(SECRET, CYCLE, 'alex0@example.org')}/2023-03-01"
    with time_machine.travel(SEVEN_DAYS_BEFORE, tick=True):
        async with serving(project) as (worker, base):
            status, _, page = await get(base + url)
            assert status == 200 and 'id="decline"' not in page
            assert "Séance annulée" in page and "ne recevra plus" not in page
            assert not (await declines(worker))


async def test_forged_and_other_cycle_tokens_change_nothing(
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
        for candidate in (forged, other_cycle, stranger, wrong_key, "short", real + "x"):
            for path in (f"/m/{candidate}", f"/m/{candidate}/2023-03-01"):
                status, _, body = await get(base + path)
                assert status == 404, path
                assert "alex" not in body and "example.org" not in body
                form = {"choice": "decline", "session": "2023-03-01"}
                assert (await post(base + path, data=form))[0] == 404
        assert not (await declines(worker))
        assert (await suppressed(worker)) == frozenset()
        assert (await get(f"{base}/m/{real}"))[0] == 200


async def test_staff_see_each_session_s_declines_on_the_status_page(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_click(project, monkeypatch)
    login = staff(monkeypatch)
    project.registrants([person(n) for n in range(3)])
    url = f"/m/{token(SECRET, CYCLE, 'alex1@example.org')}/2023-03-01"
    with time_machine.travel(datetime(2023, 2, 20, 9, tzinfo=PARIS), tick=True):
        async with serving(project) as (_, base):
            assert (await post(base + url, data={"choice": "decline"}))[0] == 200
            status, _, page = await get(f"{base}/", headers=login)
            assert (await get(f"{base}/", headers=basic("equipe", "non")))[0] == 401
    assert status == 200
    march = page[page.index('id="session-2023-03-01"') : page.index('id="session-2023-04-05"')]
    assert "3 inscrits" in march and "1 absent annoncé" in march and "2 à qui écrire" in march
    assert "a***@example.org – le lundi 20 février 2023 à 9h00" in march
    assert "alex1@example.org" not in page


async def test_the_first_requests_after_a_reload_all_find_their_registrant(
    project: Project, smtp_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The token index is built once per reading of the export; requests that came while
    # it was being built got a 500 (the index not there yet) instead of their page.
    use_server(project, smtp_server)
    one_click(project, monkeypatch)
    project.registrants([person(n) for n in range(3)])
    with time_machine.travel(SEVEN_DAYS_BEFORE - timedelta(days=1), tick=True):
        async with serving(project) as (_, base):
            links = [f"{base}/m/{token(SECRET, CYCLE, f'alex{n}@example.org')}" for n in range(3)]
            answers = await asyncio.gather(*(get(link) for link in links * 4))
    assert [status for status, _, _ in answers] == [200] * 12
    assert all("a***@example.org" in page for _, _, page in answers)
