"""French typography for everything a registrant reads: one function for text, one for HTML."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

NBSP = "\u00a0"  # U+00A0: every mail client's fonts have it (U+202F is missing from some)
APOSTROPHE = "\u2019"
# In HTML a hyphenated place name is kept on one line by a span; in text it keeps its
# plain hyphens (U+002D): a non-breaking hyphen (U+2011) breaks copy, paste and search.
NOWRAP = '<span style="white-space:nowrap">{}</span>'
_NOWRAP = re.compile(r'<span style="white-space:nowrap">([^<]*)</span>')

# Left alone: links, addresses, and (in HTML) entities, which contain ";" and "#".
_KEEP = re.compile(r"(?:https?://|mailto:|www\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+|&#?\w+;")
_SPACE_BEFORE = re.compile(r"[ \t\u202f\u00a0]*([:;!?»])")
_AFTER_OPENING = re.compile(r"«[ \t\u202f\u00a0]*")
_APOSTROPHE = re.compile(r"(?<=\w)'(?=\w)|(?<=\w)&#39;(?=\w)|(?<=\w)&#x27;(?=\w)")
_PARENTHESIS = re.compile(r"\(([^()\n]{1,30})\)")
_COMPOUND = re.compile(r"\b[A-ZÀ-Ý][\w’]*(?:-[\w’]+)+")


def french(text: str, *, html: bool = False) -> str:
    """Non-breaking spaces before : ; ! ? » and after «, typographic apostrophes, no line
    break inside a short parenthesis ("(thème envisagé)"), and in HTML none inside a
    hyphenated place name ("Villeneuve-d’Ascq"). Idempotent on text. With `html`, tags
    and entities are kept.
    """
    if not html:
        # No rule reaches across a line break, so each line is typeset on its own, with
        # the break before it (what precedes a mark matters): in a batch, nearly every
        # line is the same in every mail and is typeset once.
        first, *rest = text.split("\n")
        return _segment(first, False) + "".join(_segment("\n" + line, False) for line in rest)
    parts = _TAGS.split(text)
    return "".join(part if index % 2 else _segment(part, True) for index, part in enumerate(parts))


_TAGS = re.compile(r"(<style\b.*?</style>|<[^>]*>)", flags=re.DOTALL | re.IGNORECASE)


@lru_cache(maxsize=4096)  # the text between two tags or line breaks recurs in every mail
def _segment(text: str, html: bool) -> str:
    text = _APOSTROPHE.sub(APOSTROPHE, text)
    out: list[str] = []
    position = 0
    for match in _KEEP.finditer(text):
        out.append(_prose(text[position : match.start()], html=html))
        out.append(match.group())
        position = match.end()
    out.append(_prose(text[position:], html=html))
    return "".join(out)


def _prose(text: str, *, html: bool) -> str:
    if not text:
        return text

    def before(match: re.Match[str]) -> str:
        mark = match.group(1)
        start = match.start()
        if mark == ":" and (start == 0 or text[start - 1].isdigit()) and match.group() == ":":
            return mark  # 17:00, and a colon glued to a number, stay as they are
        if match.group() == mark and mark in ":;" and start > 0 and not text[start - 1].isspace():
            return mark  # "a:b" in running text is not French punctuation: leave it
        return NBSP + mark

    text = _SPACE_BEFORE.sub(before, text)
    text = _AFTER_OPENING.sub("«" + NBSP, text)
    text = _PARENTHESIS.sub(lambda m: "(" + m.group(1).replace(" ", NBSP) + ")", text)
    if html:
        return _COMPOUND.sub(lambda m: NOWRAP.format(m.group()), text)
    return text


def breakable(html: str, typed: Iterable[str]) -> str:
    """`html` where no compound of `typed` is kept on one line: what a registrant typed
    (escaped, as it stands in the HTML) may be as long as they like, and a phone screen
    must break it at its hyphens."""
    for value in typed:
        for inner in _NOWRAP.findall(french(value, html=True)):
            html = html.replace(NOWRAP.format(inner), inner)
    return html
