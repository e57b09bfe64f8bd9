"""The reminder mail: French wording, headers, the calendar entry, hostile names, templates."""

import time
from datetime import UTC, datetime
from email.header import decode_header, make_header
from zoneinfo import ZoneInfo

import icalendar
import pytest
import vobject

from reminder.core.errors import TemplateError
from reminder.core.model import Lead, Registrant
from reminder.core.notices import sample_notice
from reminder.core.wording import date_at_time, lead_words, long_date, relative_day, time_of_day
from reminder.service.snapshot import Snapshot, load_snapshot
from tests.support.mail import ANNE, HOSTILE, compose, text_of
from tests.support.project import Project

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def snapshot(project: Project) -> Snapshot:
    return project.snapshot()


def test_french_dates_and_times_whatever_the_server_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        start = datetime(2023, 3, 1, 17, tzinfo=PARIS)
        assert long_date(start, "fr") == "mercredi 1er mars 2023"
        assert long_date(datetime(2023, 4, 5, 17, tzinfo=PARIS), "fr") == "mercredi 5 avril 2023"
        assert time_of_day(start, "fr") == "17h00"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize(
    ("lead", "words"),
    [
        ("7d", "dans 7 jours"),
        ("1d", "demain"),
        ("1h", "dans une heure"),
        ("30m", "dans 30 minutes"),
        ("1w", "dans une semaine"),
        ("2d", "après-demain"),
        ("45s", "dans 45 secondes"),
    ],
)
def test_lead_times_in_french_words(lead: str, words: str) -> None:
    assert lead_words(Lead.parse(lead), "fr") == words


def test_a_moved_session_is_dated_in_the_reader_s_language() -> None:
    moment = datetime(2023, 3, 1, 17, tzinfo=PARIS)
    assert date_at_time(moment, "fr") == "mercredi 1er mars 2023 à 17h00"
    assert date_at_time(moment, "en") == "Wednesday, March 1, 2023, 5:00\u202fPM"


def test_relative_day_follows_the_real_send_time() -> None:
    start = datetime(2023, 3, 1, 17, tzinfo=PARIS)
    assert relative_day(datetime(2023, 2, 28, 17, tzinfo=PARIS), start, "fr") == "demain"
    # The 1d reminder sent late, the morning of the session, must not say "demain".
    assert relative_day(datetime(2023, 3, 1, 9, tzinfo=PARIS), start, "fr") == "aujourd'hui"
    assert relative_day(datetime(2023, 3, 1, 16, tzinfo=PARIS), start, "fr") == "dans une heure"
    assert relative_day(datetime(2023, 2, 22, 17, tzinfo=PARIS), start, "fr") == (
        "dans une semaine"
    )
    assert relative_day(datetime(2023, 3, 1, 15, 45, tzinfo=UTC), start, "fr") == (
        "dans 15 minutes"
    )


def test_the_mail_reads_well_in_french(snapshot: Snapshot) -> None:
    message, _ = compose(snapshot, ANNE)
    assert message["Subject"] == (
        "Rappel – mercredi 1er mars à 17h00\u00a0: Mixité sociale dans "
        "l’habitat\u00a0: quels enjeux, quelles perspectives\u00a0?"
    )
    text = text_of(message)
    assert text.startswith("Bonjour Anne Martin,\n")
    assert "a lieu demain, mercredi 1er mars 2023, de 17h00 à 19h00." in text
    assert "Mercredi 1er mars 2023, 17h00 – 19h00 (heure\u00a0de\u00a0Paris)" in text
    assert "https://zoom.us/j/00000000000" in text
    assert "Intervention\u00a0: Christophe Noyé, géographe, Cf. Géo" in text
    assert "En partenariat avec l’École du renouvellement urbain" in text
    assert "- L’actualité de la future contractualisation" in text
    assert "mercredi 5 avril 2023, 17h00\u00a0: Mixité scolaire" in text
    assert "(thème\u00a0envisagé)" in text
    assert "Morgane Petit, Directrice" in text
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert 'href="https://zoom.us/j/00000000000"' in html
    assert "<style" not in html and 'style="' in html  # CSS inlined for Outlook and Gmail


def test_the_one_hour_variant_says_so(snapshot: Snapshot) -> None:
    message, _ = compose(snapshot, ANNE, lead="1h")
    assert message["Subject"].startswith("Dans une heure, à 17h00\u00a0: Mixité sociale")
    text = text_of(message)
    assert "C’est dans une heure\u00a0: la séance du cycle" in text


