"""What a permanent refusal means: a mailbox that does not exist, a policy, or something else."""

from __future__ import annotations

import re
from enum import StrEnum

# RFC 3463 enhanced status codes: class.subject.detail, e.g. 5.1.1.
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_BASIC = re.compile(r"^\s*([245]\d\d)\b")
# RFC 3463: 5.1.1 bad destination mailbox address; RFC 7505/3463 update 5.1.10: the
# recipient's domain publishes a null MX, so the address cannot exist either.
_NO_MAILBOX_CODES = {(1, 1), (1, 10)}
# Servers without enhanced codes say it in words (Exchange, Postfix, qmail, French hosts).
_NO_MAILBOX_WORDS = re.compile(
    r"user unknown|unknown user|no such (?:user|mailbox|recipient|address)"
    r"|unknown (?:recipient|mailbox|address)|(?:invalid|bad) (?:recipient|mailbox)"
    r"|(?:mailbox|user|account|address|recipient)(?: \S+)? (?:does not|doesn't) exist"
    r"|n'existe pas|destinataire inconnu|utilisateur inconnu|adresse inconnue",
    re.IGNORECASE,
)


class Refusal(StrEnum):
    NO_MAILBOX = "no-mailbox"  # the address does not exist: stop mailing it
    POLICY = "policy"  # 5.7.x: spam filter, authentication, relaying; the address is fine
    OTHER = "other"  # full mailbox, message too big, anything else


def enhanced_code(text: str) -> tuple[int, int, int] | None:
    found = _ENHANCED.search(text)
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


def classify(reply: str) -> Refusal:
    """Classify a permanent failure (an SMTP 5yz reply, or a DSN's status and diagnostic).

    The enhanced status code decides when there is one (RFC 3463); otherwise a 5yz basic
    code with the words servers use for an unknown user. A reply that is not a permanent
    failure at all is OTHER.
    """
    code = enhanced_code(reply)
    if code is not None:
        if code[0] != 5:
            return Refusal.OTHER
        if code[1:] in _NO_MAILBOX_CODES:
            return Refusal.NO_MAILBOX
        return Refusal.POLICY if code[1] == 7 else Refusal.OTHER
    basic = _BASIC.match(reply)
    if basic is not None and not basic[1].startswith("5"):
        return Refusal.OTHER
    if basic is not None and basic[1] in ("550", "551", "553") and _NO_MAILBOX_WORDS.search(reply):
        return Refusal.NO_MAILBOX
    if basic is None and _NO_MAILBOX_WORDS.search(reply):
        return Refusal.NO_MAILBOX  # a bounce report's human text, without any code
    return Refusal.OTHER
