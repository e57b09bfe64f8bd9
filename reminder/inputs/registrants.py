"""The registration export: reading it, validating every row, and who attends which session."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import date, datetime
from itertools import chain, islice
from pathlib import Path
from zoneinfo import ZoneInfo

from ..core.errors import Problem, RegistrantsError
from ..core.model import Registrant, Roster, Session
from ..core.timestamps import parse_timestamp
from .addresses import EmailNotValidError, validate_email
from .columns import (
    HEADER_SEARCH_ROWS,
    SAMPLE_ROWS,
    Mapping,
    assign,
    describe,
    find_header,
    fold,
    plain,
)
from .config import Config, RegistrantsFormat
from .tables import Table, collection_paused, read_table

ALL_SESSIONS = {"", "toutes", "tous", "toutes les seances", "all", "*"}
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
# The fields a row may fill besides the address, as Registrant names them.
_ATTRIBUTES = (
    "first_name",
    "last_name",
    "role",
    "organisation",
    "sessions",
    "join_url",
    "language",
    "registered_at",
)
# Distinct cell texts kept to share one string between rows (roles, towns, first names).
_KEPT_TEXTS = 50_000
# The shape nearly every address has; anything else gets email-validator's full verdict.
_PLAIN_LOCAL_PART = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_PLAIN_ADDRESS = re.compile(
    rf"^{_PLAIN_LOCAL_PART}"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})$"
)
# Once a domain is known good (it matched above), a new address on it needs only this.
_PLAIN_LOCAL = re.compile(_PLAIN_LOCAL_PART)


def masked(email: str) -> str:
    """m***@irev.fr: enough to recognise someone in a log, not enough to harvest."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


# An address as servers quote it in a reply: "<sophie.martin@example.fr>: User unknown".
_QUOTED_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")


def redacted(text: str) -> str:
    """A server's reply with every address in it masked, as the recipient's own is."""
    return _QUOTED_ADDRESS.sub(lambda found: masked(found.group()), text)


def load_roster(config: Config, sessions: Sequence[Session]) -> Roster:
    """Read the export and the suppression list; bad rows become problems, not failures.

    A missing or empty export is a warning, not an error: before the form has any answer
    the plan and the checks still work, and the service serves nobody until it appears.
    """
    path = config.paths.registrants
    options = config.registrants
    suppressed = load_suppression(config.paths.suppression)
    with collection_paused():
        found = read_table(
            path, encoding=options.encoding, delimiter=options.delimiter, sheet=options.sheet
        )
        reader = _Reader(found, options, sessions, config.zone) if found else None
        registrants = reader.rows() if reader else {}
    if found is None or reader is None:
        return Roster(
            str(path),
            (),
            (
                Problem(
                    str(path),
                    "no registrants yet: the export is missing or empty; nobody is mailed "
                    "until the form's answers are exported there (paths.registrants)",
                    severity="warning",
                ),
            ),
        )
    gone = tuple(sorted(key for key in suppressed if key in registrants))
    for key in gone:
        del registrants[key]
    kept = tuple(registrants.values())
    return Roster(str(path), kept, tuple(reader.problems), gone, reader.mapping, keyed=registrants)