def test_a_personal_join_link_wins(snapshot: Snapshot) -> None:
    personal = Registrant("s@example.org", "Sam", "Hamdani", join_url="https://zoom.us/w/1?tk=s")
    message, composed = compose(snapshot, personal)
    text = text_of(message)
    assert "https://zoom.us/w/1?tk=s" in text and "zoom.us/j/00000000000" not in text
    event = icalendar.Calendar.from_ical(composed.ics).walk("VEVENT")[0]  # type: ignore[attr-defined]
    assert str(event["LOCATION"]) == "https://zoom.us/w/1?tk=s"


def test_headers(snapshot: Snapshot) -> None:
    message, composed = compose(snapshot, ANNE)
    assert message["From"].addresses[0].display_name == "IREV – Cycle élus"
    assert message["From"].addresses[0].addr_spec == "contact@irev.fr"
    assert str(message["To"]) == "Anne Martin <anne.martin@example.org>"
    assert message["Reply-To"].addresses[0].addr_spec == "m.petit@irev.fr"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Content-Language"] == "fr"
    assert message["Date"].datetime == datetime(2023, 2, 28, 17, tzinfo=PARIS)
    assert message["List-Unsubscribe"].startswith("<mailto:contact@irev.fr?subject=")
    assert message["List-Unsubscribe-Post"] is None
    assert message["Message-ID"].endswith("@irev.fr>")
    assert all(len(line) <= 78 for line in composed.data.split(b"\r\n")[:20])


@pytest.mark.parametrize("kind", ["reminder", "update", "cancellation"])
def test_the_date_header_is_in_the_cycle_s_zone_whatever_the_clock(
    snapshot: Snapshot, kind: str
) -> None:
    """The worker's clock is UTC, simulate's the cycle's: every mail says the cycle's."""
    session = next(s for s in snapshot.sessions if s.id == "2023-04-05")
    composer = snapshot.composer
    for now in (datetime(2023, 3, 1, 8, 30, tzinfo=UTC), datetime(2023, 3, 1, 9, 30, tzinfo=PARIS)):
        if kind == "reminder":
            slot = next(s for s in snapshot.slots if s.session == session)
            data = composer.compose(slot, ANNE, now).data
        else:
            notice = sample_notice(session, ANNE, kind, "https://zoom.us/j/1", None, now)
            data = composer.compose_notice(notice, now).data
        date = data.split(b"\r\nDate: ")[1].split(b"\r\n")[0].decode()
        assert date == "Wed, 01 Mar 2023 09:30:00 +0100"


