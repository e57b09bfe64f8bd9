"""The sample mail as a person sees it: rendered by headless Chromium at phone and desktop width."""

import csv
import io
import itertools
import shutil
from pathlib import Path

import pytest

from reminder.cli import main
from reminder.core.model import Registrant
from reminder.mail.messages import Composer
from reminder.mail.mime import display_name
from tasks import render_screenshots  # the code behind `python3 tasks.py screenshots`
from tests.support.cdp import chromium
from tests.support.mail import HOSTILE, HYPHENATED, png_size
from tests.support.project import DATA, REPO, Project

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.chromium,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed"),
]


def test_the_sample_reminder_renders_at_phone_and_desktop_width(
    project: Project, tmp_path: Path
) -> None:
    assert (
        main(
            [
                "--config",
                str(project.config),
                "preview",
                "--session",
                "2023-03-01",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    html = tmp_path / "reminder-2023-03-01-7d.html"
    phone, desktop = render_screenshots(html, tmp_path, chromium=str(CHROMIUM))
    assert png_size(phone) == (390, 1700)
    assert png_size(desktop) == (1024, 1500)
    assert phone.stat().st_size > 20_000  # a rendered mail, not a blank page


def longest_in_corpus() -> dict[str, str]:
    """The longest first name, last name, role and organisation of every export the tests
    read, and of the names they compose for (the hyphenated ones make the next mail)."""
    columns = {
        "first_name": ("Prénom", "First name", "First Name"),
        "last_name": ("Nom", "Last name", "Last Name", "Nom de famille"),
        "role": ("Fonction", "Job title", "Job Title"),
        "organisation": ("Collectivité", "Organisation", "Organization", "Commune"),
    }
    found = dict.fromkeys(columns, "")
    files = [REPO / "registrants.csv", *DATA.rglob("*.csv")]
    for path in files:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
        if not text.strip():
            continue
        header = text.splitlines()[0]
        delimiter = max(",;\t", key=header.count)
        for row in csv.DictReader(io.StringIO(text), delimiter=delimiter):
            for field, names in columns.items():
                for name in names:
                    value = (row.get(name) or "").strip()
                    if len(value) > len(found[field]):
                        found[field] = value
    for name in HOSTILE:  # a display name of 200 letters and no space
        found["last_name"] = max(found["last_name"], display_name(name), key=len)
    return found


async def test_the_longest_names_and_topic_need_no_sideways_scroll_at_375_px(
    project: Project, tmp_path: Path
) -> None:
    longest = longest_in_corpus()
    assert len(longest["last_name"]) >= 60 and "-" in longest["organisation"]
    snapshot = project.snapshot()
    session = max(snapshot.sessions, key=lambda s: len(s.topic))
    slot = next(s for s in snapshot.slots if s.session == session)
    people = {
        "longest": Registrant("long.name@example.org", **longest),
        "hyphenated": HYPHENATED,
    }
    widths = {}
    async with chromium(tmp_path) as page:
        for (who, person), stencils in itertools.product(people.items(), (True, False)):
            # Filled from a stencil, and rendered in full: both must hold.
            composer = Composer(
                snapshot.config, snapshot.sessions, snapshot.templates, stencils=stencils
            )
            html = composer.compose(slot, person, slot.due_at).html
            assert person.last_name in html and session.topic.split()[-2] in html
            page_file = tmp_path / f"{who}-{'stencil' if stencils else 'full'}.html"
            page_file.write_text(html, encoding="utf-8")
            await page.goto(page_file.as_uri())
            shot = await page.screenshot(375, 812, mobile=True)
            page_file.with_suffix(".375px.png").write_bytes(shot)
            widths[page_file.stem] = await page.evaluate("document.documentElement.scrollWidth")
    assert set(widths.values()) == {375}, f"wider than a 375 px screen: {widths}"
