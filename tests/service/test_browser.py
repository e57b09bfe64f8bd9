"""The HTTP face in Debian's real Chromium: the staff page's counts, the unsubscribe button."""

from __future__ import annotations

import asyncio
from datetime import datetime
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine

from tests.support.cdp import CHROMIUM, Page, chromium
from tests.support.http import SEVEN_DAYS_BEFORE, one_click, serving, staff, unsubscribe_link
from tests.support.mail import png_size
from tests.support.project import Project, person, until
from tests.support.smtp import Server
from tests.support.worker import PARIS, declines, suppressed, use_server

pytestmark = [
    pytest.mark.chromium,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed"),
    pytest.mark.timeout(90),
]
PHONE, DESKTOP = (390, 844), (1280, 900)


def save(folder: Path, name: str, png: bytes) -> Path:
    path = folder / name
    path.write_bytes(png)
    return path


async def test_staff_see_the_counts_and_a_registrant_unsubscribes_with_one_click(
    project: Project, smtp_server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_server(project, smtp_server)
    one_click(project, monkeypatch)
    login = staff(monkeypatch)["Authorization"]
    project.registrants([person(n) for n in range(3)])
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with time_machine.travel(SEVEN_DAYS_BEFORE, tick=True) as traveller:
        async with serving(project) as (worker, base), chromium(tmp_path) as page:
            await until(lambda: len(smtp_server.handler.messages) == 3)
            await page.send("Network.setExtraHTTPHeaders", headers={"Authorization": login})

            # Staff: the plan and the counts, in French, at phone and desktop width.
            await page.goto(f"{base}/")
            row = "#session-2023-03-01 tr[data-lead='{}'] .{}"
            counts = {
                (lead, column): await page.evaluate(
                    f"document.querySelector({row.format(lead, column)!r}).textContent"
                )
                for lead in ("7d", "1d")
                for column in ("sent", "owed", "failed", "late")
            }
            assert counts == {
                ("7d", "sent"): "3",
                ("7d", "owed"): "0",
                ("7d", "failed"): "0",
                ("7d", "late"): "0",
                ("1d", "sent"): "0",
                ("1d", "owed"): "3",
                ("1d", "failed"): "0",
                ("1d", "late"): "0",
            }
            assert await page.evaluate("document.documentElement.lang") == "fr"
            assert "Le service fonctionne" in await page.evaluate("document.body.innerText")
            phone = save(shots, "status-phone.png", await page.screenshot(*PHONE, mobile=True))
            # Usable on a phone: nothing wider than the screen but the tables' own scroller.
            assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE[0]
            desktop = save(
                shots, "status-desktop.png", await page.screenshot(*DESKTOP, mobile=False)
            )

            # A registrant: the link of their mail, one button, a confirmation.
            await page.send("Network.setExtraHTTPHeaders", headers={})
            raw = next(m.data for m in smtp_server.handler.messages if "alex2@" in m.recipients[0])
            link = unsubscribe_link(raw).replace("https://rappels.irev.fr", base)
            await page.goto(link)
            assert await suppressed(worker) == frozenset()  # showing is not asking
            save(shots, "unsubscribe-phone.png", await page.screenshot(*PHONE, mobile=True))
            # Its stylesheet comes from under /u/, the one prefix the proxy publishes.
            colour = "getComputedStyle(document.querySelector('#unsubscribe')).backgroundColor"
            assert await page.evaluate(colour) == "rgb(31, 78, 153)"
            await page.click("#unsubscribe")
            text = await page.evaluate("document.body.innerText")
            assert "C’est fait" in text
            assert await suppressed(worker) == {"alex2@example.org"}
            done = save(shots, "unsubscribed-phone.png", await page.screenshot(*PHONE, mobile=True))

            # The next reminder goes to the others only; staff see it all.
            traveller.move_to(datetime(2023, 2, 28, 17, 0, 1, tzinfo=PARIS))
            await worker.wake("sweep")
            await until(lambda: len(smtp_server.handler.messages) == 5)
            await page.send("Network.setExtraHTTPHeaders", headers={"Authorization": login})
            await page.goto(f"{base}/")
            sent = await page.evaluate(
                f"document.querySelector({row.format('1d', 'sent')!r}).textContent"
            )
            listed = await page.evaluate("document.querySelector('#suppressions').innerText")
    assert sent == "2"
    assert "a***@example.org (lien de désinscription)" in listed
    assert "alex2@example.org" not in [m.recipients[0] for m in smtp_server.handler.messages[3:]]
    assert png_size(phone) == PHONE
    assert png_size(desktop) == DESKTOP
    assert png_size(done) == PHONE
    # Rendered pages, not blank ones: a blank PNG of these sizes weighs a few kilobytes.
    assert phone.stat().st_size > 20_000
    assert desktop.stat().st_size > 30_000
    assert done.stat().st_size > 8_000


async def test_a_registrant_declines_a_session_from_the_mail_and_comes_after_all_from_the_page(
    project: Project, smtp_server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_server(project, smtp_server)
    one_click(project, monkeypatch)
    project.registrants([person(n) for n in range(3)])
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with time_machine.travel(SEVEN_DAYS_BEFORE, tick=True) as traveller:
        async with serving(project) as (worker, base), chromium(tmp_path) as page:
            await until(lambda: len(smtp_server.handler.messages) == 3)
            raw = next(m.data for m in smtp_server.handler.messages if "alex1@" in m.recipients[0])
            mail = tmp_path / "mail.html"
            mail.write_text(html_of(raw), encoding="utf-8")

            # The mail as a browser opens it: its decline link, and the web calendars'.
            await page.goto(mail.as_uri())
            decline = await page.evaluate(HREF.format("Je ne pourrai pas assister"))
            assert decline.startswith("https://rappels.irev.fr/m/")
            assert decline.endswith("/2023-03-01")
            for text, expected in (
                ("Ajouter à Google Agenda", GOOGLE),
                ("Ajouter à Outlook.com", OUTLOOK),
            ):
                await page.goto(mail.as_uri())  # a blocked request leaves an error page
                assert await opened(page, text) == expected

            # The decline page: one button; showing it changes nothing.
            await page.goto(decline.replace("https://rappels.irev.fr", base))
            assert not (await declines(worker))
            save(shots, "decline-phone.png", await page.screenshot(*PHONE, mobile=True))
            await page.click("#decline")
            assert "C’est noté" in await page.evaluate("document.body.innerText")
            assert [d.recipient for d in (await declines(worker))] == ["alex1@example.org"]

            # The next reminder: to the two others, not to them.
            traveller.move_to(datetime(2023, 2, 28, 17, 0, 1, tzinfo=PARIS))
            await worker.wake("sweep")
            await until(lambda: len(smtp_server.handler.messages) == 6)
            later = {
                m.recipients[0]: str(message_from_bytes(m.data, policy=policy.default)["Subject"])
                for m in smtp_server.handler.messages[3:]
            }
            assert sorted(later) == ["alex0@example.org", "alex1@example.org", "alex2@example.org"]
            # Theirs is the one cancellation of their calendar entry, not a reminder.
            assert later["alex1@example.org"].endswith("retirée de votre agenda")
            assert later["alex0@example.org"].startswith("Rappel")
            before = len(smtp_server.handler.messages)

            # From the page of their sessions: "Finalement je viendrai".
            await page.click("#sessions")
            assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE[0]
            listed = save(shots, "sessions-phone.png", await page.screenshot(*PHONE, mobile=True))
            text = await page.evaluate("document.body.innerText")
            assert "Vos séances" in text and "a***@example.org" in text
            assert "vous ne viendrez pas" in text and "Morgane Petit" in text
            await page.click("#attend-2023-03-01")
            assert "vous êtes attendu(e)" in await page.evaluate(
                "document.querySelector('#confirmation').innerText"
            )
            # The reminder they missed goes to them at once, late.
            await until(lambda: len(smtp_server.handler.messages) == before + 1)
            assert smtp_server.handler.messages[-1].recipients == ["alex1@example.org"]
            assert not (await declines(worker)).standing(worker.snapshot.sessions[0])

            # The whole-cycle unsubscribe, from the same page.
            await page.click("#unsubscribe")
            assert "C’est fait" in await page.evaluate("document.body.innerText")
            assert (await suppressed(worker)) == {"alex1@example.org"}
    assert png_size(listed) == PHONE and listed.stat().st_size > 8_000


# 17:00-19:00 in Paris on March 1st, 2023: 16:00-18:00 UTC.
GOOGLE = {"dates": "20230301T160000Z/20230301T180000Z", "ctz": "Europe/Paris"}
OUTLOOK = {"startdt": "2023-03-01T16:00:00Z", "enddt": "2023-03-01T18:00:00Z"}
HREF = "[...document.links].find(a => a.textContent.includes({!r})).href"


def html_of(raw: bytes) -> str:
    message = message_from_bytes(raw, policy=policy.default)
    body = message.get_body(("html",))
    assert body is not None
    return str(body.get_content())


async def opened(page: Page, text: str) -> dict[str, str]:
    """Click the link named `text` and catch the request it makes, without letting it
    reach the network; the times it carries, as the service would read them."""
    await page.evaluate(
        "document.querySelectorAll('#clicked').forEach(a => a.removeAttribute('id'));"
        f"[...document.links].find(a => a.textContent.includes({text!r})).id = 'clicked'"
    )
    await page.send("Fetch.enable", patterns=[{"urlPattern": "https://*"}])
    paused = page.expect("Fetch.requestPaused")
    await page.press("#clicked")
    request = await asyncio.wait_for(paused.get(), 20)
    await page.send(
        "Fetch.failRequest", requestId=request["requestId"], errorReason="BlockedByClient"
    )
    await page.send("Fetch.disable")
    url = urlsplit(request["request"]["url"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    # The title and the link travel with the times.
    assert "Mixité sociale" in (query.get("text") or query.get("subject") or "")
    assert query["location"] == "https://zoom.us/j/00000000000"
    keys = ("dates", "ctz") if "dates" in query else ("startdt", "enddt")
    return {k: query[k] for k in keys}