def test_one_click_unsubscribe_when_a_url_is_configured(project: Project) -> None:
    project.edit(
        'unsubscribe_mailto = "contact@irev.fr"',
        'unsubscribe_mailto = "contact@irev.fr"'
        '\nunsubscribe_url = "https://www.irev.fr/desinscription?email={email}"',
    )
    message, _ = compose(project.snapshot(), ANNE)
    assert message["List-Unsubscribe"] == (
        "<https://www.irev.fr/desinscription?email=anne.martin%40example.org>, "
        "<mailto:contact@irev.fr?subject=D%C3%A9sinscription>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_message_id_is_the_same_for_a_resend_and_differs_per_delivery(snapshot: Snapshot) -> None:
    first, _ = compose(snapshot, ANNE)
    again, _ = compose(snapshot, ANNE)
    other_lead, _ = compose(snapshot, ANNE, lead="7d")
    other_person, _ = compose(snapshot, Registrant("luc@example.org"))
    assert first["Message-ID"] == again["Message-ID"]
    assert len({first["Message-ID"], other_lead["Message-ID"], other_person["Message-ID"]}) == 3
    assert "anne" not in first["Message-ID"]  # no address leaks into a header others relay


def test_the_calendar_entry(snapshot: Snapshot) -> None:
    _, march = compose(snapshot, ANNE)
    _, april = compose(snapshot, ANNE, day="2023-04-05", lead="7d")
    _, march_again = compose(snapshot, Registrant("luc@example.org"), lead="1h")
    calendar = icalendar.Calendar.from_ical(march.ics)  # type: ignore[attr-defined]
    assert str(calendar["METHOD"]) == "REQUEST"
    assert calendar.walk("VTIMEZONE")[0]["TZID"] == "Europe/Paris"
    event = calendar.walk("VEVENT")[0]
    assert event.decoded("DTSTART").astimezone(UTC) == datetime(2023, 3, 1, 16, tzinfo=UTC)
    assert event.decoded("DTEND").astimezone(UTC) == datetime(2023, 3, 1, 18, tzinfo=UTC)
    # The organizer is the mail's From; the registrant the one attendee, no reply asked.
    assert str(event["ORGANIZER"]) == "mailto:contact@irev.fr"
    assert event["ORGANIZER"].params["CN"] == "IREV – Cycle élus"
    assert str(event["ATTENDEE"]) == "mailto:anne.martin@example.org"
    assert event["ATTENDEE"].params["RSVP"] == "FALSE"
    assert str(event["SUMMARY"]).startswith("Mixité sociale dans l’habitat\u00a0:")
    assert "Rejoindre\u00a0: https://zoom.us/j/00000000000" in str(event["DESCRIPTION"])
    assert event["SEQUENCE"] == 0 and "DTSTAMP" in event and event["STATUS"] == "CONFIRMED"
    assert event.walk("VALARM")[0]["TRIGGER"].dt.total_seconds() == -15 * 60
    april_event = icalendar.Calendar.from_ical(april.ics).walk("VEVENT")[0]  # type: ignore[attr-defined]
    assert april_event.decoded("DTSTART").astimezone(UTC) == datetime(2023, 4, 5, 15, tzinfo=UTC)
    same = icalendar.Calendar.from_ical(march_again.ics).walk("VEVENT")[0]  # type: ignore[attr-defined]
    assert same["UID"] == event["UID"] != april_event["UID"]
    assert str(same["ATTENDEE"]) == "mailto:luc@example.org"


def test_a_long_or_unusual_address_is_a_folded_valid_attendee(snapshot: Snapshot) -> None:
    address = "jean/dupont%cycle+" + "x" * 40 + "@" + "sous-domaine." * 5 + "example.org"
    _, composed = compose(snapshot, Registrant(address))
    assert all(len(line) <= 75 for line in composed.ics.split(b"\r\n"))  # type: ignore[attr-defined]
    event = icalendar.Calendar.from_ical(composed.ics).walk("VEVENT")[0]  # type: ignore[attr-defined]
    assert str(event["ATTENDEE"]) == f"mailto:{address.replace('%', '%25').replace('/', '%2F')}"
    assert vobject.readOne(composed.ics.decode()).vevent.attendee.value.endswith("example.org")  # type: ignore[attr-defined]


def test_staff_may_publish_instead_of_invite(project: Project) -> None:
    project.edit('calendar_method = "request"', 'calendar_method = "publish"')
    message, composed = compose(project.snapshot(), ANNE)
    calendar = icalendar.Calendar.from_ical(composed.ics)  # type: ignore[attr-defined]
    assert str(calendar["METHOD"]) == "PUBLISH"
    assert "ATTENDEE" not in calendar.walk("VEVENT")[0]  # RFC 5546 3.2.1
    methods = {p.get_param("method") for p in message.walk() if p.get_content_maintype() == "text"}
    assert methods == {None, "PUBLISH"}


def test_the_calendar_is_inline_and_attached_with_matching_method(snapshot: Snapshot) -> None:
    message, composed = compose(snapshot, ANNE)
    parts = [
        (p.get_content_type(), p.get_param("method"), p.get_filename()) for p in message.walk()
    ]
    assert parts == [
        ("multipart/mixed", None, None),
        ("multipart/alternative", None, None),
        ("text/plain", None, None),
        ("text/html", None, None),
        ("text/calendar", "REQUEST", None),
        ("text/calendar", "REQUEST", "seance-2023-03-01.ics"),
    ]
    # Both carry this registrant's calendar, byte for byte.
    calendars = [p.get_payload(decode=True) for p in message.walk() if p.get_param("method")]
    assert calendars == [composed.ics, composed.ics]  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_name_breaks_no_header_and_injects_no_html(snapshot: Snapshot, name: str) -> None:
    registrant = Registrant("target@example.org", first_name=name, last_name="X")
    message, composed = compose(snapshot, registrant)
    [to] = message["To"].addresses
    assert to.addr_spec == "target@example.org"
    # RFC 2047 6.2: white space between encoded words is not part of the name (Python's
    # address parser keeps it; make_header follows the RFC, as mail clients do).
    raw = composed.data.split(b"\r\n\r\n")[0].decode()  # type: ignore[attr-defined]
    to_line = raw.split("\r\nTo: ")[1].split("\r\nDate:")[0].split("\r\nReply-To:")[0]
    shown = str(make_header(decode_header(to_line.replace("\r\n", ""))))
    assert len(shown.rpartition(" <")[0].strip('"')) <= 64
    assert "\u202e" not in shown and "\u2028" not in shown  # no bidi spoofing, one line
    assert message["Bcc"] is None and message["Cc"] is None
    assert b"\r\nBcc" not in composed.data.split(b"\r\n\r\n")[0]  # type: ignore[attr-defined]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in html
    if "<script>" in name:
        assert "&lt;script&gt;" in html


def test_template_syntax_error_is_reported_with_file_and_line(project: Project) -> None:
    path = project.root / "templates" / "reminder.txt"
    path.write_text(path.read_text() + "\n{% if session.topic %}unclosed\n")
    with pytest.raises(TemplateError) as caught:
        project.snapshot()
    [problem] = caught.value.problems
    assert problem.source.endswith("reminder.txt") and "syntax error" in problem.message
    assert problem.line == len(path.read_text().splitlines())


def test_unknown_variable_is_reported(project: Project) -> None:
    path = project.root / "templates" / "reminder.subject.txt"
    path.write_text("Rappel {{ sesion.date }}\n")
    with pytest.raises(TemplateError, match="unknown variable 'sesion'") as caught:
        project.snapshot()
    assert caught.value.problems[0].line == 1


def test_a_failing_sample_render_is_caught_before_sending(project: Project) -> None:
    path = project.root / "templates" / "reminder.html"
    lines = path.read_text().splitlines()
    lines[20] += "{{ session.topik }}"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TemplateError) as caught:
        project.snapshot()
    [problem] = caught.value.problems
    assert problem.source.endswith("reminder.html") and problem.line == 21
    assert "topik" in problem.message


