"""A real calendar client applies the entry in place: Debian's Thunderbird adds it from the
reminder, moves it on the update, removes it on the cancellation, one entry throughout."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from email import message_from_bytes, policy
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from reminder.service.simulate import simulate
from tests.support.project import Project
from tests.support.smtp import Server
from tests.support.thunderbird import THUNDERBIRD, thunderbird, wait_for

PARIS = ZoneInfo("Europe/Paris")
UID = "2023-03-01.irev-elus-2023@irev.fr"
WHO = "evelyne.dubois@example.org"
pytestmark = [
    pytest.mark.thunderbird,
    pytest.mark.skipif(THUNDERBIRD is None, reason="Debian's thunderbird is not installed"),
    pytest.mark.timeout(120),
]


def mails_to(folder: Path, address: str) -> list[bytes]:
    """What `simulate` sent `address`, oldest first."""
    found = [p.read_bytes() for p in folder.glob("*.eml")]
    mine = [data for data in found if f"<{address}>".encode() in data.split(b"\r\n\r\n")[0]]
    return sorted(
        mine, key=lambda data: message_from_bytes(data, policy=policy.default)["Date"].datetime
    )


def test_thunderbird_adds_the_entry_once_moves_it_then_removes_it(
    project: Project, smtp_server: Server, tmp_path: Path
) -> None:
    # The mails the worker sends one registrant: the 7-day reminder on 22 February; staff
    # move the session to 8 March on the 23rd (an update), then call it off on the 25th.
    text = project.config.read_text(encoding="utf-8")
    moved, called_off = project.root / "moved.toml", project.root / "called-off.toml"
    move = "date = 2023-03-01\nmoved_to = 2023-03-08\n"
    moved.write_text(text.replace("date = 2023-03-01\n", move, 1), encoding="utf-8")
    called_off.write_text(
        text.replace("date = 2023-03-01\n", move + "cancelled = true\n", 1), encoding="utf-8"
    )
    result = asyncio.run(
        simulate(
            project.config,
            start=date(2023, 2, 20),
            end=date(2023, 2, 27),
            folder=tmp_path / "simulation",
            edits=[
                (datetime(2023, 2, 23, 10, tzinfo=PARIS), moved),
                (datetime(2023, 2, 25, 10, tzinfo=PARIS), called_off),
            ],
        )
    )
    mails = mails_to(result.messages, WHO)
    subjects = [str(message_from_bytes(m, policy=policy.default)["Subject"]) for m in mails]
    assert [s.split(" – ")[0] for s in subjects] == ["Rappel", "Modification", "Annulé"]

    shots = tmp_path / "thunderbird"
    shots.mkdir()
    held = []
    with thunderbird(tmp_path) as client:
        client.prepare(WHO, smtp_server.port)
        client.show_calendar(date(2023, 3, 1))
        client.screenshot(shots / "0-calendar-before.png")
        client.show_mail()
        steps = zip(
            mails,
            [
                ("reminder", "imipAcceptButton"),
                ("update", "imipAcceptButton"),
                ("cancellation", "imipDeleteButton"),
            ],
            strict=True,
        )
        bars = []
        for number, (mail, (kind, button)) in enumerate(steps, start=1):
            bars.append(client.open_mail(mail))
            client.screenshot(shots / f"{number}-{kind}-mail.png")
            client.press(button)
            held.append(client.events())
            client.show_calendar(date(2023, 3, 1))
            client.screenshot(shots / f"{number}-{kind}-calendar-after.png")
            client.show_mail()
        # Accepting mails the organizer (the From address) a REPLY, RSVP=FALSE or not: once,
        # for the invitation; the update keeps the answer given.
        wait_for(lambda: bool(smtp_server.handler.messages), 20, "Thunderbird's REPLY")

    assert [b.label for b in bars] == [
        "This message contains an invitation to an event.",
        "This message contains an update to an existing event.",
        "This message contains an event cancellation.",
    ]
    # One entry, added, then moved in place (same UID, the new SEQUENCE), then gone.
    assert [[(e["uid"], e["start"], e["sequence"]) for e in events] for events in held] == [
        [(UID, "20230301T170000", 0)],
        [(UID, "20230308T170000", 1)],
        [],
    ]
    assert held[0][0]["organizer"] == "mailto:contact@irev.fr"  # the mails' From
    [reply] = smtp_server.handler.messages
    assert reply.recipients == ["contact@irev.fr"]
    assert b"METHOD:REPLY" in reply.data and b"PARTSTAT=ACCEPTED" in reply.data
