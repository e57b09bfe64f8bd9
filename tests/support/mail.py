"""Composed mails as tests read them: parts, texts, sample registrants, PNG sizes."""

from __future__ import annotations

import struct
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from reminder.core.model import Lead, Registrant
from reminder.core.plan import Slot
from reminder.service.snapshot import Snapshot

HOSTILE = [
    "Jean\r\nBcc: victim@example.com",
    'Marie "la boss" Curie',
    "Dupont, Jean",
    "<script>alert('x')</script>",
    "É" * 200,
    "Zoé\u202e\u2028Bcc: spoof@example.com",
]


def slot_of(snapshot: Snapshot, day: str, lead: str) -> Slot:
    session = next(s for s in snapshot.sessions if s.id == day)
    chosen = Lead.parse(lead)
    return Slot(session, chosen, chosen.before(session.start))


def parse(data: bytes) -> EmailMessage:
    return message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return part.get_content().replace("\r\n", "\n")  # type: ignore[no-any-return]


def compose(
    snapshot: Snapshot, registrant: Registrant, day: str = "2023-03-01", lead: str = "1d"
) -> tuple[EmailMessage, object]:
    slot = slot_of(snapshot, day, lead)
    composed = snapshot.composer.compose(slot, registrant, slot.due_at)
    return parse(composed.data), composed


ANNE = Registrant("anne.martin@example.org", "Anne", "Martin", "Maire", "Commune de Lens")
# Hyphenated words a registrant may type, longer than a phone screen is wide.
HYPHENATED = Registrant(
    "m-c.lefevre@example.org",
    "Marie-Christine",
    "Lefèvre-Cœurderoy-Saint-Aubin-de-la-Motte-Beuvron",
    "Vice-présidente",
    "Communauté d'agglomération Lens-Liévin",
)


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height
