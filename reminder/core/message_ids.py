"""Our Message-IDs, written and read here only: one per delivery, carrying a mark.

`<cycle.YYYYMMDD.kind.lead.MARK@domain>`: the session's day, kind and lead let the
ledger find the delivery among millions, and MARK, a mark (core.marks) of the delivery
under the service's Message-ID key, makes the Message-ID of someone else's mail
impossible to work out. A bounce report quoting one proves that its sender saw that
mail, which the ledger recorded sending to one address. Earlier releases wrote a plain
digest of the delivery in MARK's place (20 hexadecimal digits): anyone could compute
those, so they prove nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .mailing import DeliveryKey
from .marks import Spelling, sign

PURPOSE = "message-id"
# 96 bits: each guess costs a forger a report mailed to us, so finding one by trial is
# out of reach; and the Message-ID of a reminder still fits a folded header line.
MARK_BYTES = 12
_FORM = re.compile(
    r"<(?P<cycle>[a-z0-9][a-z0-9-]*)\.(?P<day>\d{8})\.(?P<kind>\w+)\.(?P<lead>\w+)\."
    rf"(?:(?P<mark>[0-9a-f]{{{2 * MARK_BYTES}}})|(?P<digest>[0-9a-f]{{20}}))"
    r"@(?P<domain>[^<>\s@]+)>"
)


@dataclass(frozen=True)
class OurMessageId:
    """What a Message-ID in our form says of its delivery."""

    cycle: str
    day: str  # the session's day, 2023-03-01
    kind: str
    lead: str
    marked: bool  # False: the unmarked form of earlier releases, which proves nothing


def message_id(key: bytes, delivery: DeliveryKey, cycle: str, domain: str) -> str:
    """The Message-ID of one delivery: the same for the same key, so that receivers
    recognise a resend; the ledger keeps the first one a delivery was claimed with."""
    mark = sign(key, PURPOSE, cycle, *delivery.stored, spelling=Spelling.HEX, size=MARK_BYTES)
    day = delivery.appointment[:10].replace("-", "")
    return f"<{cycle}.{day}.{delivery.kind}.{delivery.step}.{mark}@{domain}>"


def parse(text: str) -> OurMessageId | None:
    """The delivery facts of a Message-ID in our form (marked or not), None otherwise."""
    found = _FORM.fullmatch(text.strip())
    if found is None:
        return None
    day = found["day"]
    return OurMessageId(
        found["cycle"],
        f"{day[:4]}-{day[4:6]}-{day[6:]}",
        found["kind"],
        found["lead"],
        marked=found["mark"] is not None,
    )
