"""The registration export: reading it, validating every row, and who attends which session."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from itertools import chain, islice, repeat, zip_longest
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

from ..core.errors import Problem, RegistrantsError
from ..core.model import ColumnMap, Registrant, Roster, Session
from .cells import PLAIN_LOCAL, Cells
from .columns import HEADER_SEARCH_ROWS, SAMPLE_ROWS
from .config import Config, RegistrantsFormat
from .layout import Layout, find_layout, header_index, is_label_row
from .regular import not_regular
from .tables import Table, collection_paused, read_table

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
# Rows read together, column by column, when they are all plain.
_BLOCK_ROWS = 1024
# Rows named in the note on empty session cells; the others are counted.
_NAMED_ROWS = 5
_EVERY_SESSION = 'served every session, as registrants.unknown_sessions = "all" says'


def masked(email: str) -> str:
    """m***@irev.fr: enough to recognise someone in a log, not enough to harvest."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


# An address as servers quote it in a reply: "<sophie.martin@example.fr>: User unknown".
# No slash in it, though RFC 5322 allows one: a path (an outbox file named after a
# Message-ID) keeps its folders visible, only the part after the last slash is masked.
_QUOTED_ADDRESS = re.compile(r"[\w.!#$%&'*+=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")


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
    return Roster(str(path), kept, tuple(reader.problems), gone, reader.mapping)


