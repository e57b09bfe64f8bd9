"""Stencils: a reminder rendered once per shape, with holes for what differs per registrant.

In a batch, every registrant of a session gets the same mail but for a few words: their
name, role, organisation and address, and their own links (unsubscribe, decline this
session, their sessions' page). Rendering the
templates, setting French typography and inlining the CSS for each of them is most of
the cost of a message. A stencil does that work once, with a marker in place of each of
those values, and then fills the holes of each registrant's copy.

A copy filled from a stencil must read, character for character, as the mail the
templates would have rendered (its quoted-printable bodies are encoded in pieces, the
fixed ones once: only where their lines are cut differs). That holds when the
templates only print the values, and the values are plain words; a stencil is used
only then:

- while the stencil is rendered, each value is a `_Hole`, which notes anything a
  template does with it other than printing it or testing that it is not empty
  (`|upper`, `|length`, a comparison...): a template that does is rendered per mail;
- every marker must stand between spaces, line ends, commas, quotes or tags, and not
  on a line or between tags that holds a parenthesis: the only places where French
  typography treats a value the same alone as in its sentence;
- a value is filled only when it is plain (`_PLAIN`: words joined by single spaces,
  hyphens or apostrophes; addresses and links of the usual characters);
- before its first use, a stencil is checked against full renderings of the first
  registrant and of probes with hyphens, apostrophes and accents: a stencil that
  differs for any of them is never used.

Anything else (a registrant with their own join link, a change notice, a value that is
not plain) is rendered in full, as before.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from markupsafe import escape

from ..core.model import Registrant
from ..core.typography import breakable
from . import quoted

# What the templates may print of a registrant, and the links signed for them: the
# unsubscribe link, the session's decline link, the page of their sessions.
FIELDS = (
    "first_name",
    "last_name",
    "name",
    "role",
    "organisation",
    "email",
    "url",
    "decline_url",
    "sessions_url",
)
LINKS = FIELDS[6:]
_LETTERS = "abcdefghi"
MARK = "QzqX"  # letters only: typography and the CSS inliner leave it as it is
_MARKER = re.compile(MARK + f"([{_LETTERS}])" + MARK)
_WORDS = re.compile(r"\w+(?:[ '’-]\w+)*")
_ADDRESS = re.compile(r"[A-Za-z0-9._+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_LINK = re.compile(r"(?:https?://|mailto:)[A-Za-z0-9._~:/?#\[\]@!$%()*+,;=-]+")
# What may stand beside a value: where typography treats it as it treats the marker.
_BESIDE = frozenset(' \t\r\n,"<>')
_PROBES = (
    {"first_name": "Jean-Pierre", "last_name": "D'Arcy", "role": "Maire-adjointe"},
    {"first_name": "Zoé", "last_name": "Lefèvre-Cœurderoy", "organisation": "Ville d'Évry"},
)

Parts = tuple[str, str, str]  # subject, text, html
Piece = str | tuple[int, bool]  # a literal, or (field, inside a tag)


def plain(field: str, value: str) -> bool:
    if field == "email":
        return _ADDRESS.fullmatch(value) is not None
    if field in LINKS:
        return _LINK.fullmatch(value) is not None and "&" not in value
    return _WORDS.fullmatch(value) is not None


def marker(index: int) -> str:
    return f"{MARK}{_LETTERS[index]}{MARK}"


class _Hole(str):
    """A value standing in a template; it notes any use other than printing it."""

    touched: bool

    def __bool__(self) -> bool:  # `if registrant.name`: only present values are holes
        return True

    def __str__(self) -> str:
        return str.__str__(self)


def _noting(name: str) -> Callable[..., Any]:
    method = getattr(str, name)

    def noted(self: _Hole, *args: Any, **kwargs: Any) -> Any:
        _Hole.touched = True
        return method(str.__str__(self), *args, **kwargs)

    return noted


for _name in [n for n in dir(str) if not n.startswith("_")] + [
    "__len__",
    "__getitem__",
    "__iter__",
    "__contains__",
    "__eq__",
    "__ne__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__add__",
    "__mul__",
    "__rmul__",
    "__mod__",
    "__format__",
    "__repr__",
]:
    setattr(_Hole, _name, _noting(_name))
_Hole.__hash__ = str.__hash__  # type: ignore[method-assign]
_Hole.touched = False


@dataclass(frozen=True, slots=True)
class Filled:
    """A registrant's parts, and their text and HTML bodies in quoted-printable."""

    parts: Parts
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class Stencil:
    """The three rendered parts, cut at their holes; the two bodies, encoded but there."""

    subject: tuple[Piece, ...]
    text: tuple[Piece, ...]
    html: tuple[Piece, ...]
    text_quoted: tuple[Piece, ...]
    html_quoted: tuple[Piece, ...]

    @classmethod
    def of(cls, parts: Parts) -> Stencil:
        subject, text, html = (_pieces(part, html=n == 2) for n, part in enumerate(parts))
        return cls(subject, text, html, _quoted_pieces(text), _quoted_pieces(html))

    def fill(self, values: tuple[str, ...], typeset: Callable[..., str]) -> Filled:
        """The parts for one registrant's `values` (in FIELDS order)."""
        # Typography changes a plain value only at an apostrophe or a hyphen.
        words = [v if "'" not in v and "-" not in v else typeset(v) for v in values]
        html = [v if "'" not in v and "-" not in v else _html(v, typeset) for v in values]
        # In an attribute, the CSS inliner writes a plain value back as it was.
        tags = list(values)
        return Filled(
            (
                _joined(self.subject, words, words),
                _joined(self.text, words, words),
                _joined(self.html, html, tags),
            ),
            quoted.joined(_joined_quoted(self.text_quoted, words, words)),
            quoted.joined(_joined_quoted(self.html_quoted, html, tags)),
        )