def test_the_sandbox_refuses_python_internals(project: Project) -> None:
    path = project.root / "templates" / "reminder.subject.txt"
    path.write_text("{{ cycle.__class__.__mro__ }}\n")
    with pytest.raises(TemplateError, match="unsafe"):
        project.snapshot()


def test_a_missing_template_is_reported(project: Project) -> None:
    (project.root / "templates" / "reminder.html").unlink()
    with pytest.raises(TemplateError, match="the html template of the reminder mail is missing"):
        project.snapshot()


def test_an_oversized_template_is_refused(project: Project) -> None:
    (project.root / "templates" / "reminder.txt").write_text("x" * 300_000)
    with pytest.raises(TemplateError, match="larger than 256 KiB"):
        project.snapshot()


def test_a_draft_topic_is_marked_envisaged(snapshot: Snapshot) -> None:
    message, _ = compose(snapshot, ANNE, day="2023-04-05", lead="7d")
    text = text_of(message)
    assert (
        "Mixité scolaire\u00a0: quels enjeux, quelles perspectives\u00a0? (thème\u00a0envisagé)"
        in text
    )


def test_loaded_sample_snapshot_is_usable(project: Project) -> None:
    assert load_snapshot(project.config).composer is not None


def test_a_registrant_language_without_templates_falls_back_to_the_cycle(project: Project) -> None:
    english = Registrant("en@example.org", "Ann", "Lee", language="en")
    message, _ = compose(project.snapshot(), english)
    assert message["Content-Language"] == "fr"
    assert "mercredi 1er mars 2023" in text_of(message)
    folder = project.root / "templates" / "en"
    folder.mkdir()
    (folder / "reminder.subject.txt").write_text("Reminder: {{ session.date }}\n")
    message, _ = compose(project.snapshot(), english)
    assert message["Content-Language"] == "en"
    assert message["Subject"] == "Reminder: Wednesday, March 1, 2023"


def test_a_cancellation_withdraws_the_entry_for_one_or_for_all(project: Project) -> None:
    """Called off: CANCEL with STATUS:CANCELLED. Only this registrant taken off a session
    that still takes place: CANCEL naming them, without STATUS (RFC 5546 3.2.5)."""
    snapshot = project.snapshot()
    march = next(s for s in snapshot.sessions if s.id == "2023-03-01")
    now = datetime(2023, 2, 20, 9, tzinfo=PARIS)
    notice = sample_notice(march, ANNE, "cancellation", "https://zoom.us/j/1", None, now)
    alone = icalendar.Calendar.from_ical(snapshot.composer.compose_notice(notice, now).ics)
    project.edit("date = 2023-03-01\n", "date = 2023-03-01\ncancelled = true\n")
    snapshot = project.snapshot()
    march = next(s for s in snapshot.sessions if s.id == "2023-03-01")
    notice = sample_notice(march, ANNE, "cancellation", "https://zoom.us/j/1", None, now)
    everyone = icalendar.Calendar.from_ical(snapshot.composer.compose_notice(notice, now).ics)
    for calendar in (alone, everyone):
        event = calendar.walk("VEVENT")[0]
        assert str(calendar["METHOD"]) == "CANCEL" and event["SEQUENCE"] == 1
        assert str(event["ORGANIZER"]) == "mailto:contact@irev.fr"
        assert str(event["ATTENDEE"]) == "mailto:anne.martin@example.org"
        assert not calendar.walk("VALARM")
    assert "STATUS" not in alone.walk("VEVENT")[0]
    assert everyone.walk("VEVENT")[0]["STATUS"] == "CANCELLED"
