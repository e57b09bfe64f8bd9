"""A mail's MIME text: header values on one line, RFC 2047 encoded and folded at 78
columns, and parts whose bodies are already encoded.

The composer writes every message directly in this form: its shape never varies, and
the email package spends milliseconds re-folding headers that are already encoded.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime, timedelta
from email.utils import format_datetime, formataddr
from functools import lru_cache

MAX_DISPLAY_NAME = 64
LINE = 78  # RFC 5322 2.1.1: lines SHOULD stay within 78 characters
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_SPACES = re.compile(r"[ \t\n\r\f\v\x1c-\x1f\x85\u1680\u2000-\u200a\u3000]+")


def display_name(text: str) -> str:
    """A name safe for a header: no control or line-break characters, bounded length.

    Address() would raise on CR/LF, and Python 3.11.7 predates the fix that refuses
    them when serialising (CVE-2024-6923), so they are removed here.
    """
    cleaned = one_line(text)
    if len(cleaned) > MAX_DISPLAY_NAME:
        cleaned = cleaned[: MAX_DISPLAY_NAME - 1].rstrip() + "…"
    return cleaned


@lru_cache(maxsize=256)
def subject_value(subject: str) -> str:
    """The Subject header's value: a batch's mails share a few subjects."""
    return encoded(one_line(subject), len("Subject: "))


def date_value(now: datetime) -> str:
    """The Date header's value, to the second: formatted once for a second's mails."""
    # The offset in the key: instants that are equal in other zones are written apart.
    return _date_of(now.replace(microsecond=0), now.utcoffset())


@lru_cache(maxsize=16)
def _date_of(now: datetime, offset: timedelta | None) -> str:
    return format_datetime(now)


def part(content_type: str, body: str, encoding: str, disposition: str = "") -> str:
    """A MIME part of a `body` already encoded by `encoding`, its lines joined by CRLF."""
    shown = f"Content-Disposition: {disposition}\r\n" if disposition else ""
    return (
        f"Content-Type: {content_type}\r\n{shown}"
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n{body}"
    )


B64_LINE = 57  # input bytes of one 76-character base64 line


def calendar_body(head: bytes, ics: bytes) -> str:
    """A registrant's calendar `ics` in base64. Its lines that the `head` every attendee
    of the session shares fills are encoded once; the rest, a few lines, per mail."""
    shared = len(head) // B64_LINE * B64_LINE
    return "\r\n".join(filter(None, (_shared_lines(head[:shared]), _base64_lines(ics[shared:]))))


@lru_cache(maxsize=512)
def _shared_lines(data: bytes) -> str:
    """Cached: the head's lines are the same in every mail about a session and version."""
    return _base64_lines(data)


def _base64_lines(data: bytes) -> str:
    # As base64.encodebytes cuts it (76 characters a line), in one pass over the body.
    whole = base64.b64encode(data).decode("ascii")
    return "\r\n".join([whole[at : at + 76] for at in range(0, len(whole), 76)])


def one_line(text: str) -> str:
    """A header value on one line, whatever a template, a topic or a name put in it:
    control characters, line and paragraph separators and bidirectional overrides
    become spaces, and runs of spaces one."""
    # Only breaking spaces collapse: the non-breaking ones of French typography stay.
    return _SPACES.sub(" ", _UNSAFE.sub(" ", text)).strip(" ")


def encoded(value: str, used: int = 0) -> str:
    """A header value folded to 78 columns, as RFC 2047 "B" encoded words if not ASCII.

    `used` is what already stands on the first line ("Subject: "). An encoded word
    takes 12 + 4 * ceil(bytes / 3) characters; words are cut between characters.
    """
    if value.isascii():
        return _fold_words(value.split(" "), used)
    data = value.encode()
    words: list[bytes] = []
    room = 3 * ((LINE - 1 - 12 - used) // 4)
    while data:
        cut = min(room, len(data))
        while cut < len(data) and data[cut] & 0xC0 == 0x80:
            cut -= 1  # never split a character: back off its continuation bytes
        words.append(data[:cut])
        data, room = data[cut:], 3 * ((LINE - 1 - 12) // 4)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(word).decode()}?=" for word in words)


def _fold_words(words: list[str], used: int) -> str:
    """Join words with spaces, folding before a word that would pass 78 columns."""
    lines = [""]
    width = used
    for word in words:
        if lines[-1] and width + 1 + len(word) > LINE:
            lines.append(word)
            width = 1 + len(word)
        else:
            lines[-1] = f"{lines[-1]} {word}" if lines[-1] else word
            width += len(word) + (1 if width > used else 0)
    return "\r\n ".join(lines)


def mailbox(name: str, address: str, used: int) -> str:
    """An address header's value, `name <address>`: the name quoted when ASCII, else
    encoded words, folded before the `<` when the line would pass 78 columns."""
    phrase = (
        formataddr((name, address)).rpartition(" <")[0] if name.isascii() else encoded(name, used)
    )
    if not name:
        return address
    last = phrase.rpartition("\n")[2]
    width = len(last) + (used if "\n" not in phrase else 0)
    joint = "\r\n " if width + 2 + len(address) + 1 > LINE else " "
    return f"{phrase}{joint}<{address}>"