def _html(value: str, typeset: Callable[..., str]) -> str:
    """A value as the HTML shows it: escaped, typeset, never kept on one line."""
    escaped = str(escape(value))
    return breakable(typeset(escaped, html=True), (escaped,))


def _joined(pieces: tuple[Piece, ...], text: list[str], tags: list[str]) -> str:
    return "".join(
        piece if isinstance(piece, str) else (tags if piece[1] else text)[piece[0]]
        for piece in pieces
    )


def _joined_quoted(pieces: tuple[Piece, ...], text: list[str], tags: list[str]) -> list[str]:
    return [
        piece if isinstance(piece, str) else quoted.piece((tags if piece[1] else text)[piece[0]])
        for piece in pieces
    ]


def _quoted_pieces(pieces: tuple[Piece, ...]) -> tuple[Piece, ...]:
    """The fixed pieces, encoded once."""
    return tuple(quoted.piece(p) if isinstance(p, str) else p for p in pieces)


class Stencils:
    """The stencils of a composer, by shape; None for a shape that must be rendered in full.

    `render(context)` gives the finished parts (typography set, CSS inlined) for a
    context; `context(registrant)` the context of a registrant for the shape at hand.
    """

    LIMIT = 256

    def __init__(self) -> None:
        self._by_shape: dict[Hashable, Stencil | None] = {}

    def parts(
        self,
        shape: Hashable,
        registrant: Registrant,
        links: tuple[str, str, str],
        context: Callable[[Registrant], dict[str, Any]],
        render: Callable[[dict[str, Any]], Parts],
        typeset: Callable[..., str],
    ) -> Filled | None:
        """The parts for `registrant` from the stencil of `shape`, or None when they
        must be rendered in full. `links`: the registrant's (in LINKS order)."""
        values = _values(registrant, links)
        if not all(plain(field, v) for field, v in zip(FIELDS, values, strict=True) if v):
            return None
        present = tuple(bool(v) for v in values)
        key = (shape, present)
        if key not in self._by_shape:
            if len(self._by_shape) >= self.LIMIT:
                self._by_shape.clear()
            self._by_shape[key] = _made(registrant, links, present, context, render, typeset)
        stencil = self._by_shape[key]
        return None if stencil is None else stencil.fill(values, typeset)


