"""The HTTP face in Debian's real Chromium: the staff page's counts, the unsubscribe button."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import time_machine

from tests.support.cdp import CHROMIUM, chromium
from tests.support.http import SEVEN_DAYS_BEFORE, one_click, serving, staff, unsubscribe_link
from tests.support.mail import png_size
from tests.support.project import Project, person, until
from tests.support.smtp import Server
from tests.support.worker import PARIS, use_server

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
            assert worker.ledger.suppressed_addresses() == frozenset()  # showing is not asking
            save(shots, "unsubscribe-phone.png", await page.screenshot(*PHONE, mobile=True))
            # Its stylesheet comes from under /u/, the one prefix the proxy publishes.
            colour = "getComputedStyle(document.querySelector('#unsubscribe')).backgroundColor"
            assert await page.evaluate(colour) == "rgb(31, 78, 153)"
            await page.click("#unsubscribe")
            text = await page.evaluate("document.body.innerText")
            assert "C’est fait" in text
            assert worker.ledger.suppressed_addresses() == {"alex2@example.org"}
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
