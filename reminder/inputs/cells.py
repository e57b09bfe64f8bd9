"""An export's cells as values: addresses, session dates, instants and tidy texts, each
distinct cell read once."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, tzinfo
from functools import cached_property
from operator import is_not

from ..core.model import Session
from ..core.timestamps import parse_timestamp
from .addresses import EmailNotValidError, validate_email
from .columns import fold, plain

ALL_SESSIONS = {"", "toutes", "tous", "toutes les seances", "all", "*"}
# Words that make the dates after them the sessions someone will miss ("toutes sauf le
# 05/04"): read as dates, they would be the only sessions that person is mailed about.
_EXCEPT = frozenset({"sauf", "excepte", "exceptee", "hormis", "except", "excepting", "excluding"})
_MONTHS = [
    "janvier",
    "fevrier",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "aout",
    "septembre",
    "octobre",
    "novembre",
    "decembre",
]
_DATE = re.compile(
    r"(?P<iso>\d{4}-\d{2}-\d{2})"
    r"|(?P<d>\d{1,2})/(?P<m>\d{1,2})(?:/(?P<y>\d{2,4}))?"
    rf"|(?P<fd>\d{{1,2}})(?:er)?\s+(?P<fm>{'|'.join(_MONTHS)})(?:\s+(?P<fy>\d{{4}}))?"
)
# Distinct cell texts kept to share one string between rows (roles, towns, first names).
KEPT_TEXTS = 50_000
# Blocks of a column not looked up in the kept texts after a block that matched none.
_UNSHARED_BLOCKS = 15
# The shape nearly every address has; anything else gets email-validator's full verdict.
_PLAIN_LOCAL_PART = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_PLAIN_ADDRESS = re.compile(
    rf"^{_PLAIN_LOCAL_PART}"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})$"
)
# Once a domain is known good (it matched above), a new address on it needs only this.
PLAIN_LOCAL = re.compile(_PLAIN_LOCAL_PART)
# A column of addresses, one a line: the domain of each line that is a plain address.
_PLAIN_ON_DOMAIN = re.compile(rf"^{_PLAIN_LOCAL_PART}@([^@\n]*)$", re.MULTILINE)


class Cells:
    """Reads cells into values, and remembers what it read: the domains whose addresses
    were validated, the sessions each distinct cell names, the texts already tidied."""

    def __init__(self, sessions: Sequence[Session], zone: tzinfo) -> None:
        self.sessions = sessions
        self.zone = zone  # of an instant written without an offset
        self.session_days: dict[date, str] = {}
        for session in sessions:
            self.session_days[date.fromisoformat(session.id)] = session.id
            self.session_days.setdefault(session.start.date(), session.id)
        self.good_domains: set[str] = set()
        # The sessions each distinct cell names (or why it names none): read once each.
        self.session_cells: dict[str, frozenset[str] | str | None] = {}
        # Distinct texts, tidied, up to KEPT_TEXTS of them (see tidy).
        self.texts: dict[str, str] = {}
        # Columns whose last block shared no text: blocks left before looking again.
        self.unshared: dict[str, int] = {}

    def tidy(self, text: str) -> str:
        """The cell on one line, runs of spaces collapsed: a name never carries a newline.

        Kept for the next rows while there is room: repeated texts (roles, towns, first
        names) are one string, not one per row.
        """
        # Any space but the ASCII one is unprintable: without those, nothing to collapse.
        found = text if " " not in text and text.isprintable() else " ".join(text.split())
        if len(self.texts) < KEPT_TEXTS:
            self.texts[text] = found
        return found

    def kept(self, cells: Sequence[str], column: str = "") -> Sequence[str]:
        """A column of cells tidied, each repeated text one string: as tidy would make
        them one by one, with a few calls for the column when no cell needs tidying.

        Once no more texts can be kept, a column whose cells matched none of them (a
        unique name or town on every row) is not looked up for the next blocks: the
        same texts, only not shared, for a lookup less per cell.
        """
        texts = self.texts
        together = "\n".join(cells)
        if (
            "".join(cells).isprintable()
            and "  " not in together
            and " \n" not in together
            and "\n " not in together
            and not together.startswith(" ")
            and not together.endswith(" ")
        ):
            # Each cell is its own tidy text.
            if len(texts) + len(cells) <= KEPT_TEXTS:
                return list(map(texts.setdefault, cells, cells))
            if self.unshared.get(column, 0) > 0:
                self.unshared[column] -= 1
                return cells
            shared = list(map(texts.get, cells, cells))
            if column and not any(map(is_not, shared, cells)):
                self.unshared[column] = _UNSHARED_BLOCKS
            return shared
        return [texts.get(text) or self.tidy(text) for text in cells]

    def all_plain(self, emails: Sequence[str]) -> bool:
        """Whether every cell is a plain address on a domain already validated, read as
        it stands (nothing to trim, nothing to check beyond its shape)."""
        together = "\n".join(emails)
        if together.count("\n") != len(emails) - 1:
            return False  # a cell on several lines
        domains = _PLAIN_ON_DOMAIN.findall(together)
        return len(domains) == len(emails) and self.good_domains.issuperset(domains)

    def address(self, text: str) -> tuple[str | None, str]:
        """The canonical address a cell gives, or None and what is wrong with it."""
        if not text:
            return None, "no e-mail address; skipped"
        text = text.strip("<>").strip()
        plain = _PLAIN_ADDRESS.match(text)
        if plain and plain.group(1).lower() in self.good_domains:
            local, _, domain = text.rpartition("@")
            return f"{local}@{domain.lower()}", ""
        try:
            result = validate_email(text, check_deliverability=False, allow_smtputf8=False)
        except EmailNotValidError as exc:
            return None, f"{text!r} is not a valid e-mail address ({exc}); skipped"
        if plain:
            self.good_domains.add(plain.group(1).lower())
        return str(result.ascii_email or result.normalized), ""

    def sessions_named(self, text: str) -> frozenset[str] | str | None:
        """The session ids a cell names (None: every session), or why it names none."""
        try:
            return self.session_cells[text]
        except KeyError:  # exports repeat a handful of session cells: each read once
            found = self.session_cells[text] = self._parse_sessions(" ".join(text.split()))
            return found

    def _parse_sessions(self, text: str) -> frozenset[str] | str | None:
        folded = fold(text)
        if folded in ALL_SESSIONS:
            return None
        if _EXCEPT.intersection(folded.split()):
            return (
                f"{text!r} excepts sessions: list the sessions they "
                f"attend instead (sessions: {self.listed})"
            )
        ids: set[str] = set()
        unknown: list[str] = []
        for match in _DATE.finditer(plain(text)):
            day = self._date(match)
            if day is not None and day in self.session_days:
                ids.add(self.session_days[day])
            else:
                unknown.append(match.group(0))
        if unknown or not ids:
            what = (
                f"{', '.join(unknown)} is not a session of the cycle"
                if unknown
                else (f"no session date found in {text!r}")
            )
            return f"{what} (sessions: {self.listed}; empty or 'toutes' means all)"
        return frozenset(ids)

    @cached_property
    def listed(self) -> str:
        """The cycle's sessions as staff write them, for messages."""
        return ", ".join(f"{date.fromisoformat(s.id):%d/%m/%Y}" for s in self.sessions)

    def named_days(self, text: str) -> list[tuple[str, str | None]]:
        """Each calendar date the text names, as written, with the session on that day
        (None when there is none): "Mercredi 1er mars 2023" -> [("1er mars 2023", id)]."""
        found: list[tuple[str, str | None]] = []
        for match in _DATE.finditer(plain(text)):
            day = self._date(match)
            if day is not None:
                found.append((match.group(0), self.session_days.get(day)))
            elif match.group("y") is None and match.group("fy") is None and _on_calendar(match):
                found.append((match.group(0), None))  # a day and month of no session
        return found

    def _date(self, match: re.Match[str]) -> date | None:
        try:
            if match.group("iso"):
                return date.fromisoformat(match.group("iso"))
            day, month, year = _day_month_year(match)
            if year is None:
                # "1er mars": the cycle's session on that day and month, whatever the year.
                return next(
                    (d for d in self.session_days if (d.day, d.month) == (day, month)), None
                )
            full_year = int(year) + 2000 if len(year) == 2 else int(year)
            return date(full_year, month, day)
        except ValueError:
            return None

    def instant(self, text: str) -> tuple[datetime | None, bool]:
        """The instant a cell gives (None when blank), and False when it gives none."""
        try:  # the commonest form, tried before tidying the cell: unique, not worth keeping
            written = datetime.fromisoformat(text)
            # combine: as replace(tzinfo=...) would, in a seventh of its time (Python 3.11)
            return (
                written
                if written.tzinfo
                else datetime.combine(written.date(), written.time(), self.zone)
            ), True
        except ValueError:
            text = " ".join(text.split())
        if not text:
            return None, True
        found = parse_timestamp(text, self.zone)
        return found, found is not None


def _day_month_year(match: re.Match[str]) -> tuple[int, int, str | None]:
    if match.group("d"):
        return int(match.group("d")), int(match.group("m")), match.group("y")
    return int(match.group("fd")), _MONTHS.index(match.group("fm")) + 1, match.group("fy")


def _on_calendar(match: re.Match[str]) -> bool:
    """Whether a day and month written without a year exist (29 February included)."""
    if match.group("iso"):
        return False
    day, month, _ = _day_month_year(match)
    try:
        date(2024, month, day)
    except ValueError:
        return False
    return True