def _values(registrant: Registrant, links: tuple[str, str, str]) -> tuple[str, ...]:
    return (
        registrant.first_name,
        registrant.last_name,
        registrant.name,
        registrant.role,
        registrant.organisation,
        registrant.email,
        *links,
    )


class _UnfitError(Exception):
    """The rendered parts hold a marker where a value would not read the same."""


def _refuse() -> NoReturn:
    raise _UnfitError


def _made(
    registrant: Registrant,
    links: tuple[str, str, str],
    present: tuple[bool, ...],
    context: Callable[[Registrant], dict[str, Any]],
    render: Callable[[dict[str, Any]], Parts],
    typeset: Callable[..., str],
) -> Stencil | None:
    _Hole.touched = False
    try:
        parts = render(_marked(context(registrant), present))
        if _Hole.touched:  # a template did more with a value than print it
            return None
        stencil = Stencil.of(parts)
    except Exception:  # a template that fails on markers (or on a probe): render in full
        return None
    finally:
        _Hole.touched = False
    # The proof: the first registrant and the probes, filled, as rendered in full.
    for probe in (registrant, *_probes(registrant)):
        values = _values(probe, links)
        if not all(plain(f, v) for f, v in zip(FIELDS, values, strict=True) if v):
            continue
        try:
            rendered = render(context(probe))
        except Exception:
            return None
        filled = stencil.fill(values, typeset)
        if filled.parts != rendered or not _reads_as(filled, rendered):
            return None
    return stencil


def _reads_as(filled: Filled, parts: Parts) -> bool:
    """The bodies from pieces decode as the whole parts encoded at once."""
    return all(
        binascii.a2b_qp(body) == binascii.a2b_qp(quoted.quoted(part))
        for body, part in ((filled.text, parts[1]), (filled.html, parts[2]))
    )


def _marked(context: dict[str, Any], present: tuple[bool, ...]) -> dict[str, Any]:
    holes = {
        field: _Hole(marker(index)) if present[index] else "" for index, field in enumerate(FIELDS)
    }
    url, decline, sessions = (holes.pop(link) for link in LINKS)
    return {
        **context,
        "registrant": holes,
        "unsubscribe": {**context["unsubscribe"], "url": url},
        "choices": {**context["choices"], "decline_url": decline, "sessions_url": sessions},
    }


def _pieces(part: str, *, html: bool) -> tuple[Piece, ...]:
    pieces: list[Piece] = []
    position = 0
    tags = [m.span() for m in re.finditer(r"<[^>]*>", part)] if html else []
    for match in _MARKER.finditer(part):
        start, end = match.span()
        before = part[start - 1] if start else " "
        after = part[end] if end < len(part) else " "
        inside = any(a < start and end <= b for a, b in tags)
        if before not in _BESIDE or after not in _BESIDE:
            _refuse()
        if not inside and any(mark in _stretch(part, start, end, html) for mark in "()"):
            _refuse()
        pieces.append(part[position:start])
        pieces.append((_LETTERS.index(match.group(1)), inside))
        position = end
    pieces.append(part[position:])
    return tuple(p for p in pieces if p != "")


def _stretch(part: str, start: int, end: int, html: bool) -> str:
    """The run of text a marker stands in: its line (in HTML, between tags too)."""
    ends = "\n<" if html else "\n"
    left = max(part.rfind(c, 0, start) for c in ends.replace("<", ">"))
    right = min((i for i in (part.find(c, end) for c in ends) if i >= 0), default=len(part))
    return part[left + 1 : right]


def _probes(registrant: Registrant) -> list[Registrant]:
    """The registrant with other plain values in the same fields."""
    found = []
    for probe in _PROBES:
        changes: dict[str, Any] = {
            field: value
            for field, value in probe.items()
            if getattr(registrant, field)  # a present field stays present
        }
        if changes:
            found.append(replace(registrant, **changes))
    return found
