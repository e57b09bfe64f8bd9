"""A message as it travels after SMTP's DATA command (RFC 5321 4.5.2)."""

from __future__ import annotations

import re

_LINE_ENDING = re.compile(rb"\r\n|\r|\n")


def wired(data: bytes) -> bytes:
    """The message as it goes after DATA: CRLF lines, leading dots doubled, the final dot.

    Composed messages already have CRLF endings; counting them is much cheaper than
    the regular expressions aiosmtplib runs over every message.
    """
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        data = _LINE_ENDING.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    data = data.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    return data + b".\r\n"
