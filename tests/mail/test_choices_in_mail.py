"""What a reminder offers its registrant besides joining: decline this session, the page of
their sessions, and one-click entries for web calendars; the notices a choice causes."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from reminder.core.mailing import MailKind
from reminder.core.notices import sample_notice
from reminder.core.unsubscribe import token
from reminder.mail.calendar_links import MAX_DETAILS, WebEvent, google_link, outlook_link
from tests.support.http import CYCLE, SECRET, one_click
from tests.support.mail import ANNE, compose, parse, slot_of, text_of
from tests.support.project import Project
from tests.support.worker import PARIS

LINK = f"https://rappels.irev.fr/m/{token(SECRET, CYCLE, ANNE.email)}"


def links(html: str) -> dict[str, str]:
    """Each link's text -> its address, as a reader's click opens it."""
    return {
        text.strip(): href.replace("&amp;", "&")
        for href, text in re.findall(r'<a [^>]*href="([^"]*)"[^>]*>([^<]*)</a>', html)
    }


def test_a_reminder_offers_to_decline_its_session_and_the_page_of_one_s_sessions(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_click(project, monkeypatch)
    message, composed = compose(project.snapshot(), ANNE)
    found = links(composed.html)
    assert found["Je ne pourrai pas assister à cette séance"] == f"{LINK}/2023-03-01"
    assert found["Vos séances"] == LINK
    # Beside the join button, and in the text part for text-only readers.
    html = composed.html
    assert html.index("Rejoindre la séance") < html.index("Je ne pourrai pas assister")
    text = text_of(message)
    assert f"{LINK}/2023-03-01" in text and f"Vos séances\xa0: {LINK}" in text
    assert ANNE.email not in LINK  # the link names no address


def test_without_the_service_s_public_address_no_choice_link_is_offered(project: Project) -> None:
    _, composed = compose(project.snapshot(), ANNE)
    assert "Je ne pourrai pas assister" not in composed.html
    assert "Vos séances" not in composed.html and "/m/" not in composed.text


def test_web_calendar_links_carry_the_session_s_title_times_link_and_description(
    project: Project,
) -> None:
    _, composed = compose(project.snapshot(), ANNE)
    found = links(composed.html)
    google = urlsplit(found["Ajouter à Google Agenda"])
    outlook = urlsplit(found["Ajouter à Outlook.com"])
    assert (google.scheme, google.netloc, google.path) == (
        "https",
        "calendar.google.com",
        "/calendar/render",
    )
    g = {k: v[0] for k, v in parse_qs(google.query).items()}
    o = {k: v[0] for k, v in parse_qs(outlook.query).items()}
    # 17:00-19:00 in Paris on March 1st, 2023 is 16:00-18:00 UTC, written with its Z.
    assert g["dates"] == "20230301T160000Z/20230301T180000Z"
    assert g["ctz"] == "Europe/Paris" and g["action"] == "TEMPLATE"
    assert (o["startdt"], o["enddt"]) == ("2023-03-01T16:00:00Z", "2023-03-01T18:00:00Z")
    assert (o["rru"], o["path"]) == ("addevent", "/calendar/action/compose")
    topic = "Mixité sociale dans l'habitat : quels enjeux, quelles perspectives ?"
    assert g["text"] == o["subject"] == topic
    assert g["location"] == o["location"] == "https://zoom.us/j/00000000000"
    assert g["details"] == o["body"]
    assert g["details"].endswith("Rejoindre : https://zoom.us/j/00000000000")
    assert "Échanges entre élus" in g["details"]
    assert "+" not in outlook.query  # spaces as %20: Outlook.com shows a "+" as it is


def test_a_summer_session_and_a_long_description_in_a_web_calendar_link() -> None:
    start = datetime(2023, 6, 7, 17, tzinfo=PARIS)  # +02:00
    event = WebEvent(
        "Séance", start, start + timedelta(hours=2), "x" * 5000, "Zoom", "Europe/Paris"
    )
    query = parse_qs(urlsplit(google_link(event)).query)
    assert query["dates"] == ["20230607T150000Z/20230607T170000Z"]
    assert len(query["details"][0]) == MAX_DETAILS
    assert len(outlook_link(event)) < 2000
    assert start.astimezone(UTC).hour == 15


def test_the_cancellation_a_decline_causes_says_it_is_their_choice_and_how_to_undo_it(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_click(project, monkeypatch)
    snapshot = project.snapshot()
    session = slot_of(snapshot, "2023-03-01", "1d").session
    now = datetime(2023, 2, 25, 10, tzinfo=PARIS)
    notice = sample_notice(session, ANNE, MailKind.CANCELLATION, "https://zoom.us/j/1", None, now)
    composed = snapshot.composer.compose_notice(replace(notice, declined=True), now)
    message = parse(composed.data)
    assert composed.subject == "Séance du mercredi 1er mars retirée de votre agenda"
    text = text_of(message)
    assert "C’est noté\xa0: vous ne pourrez pas assister à la séance du cycle" in text
    assert "du mercredi 1er mars 2023, de 17h00 à 19h00" in text
    assert links(composed.html)["Je viendrai finalement"] == f"{LINK}/2023-03-01"
    assert "METHOD:CANCEL" in composed.ics.decode()
    assert "STATUS:CANCELLED" not in composed.ics.decode()  # withdrawn for them alone
    update = sample_notice(session, ANNE, MailKind.UPDATE, "https://zoom.us/j/1", None, now)
    back = snapshot.composer.compose_notice(replace(update, came_back=True), now)
    assert back.subject.startswith("De nouveau dans votre agenda")
    assert "vous êtes de nouveau attendu(e)" in back.text
    assert "METHOD:REQUEST" in back.ics.decode()