def load_suppression(path: Path) -> frozenset[str]:
    """One address per line, '#' starts a comment; case does not matter."""
    if odd := not_regular(path):
        raise RegistrantsError([Problem(str(path), odd)])
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
        self.cells = Cells(sessions, zone)
        self.header: list[str] = []
        self.mapping: ColumnMap | None = None
        self.layout: Layout | None = None
        # Rows whose sessions cell is empty (every session): how many, and the first ones.
        self.blank_sessions: list[int] = []
        self.blank_count = 0

    def rows(self) -> dict[str, Registrant]:
        """The registrants by key, in the export's order."""
        stream = iter(self.table.rows)
        head = list(islice(stream, max(HEADER_SEARCH_ROWS, self.options.header_row or 0) + 1))
        start = header_index(self.table, head, stream, self.options)
        header = head[start]
        assert isinstance(header, list)  # noqa: S101 - header_index never picks a broken row
        self.header = header
        below = head[start + 1] if start + 1 < len(head) else ""
        labels = (
            below if isinstance(below, list) and is_label_row(header, below, self.options) else None
        )
        first = start + 1 + (labels is not None)
        # The columns are judged on the first rows after the header, as many as assign reads.
        sample = head[first:]
        whole = sum(not isinstance(cells, str) for cells in sample)
        while whole < SAMPLE_ROWS and (cells := next(stream, None)) is not None:
            sample.append(cells)
            whole += not isinstance(cells, str)
        layout = self.layout = find_layout(
            self.table, header, start + 1, labels, sample, self.options, self.cells
        )
        self.problems += [*self.table.problems, *layout.problems]
        if layout.stamps_in_utc:
            self.cells.zone = UTC
        found = self._registrants(chain(sample, stream), first + 1, layout.index)
        self.mapping = replace(layout.mapping, notes=(*layout.mapping.notes, *self._read_notes()))
        return found

    def _read_notes(self) -> list[str]:
        """What reading every row showed: the texts read as ticks, the empty cells."""
        notes: list[str] = []
        if self.layout is None:
            return notes
        ticks = self.layout.ticks
        if ticks is not None and ticks.ticked:
            notes.append("read as ticked: " + ", ".join(sorted(ticks.ticked)))
        if self.blank_count:
            rows = ", ".join(map(str, self.blank_sessions))
            left = self.blank_count - len(self.blank_sessions)
            more = f" and {left} more" if left else ""
            notes.append(
                f"{self.blank_count} row(s) leave {self._name(self.layout.index, 'sessions')!r} "
                f"empty (rows {rows}{more}): they attend every session"
            )
        return notes

    def _blank(self, row: int) -> None:
        self.blank_count += 1
        if len(self.blank_sessions) < _NAMED_ROWS:
            self.blank_sessions.append(row)

    def _registrants(
        self, data: Iterable[list[str] | str], first_row: int, index: dict[str, int]
    ) -> dict[str, Registrant]:
        """Every row's registrant, merged by address, a block of rows at a time.

        A million rows pass through here. A block whose rows are all plain (whole rows,
        plain addresses on domains already checked, session cells already read, no
        personal link, nobody seen before) is read column by column, a few calls per
        block; any other block row by row, where every problem is reported.
        """
        found: dict[str, Registrant] = {}
        stream = iter(data)
        row = first_row
        while block := list(islice(stream, _BLOCK_ROWS)):
            made = self._plain_block(block, row, index)
            if made is not None:
                keys, people, blanks = made
                if len(set(keys)) == len(keys) and found.keys().isdisjoint(keys):
                    found.update(zip(keys, people, strict=True))
                    for number in blanks:
                        self._blank(number)
                    row += len(block)
                    continue
            self._rows(block, row, index, found)
            row += len(block)
        return found

    def _plain_block(
        self, block: list[list[str] | str], first_row: int, index: dict[str, int]
    ) -> tuple[list[str], list[Registrant], list[int]] | None:
        """The block's keys and registrants (and its rows with an empty sessions cell), or
        None unless every row is plain."""
        if str in set(map(type, block)):
            return None
        rows = cast(list[list[str]], block)
        columns = list(zip_longest(*rows, fillvalue=""))
        if len(columns) > len(self.header) and self.table.delimiter:
            return None  # a delimiter inside an unquoted cell: reported row by row
        blank = ("",) * len(rows)

        def column(attribute: str) -> Sequence[str]:
            at = index.get(attribute)
            return columns[at] if at is not None and at < len(columns) else blank

        emails = column("email")
        cells = self.cells
        if not cells.all_plain(emails) or any(column("join_url")):
            return None
        read = self._block_sessions(columns, blank, index, first_row)
        if read is None:
            return None
        chosen, blanks = read
        stamps = column("registered_at")
        instants: dict[str, datetime | None] = {}
        for text in set(stamps):
            instant, readable = cells.instant(text)
            if not readable:
                return None
            instants[text] = instant
        together = "".join(emails)
        if together.isascii() and together.islower():
            keys: list[str] = list(emails)  # nothing to fold: each key is its address
        else:
            keys = [
                k if k != e else e for e, k in zip(emails, map(str.casefold, emails), strict=True)
            ]
        languages = {
            text: (cells.tidy(text).lower()[:2] or None) if text else None
            for text in set(column("language"))
        }
        people = Registrant.many(
            emails,
            keys,
            cells.kept(column("first_name"), "first_name"),
            cells.kept(column("last_name"), "last_name"),
            cells.kept(column("role"), "role"),
            cells.kept(column("organisation"), "organisation"),
            repeat(None),
            chosen,
            map(languages.__getitem__, column("language")),
            map(instants.__getitem__, stamps),
            first_row,
        )
        return keys, people, blanks

    def _block_sessions(
        self,
        columns: list[tuple[str, ...]],
        blank: tuple[str, ...],
        index: dict[str, int],
        first_row: int,
    ) -> tuple[list[frozenset[str] | None], list[int]] | None:
        """Each row's sessions, and the rows with an empty sessions cell; None when a row's
        sessions cannot be read (the block is then read row by row, and reported)."""

        def column(at: int | None) -> Sequence[str]:
            return columns[at] if at is not None and at < len(columns) else blank

        ticks = self.layout.ticks if self.layout else None
        if ticks is not None:
            keys = list(zip(*map(column, ticks.columns), strict=True))
            ticked = {key: ticks.sessions(key) for key in set(keys)}
            if any(type(found) is str for found in ticked.values()):
                return None
            return cast(list[frozenset[str] | None], [ticked[key] for key in keys]), []
        texts = column(index.get("sessions"))
        named = {text: self.cells.sessions_named(text) for text in set(texts)}
        if any(type(found) is str for found in named.values()):
            return None
        blanks = []
        if "sessions" in index and any(not text.strip() for text in named):
            blanks = [number for number, text in enumerate(texts, first_row) if not text.strip()]
        return cast(list[frozenset[str] | None], [named[text] for text in texts]), blanks

    def _rows(
        self,
        data: Iterable[list[str] | str],
        first_row: int,
        index: dict[str, int],
        found: dict[str, Registrant],
    ) -> None:
        """Each row's registrant into `found`, merged by address, a problem for each row
        skipped: the common row takes no call beyond the few it must."""
        header, delimiter = self.header, self.table.delimiter
        width = len(header)
        far = 1 << 62  # the position of a column the export lacks: past any row's end
        at = {attribute: index.get(attribute, far) for attribute in _ATTRIBUTES}
        email_at = index["email"]
        first_at, last_at, role_at = at["first_name"], at["last_name"], at["role"]
        organisation_at, sessions_at = at["organisation"], at["sessions"]
        url_at, language_at, registered_at = at["join_url"], at["language"], at["registered_at"]
        email_column = header[email_at]
        ticks = self.layout.ticks if self.layout else None
        sessions_column = self._name(index, "sessions") if ticks is None else None
        every_session = self.options.unknown_sessions == "all"
        registered_column = self._name(index, "registered_at")
        plain_local = PLAIN_LOCAL.fullmatch
        cells_of = self.cells
        good_domains = cells_of.good_domains
        session_cells = cells_of.session_cells
        tidy = cells_of.tidy
        kept = cells_of.texts.get  # a text seen before, without a call to tidy
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
                checked, wrong = cells_of.address(" ".join(raw.split()))
                if checked is None:
                    self._problem(row, email_column, wrong)
                    continue
                email = checked
            sessions: frozenset[str] | str | None
            if ticks is None:
                text = cells[sessions_at] if sessions_at < count else ""
                try:
                    sessions = session_cells[text]
                except KeyError:  # exports repeat a handful of session cells: each read once
                    sessions = cells_of.sessions_named(text)
                if sessions is None and sessions_at < far and not text.strip():
                    self._blank(row)
            else:
                sessions = ticks.sessions(ticks.key(cells))
            if isinstance(sessions, str):
                if not every_session:
                    self._problem(row, sessions_column, f"{sessions}; skipped")
                    continue
                self._problem(row, sessions_column, f"{sessions}; {_EVERY_SESSION}")
                sessions = None
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
            key = registrant.key
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

    def _name(self, index: dict[str, int], attribute: str) -> str:
        return self.header[index[attribute]] if attribute in index else attribute

    def _timestamp(self, row: int, text: str, column: str) -> datetime | None:
        found, readable = self.cells.instant(text)
        if not readable:
            self._problem(
                row,
                column,
                f"{' '.join(text.split())!r} is not a date and time; ignored",
                severity="warning",
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
