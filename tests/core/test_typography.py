"""French typography: the one function every mail, subject and calendar text goes through."""

from __future__ import annotations

import icalendar
import pytest

from reminder.core import typography
from reminder.core.typography import NBSP, french
from reminder.service.snapshot import Snapshot
from tests.support.mail import ANNE, HYPHENATED, compose, parse, text_of
from tests.support.project import Project


@pytest.fixture
def snapshot(project: Project) -> Snapshot:
    return project.snapshot()


@pytest.mark.parametrize(
    ("written", "typeset"),
    [
        ("Une question ?", f"Une question{NBSP}?"),
        ("Attention !", f"Attention{NBSP}!"),
        ("Bonjour!", f"Bonjour{NBSP}!"),
        ("Motif : grève ; report", f"Motif{NBSP}: grève{NBSP}; report"),
        ("« Mixité(s) sociale(s) ? »", f"«{NBSP}Mixité(s) sociale(s){NBSP}?{NBSP}»"),
        ("«Mixité»", f"«{NBSP}Mixité{NBSP}»"),
        ("L'actualité d'aujourd'hui", "L’actualité d’aujourd’hui"),
        ("Mixité scolaire (thème envisagé)", f"Mixité scolaire (thème{NBSP}envisagé)"),
        ("à Villeneuve-d'Ascq", "à Villeneuve-d’Ascq"),  # plain hyphens: U+002D
        ("Saint-Quentin-en-Yvelines", "Saint-Quentin-en-Yvelines"),
    ],
)
def test_french_rules(written: str, typeset: str) -> None:
    assert french(written) == typeset
    assert french(typeset) == typeset  # applying it twice changes nothing


@pytest.mark.parametrize(
    "kept",
    [
        "de 17:00 à 19:00",
        "https://zoom.us/j/123?pwd=a:b;c!d",
        "écrire à m.petit@irev.fr",
        "les contrats de ville 2024-2030",
        "mercredi 1er mars",
    ],
)
def test_times_links_and_addresses_are_left_alone(kept: str) -> None:
    assert french(kept) == kept


def test_html_keeps_tags_attributes_entities_and_styles() -> None:
    html = (
        "<style>a:hover { color: red; }</style>"
        '<p title="a : b">Qu&#39;en pensez-vous ? <a href="https://x.fr/?a=1">lien</a>'
        " &amp; Saint-Denis</p>"
    )
    assert french(html, html=True) == (
        "<style>a:hover { color: red; }</style>"
        f'<p title="a : b">Qu’en pensez-vous{NBSP}? <a href="https://x.fr/?a=1">lien</a>'
        ' &amp; <span style="white-space:nowrap">Saint-Denis</span></p>'
    )


def test_every_part_of_a_mail_is_typeset(snapshot: Snapshot) -> None:
    message, composed = compose(snapshot, ANNE, day="2023-04-05", lead="7d")
    calendar = icalendar.Calendar.from_ical(composed.ics)  # type: ignore[attr-defined]
    subject, text = str(message["Subject"]), text_of(message)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    for part in (subject, text, html):
        assert NBSP in part or "&nbsp;" in part
        assert " ?" not in part and " :" not in part.replace("https:", "")
    assert f"(thème{NBSP}envisagé)" in text
    assert "(thème&nbsp;envisagé)" in html or f"(thème{NBSP}envisagé)" in html
    march, _ = compose(snapshot, ANNE, day="2023-03-01", lead="7d")
    assert f"{NBSP}?{NBSP}»" in text_of(march)  # no phone width leaves "? »" on a line
    event = calendar.walk("VEVENT")[0]
    assert f"{NBSP}?" in str(event["SUMMARY"])


def test_lines_common_to_every_mail_are_typeset_once_with_the_same_result() -> None:
    text = "Bonjour Anne :\n: en début de ligne\n« Villeneuve-d'Ascq » (thème envisagé) !"
    assert french(text) == (
        "Bonjour Anne\u00a0:\n\u00a0: en début de ligne\n"
        "«\u00a0Villeneuve-d\u2019Ascq\u00a0» (thème\u00a0envisagé)\u00a0!"
    )
    before = typography._segment.cache_info().hits
    french(text.replace("Anne", "Luc"))
    # Only the line naming the reader is new: the other two come from the cache.
    assert typography._segment.cache_info().hits - before == 2


@pytest.mark.parametrize("stencils", [True, False], ids=["stencil", "rendered in full"])
def test_hyphens_are_plain_in_text_and_breakable_in_what_a_registrant_typed(
    snapshot: Snapshot, stencils: bool
) -> None:
    from reminder.mail.messages import Composer

    composer = Composer(snapshot.config, snapshot.sessions, snapshot.templates, stencils=stencils)
    slot = next(s for s in snapshot.slots if s.session.id == "2023-03-01")
    message = parse(composer.compose(slot, HYPHENATED, slot.due_at).data)
    text, subject = text_of(message), str(message["Subject"])
    assert "\u2011" not in text + subject  # copy, paste and search find "Hauts-de-France"
    assert "Hauts-de-France" in text and HYPHENATED.last_name in text
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "\u2011" not in html
    # The organizer's name, written by staff, stays on one line; nothing the registrant
    # typed is kept from breaking at its hyphens.
    assert '<span style="white-space:nowrap">Hauts-de-France</span>' in html
    for typed in (HYPHENATED.first_name, HYPHENATED.last_name):
        assert typed in html
        assert f'nowrap">{typed}' not in html and f'nowrap">{typed}' not in html