def load_suppression(path: Path) -> frozenset[str]:
    """One address per line, '#' starts a comment; case does not matter."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RegistrantsError(
            [
                Problem(
                    str(path),
                    "the suppression list does not exist: create it (it may be empty) "
                    "or fix paths.suppression; without it, people who asked to stop would be "
                    "mailed",
                )
            ]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistrantsError([Problem(str(path), f"cannot be read: {exc}")]) from None
    lines = (line.split("#", 1)[0].strip().casefold() for line in text.splitlines())
    return frozenset(line for line in lines if line)


class _SkipRow(Exception):  # noqa: N818 - control flow that never leaves _Reader
    """The row was reported and must not become a registrant."""


class _Reader:
    """Turns CSV rows into registrants, collecting a Problem for every row it skips."""

    def __init__(
        self,
        table: Table,
        options: RegistrantsFormat,
        sessions: Sequence[Session],
        zone: ZoneInfo,
    ) -> None:
        self.source = table.source
        self.table = table
        self.zone = zone
        self.options = options
        self.problems: list[Problem] = []
        self.sessions = sessions
        self.session_days: dict[date, str] = {}
        for session in sessions:
            self.session_days[date.fromisoformat(session.id)] = session.id
            self.session_days.setdefault(session.start.date(), session.id)
        self.good_domains: set[str] = set()
        self.header: list[str] = []
        self.mapping: Mapping | None = None

    def rows(self) -> dict[str, Registrant]:
        """The registrants by key, in the export's order."""
        stream = iter(self.table.rows)
        head = list(islice(stream, max(HEADER_SEARCH_ROWS, self.options.header_row or 0)))
        start = self._header_index(head, stream)
        header = head[start]
        assert isinstance(header, list)  # noqa: S101 - _header_index never picks a broken row
        self.header = header
        # The columns are judged on the first rows after the header, as many as assign reads.
        sample = head[start + 1 :]
        whole = sum(not isinstance(cells, str) for cells in sample)
        while whole < SAMPLE_ROWS and (cells := next(stream, None)) is not None:
            sample.append(cells)
            whole += not isinstance(cells, str)
        index = self._columns(header, sample, start + 1)
        return self._registrants(chain(sample, stream), start + 2, index)

    def _registrants(
        self, data: Iterable[list[str] | str], first_row: int, index: dict[str, int]
    ) -> dict[str, Registrant]:
        """Every row's registrant, merged by address.

        A million rows pass through here: the common row (a plain address on a domain
        already checked, a session cell already read) takes no call beyond the few it
        must, and repeated texts (roles, towns, names) are kept once.
        """
        header, delimiter = self.header, self.table.delimiter
        width = len(header)
        far = 1 << 62  # the position of a column the export lacks: past any row's end
        at = {attribute: index.get(attribute, far) for attribute in _ATTRIBUTES}
        email_at = index["email"]
        first_at, last_at, role_at = at["first_name"], at["last_name"], at["role"]
        organisation_at, sessions_at = at["organisation"], at["sessions"]
        url_at, language_at, registered_at = at["join_url"], at["language"], at["registered_at"]
        email_column = header[email_at]
        sessions_column = self._name(index, "sessions")
        registered_column = self._name(index, "registered_at")
        plain_local = _PLAIN_LOCAL.fullmatch
        good_domains = self.good_domains
        session_cells: dict[str, frozenset[str] | str | None] = {}
        texts: dict[str, str] = {}

        def tidy(text: str) -> str:
            # Each cell on one line, runs of spaces collapsed: a name never carries a newline.
            # Called for a text not kept yet (`kept` first), or one not worth keeping.
            # Any space but the ASCII one is unprintable: without those, nothing to collapse.
            found = text if " " not in text and text.isprintable() else " ".join(text.split())
            if len(texts) < _KEPT_TEXTS:
                texts[text] = found
            return found

        kept = texts.get  # a text seen before, without a call to tidy
        found: dict[str, Registrant] = {}
        for row, cells in enumerate(data, start=first_row):
            if type(cells) is str:
                self._problem(row, None, cells)
                continue
            count = len(cells)
            raw = cells[email_at] if email_at < count else ""
            # A plain address on a domain already validated: the local part is all to check.
            local, _, domain = raw.rpartition("@")
            known = domain in good_domains and plain_local(local) is not None
            if not known and not any(cell.strip() for cell in cells):
                continue
            if count > width and delimiter:
                self._problem(
                    row,
                    None,
                    f"has {count} cells where the header has "
                    f"{width} (a '{delimiter}' inside an unquoted cell?); skipped",
                )
                continue
            if known:
                email = raw
            else:
                checked = self._email(row, " ".join(raw.split()), email_column)
                if checked is None:
                    continue
                email = checked
            text = cells[sessions_at] if sessions_at < count else ""
            try:
                sessions = session_cells[text]
            except KeyError:  # exports repeat a handful of session cells: each read once
                sessions = session_cells[text] = self._parse_sessions(" ".join(text.split()))
            if isinstance(sessions, str):
                self._problem(row, sessions_column, sessions)
                continue
            join_url = tidy(cells[url_at]) if url_at < count else ""
            language = cells[language_at] if language_at < count else ""
            registered = cells[registered_at] if registered_at < count else ""
            # By position, the fields' order: keywords cost a fifth more at a million rows
            # (test_registrants pins the order).
            registrant = Registrant(
                email,
                (kept(cells[first_at]) or tidy(cells[first_at])) if first_at < count else "",
                (kept(cells[last_at]) or tidy(cells[last_at])) if last_at < count else "",
                (kept(cells[role_at]) or tidy(cells[role_at])) if role_at < count else "",
                (kept(cells[organisation_at]) or tidy(cells[organisation_at]))
                if organisation_at < count
                else "",
                self._join_url(row, join_url, index) if join_url else None,
                sessions,
                tidy(language).lower()[:2] or None if language else None,
                self._timestamp(row, registered, registered_column) if registered else None,
                row,
            )
            key = email.casefold()
            if key == email:
                key = email  # one string, not two, for the common lower-case address
            if (earlier := found.get(key)) is not None:
                self.problems.append(
                    Problem(
                        self.source,
                        f"row {row} repeats the address of row {earlier.row} "
                        f"({masked(email)}): one registrant, sessions merged",
                        row=row,
                        severity="warning",
                    )
                )
                found[key] = _merge(earlier, registrant)
            else:
                found[key] = registrant
        return found

    def _join_url(self, row: int, join_url: str, index: dict[str, int]) -> str | None:
        if re.fullmatch(r"https?://\S+", join_url):
            return join_url
        self._problem(
            row,
            self._name(index, "join_url"),
            f"{join_url!r} is not a web link; the session's link is used instead",
            severity="warning",
        )
        return None

    def _header_index(self, rows: list[list[str] | str], rest: Iterator[list[str] | str]) -> int:
        where = f"sheet {self.table.sheet!r}: " if self.table.sheet else ""
        if self.options.header_row is not None:
            index = self.options.header_row - 1
            if index >= len(rows) or isinstance(rows[index], str) or not any(rows[index]):
                raise RegistrantsError(
                    [
                        Problem(
                            self.source,
                            f"{where}registrants.header_row = {self.options.header_row} but "
                            "that row is empty or missing: give the row of the column headers",
                            row=self.options.header_row,
                        )
                    ]
                )
            return index
        found = find_header(rows, self.options.columns.email)
        if found is None:
            every = chain(rows, rest)
            first = next((r for r in every if not isinstance(r, str) and any(r)), [])
            raise RegistrantsError(
                [
                    Problem(
                        self.source,
                        f"{where}no e-mail column: the header has "
                        f"{', '.join(c for c in first if c) or 'nothing'}; name the e-mail "
                        "header in registrants.columns.email (looked for "
                        f"{', '.join(self.options.columns.email)}), or set "
                        "registrants.header_row",
                        row=1,
                    )
                ]
            )
        return found

    def _columns(
        self, header: list[str], data: Sequence[list[str] | str], header_row: int
    ) -> dict[str, int]:
        fields = list(self.options.columns)
        index, notes = assign(header, fields, data)
        if "email" not in index:
            raise RegistrantsError(
                [
                    Problem(
                        self.source,
                        f"no e-mail column: the header has {', '.join(header)}; name one "
                        "of them in registrants.columns.email (looked for "
                        f"{', '.join(self.options.columns.email)})",
                        row=header_row,
                    )
                ]
            )
        used = set(index.values())
        self.mapping = Mapping(
            header_row,
            describe(header, index, fields),
            tuple(h for c, h in enumerate(header) if c not in used and h.strip()),
            tuple(notes),
            self.table.sheet,
        )
        if "sessions" not in index and not self.options.all_sessions:
            self.problems.append(
                Problem(
                    self.source,
                    "no session column: EVERYONE ATTENDS EVERY SESSION. Name the column "
                    "in registrants.columns.sessions (looked for "
                    f"{', '.join(self.options.columns.sessions)}), or set "
                    "registrants.all_sessions = true if that is intended",
                    row=header_row,
                    severity="warning",
                )
            )
        return index

    def _name(self, index: dict[str, int], attribute: str) -> str:
        return self.header[index[attribute]] if attribute in index else attribute

    def _email(self, row: int, text: str, column: str) -> str | None:
        if not text:
            self._problem(row, column, "no e-mail address; skipped")
            return None
        text = text.strip("<>").strip()
        plain = _PLAIN_ADDRESS.match(text)
        if plain and plain.group(1).lower() in self.good_domains:
            local, _, domain = text.rpartition("@")
            return f"{local}@{domain.lower()}"
        try:
            result = validate_email(text, check_deliverability=False, allow_smtputf8=False)
        except EmailNotValidError as exc:
            self._problem(row, column, f"{text!r} is not a valid e-mail address ({exc}); skipped")
            return None
        if plain:
            self.good_domains.add(plain.group(1).lower())
        return str(result.ascii_email or result.normalized)

    def _parse_sessions(self, text: str) -> frozenset[str] | str | None:
        if fold(text) in ALL_SESSIONS:
            return None
        ids: set[str] = set()
        unknown: list[str] = []
        for match in _DATE.finditer(plain(text)):
            day = self._date(match)
            if day is not None and day in self.session_days:
                ids.add(self.session_days[day])
            else:
                unknown.append(match.group(0))
        if unknown or not ids:
            listed = ", ".join(f"{date.fromisoformat(s.id):%d/%m/%Y}" for s in self.sessions)
            what = (
                f"{', '.join(unknown)} is not a session of the cycle"
                if unknown
                else (f"no session date found in {text!r}")
            )
            return f"{what} (sessions: {listed}; empty or 'toutes' means all); skipped"
        return frozenset(ids)

    def _date(self, match: re.Match[str]) -> date | None:
        try:
            if match.group("iso"):
                return date.fromisoformat(match.group("iso"))
            if match.group("d"):
                day, month, year = int(match.group("d")), int(match.group("m")), match.group("y")
            else:
                day, month = int(match.group("fd")), _MONTHS.index(match.group("fm")) + 1
                year = match.group("fy")
            if year is None:
                # "1er mars": the cycle's session on that day and month, whatever the year.
                return next(
                    (d for d in self.session_days if (d.day, d.month) == (day, month)), None
                )
            full_year = int(year) + 2000 if len(year) == 2 else int(year)
            return date(full_year, month, day)
        except ValueError:
            return None

    def _timestamp(self, row: int, text: str, column: str) -> datetime | None:
        try:  # the commonest form, tried before tidying the cell: unique, not worth keeping
            written = datetime.fromisoformat(text)
            # combine: as replace(tzinfo=...) would, in a seventh of its time (Python 3.11)
            return (
                written
                if written.tzinfo
                else datetime.combine(written.date(), written.time(), self.zone)
            )
        except ValueError:
            text = " ".join(text.split())
        if not text:
            return None
        found = parse_timestamp(text, self.zone)
        if found is None:
            self._problem(
                row, column, f"{text!r} is not a date and time; ignored", severity="warning"
            )
        return found

    def _problem(
        self, row: int, column: str | None, message: str, severity: str = "warning"
    ) -> None:
        # A bad row is skipped and the others are served: a warning wherever it is shown
        # (check, the run log, the staff page), never an error that would stop sending.
        self.problems.append(Problem(self.source, message, row=row, key=column, severity=severity))


def _merge(first: Registrant, second: Registrant) -> Registrant:
    sessions = (
        None
        if first.sessions is None or second.sessions is None
        else (first.sessions | second.sessions)
    )
    filled = {
        name: getattr(second, name)
        for name in ("first_name", "last_name", "role", "organisation", "join_url", "language")
        if not getattr(first, name)
    }
    return replace(first, sessions=sessions, **filled)
