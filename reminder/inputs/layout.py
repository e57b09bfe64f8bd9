"""Where an export's fields are: its header row, a row of option labels under it, which
column feeds which field, and the shape of its sessions question."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain

from ..core.errors import Problem, RegistrantsError
from ..core.model import ColumnMap
from .cells import Cells
from .choices import Option, Ticks, options_in
from .columns import assign, describe, find_header, tier, words
from .config import RegistrantsFormat
from .tables import Table

_READ_AS = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8 with BOM",
    "utf-16": "UTF-16",
    "utf-16-le": "UTF-16 LE",
    "utf-16-be": "UTF-16 BE",
    "cp1252": "Windows-1252",
    "latin-1": "Latin-1",
}
_SEPARATORS = {"\t": "tab", ";": "';'", ",": "','"}


@dataclass(frozen=True)
class Layout:
    """How to read the rows of one export."""

    index: dict[str, int]  # field -> column; "sessions" only for a question in one cell
    ticks: Ticks | None  # the sessions question as one column per option
    mapping: ColumnMap
    problems: tuple[Problem, ...] = ()
    stamps_in_utc: bool = False  # the registration time's header says UTC (Typeform)


def header_index(
    table: Table,
    rows: list[list[str] | str],
    rest: Iterator[list[str] | str],
    options: RegistrantsFormat,
) -> int:
    """Where the header is among the first rows: registrants.header_row, or the first
    row with an e-mail header (a title block above it is skipped)."""
    where = f"sheet {table.sheet!r}: " if table.sheet else ""
    if options.header_row is not None:
        index = options.header_row - 1
        if index >= len(rows) or isinstance(rows[index], str) or not any(rows[index]):
            raise RegistrantsError(
                [
                    Problem(
                        table.source,
                        f"{where}registrants.header_row = {options.header_row} but "
                        "that row is empty or missing: give the row of the column headers",
                        row=options.header_row,
                    )
                ]
            )
        return index
    found = find_header(rows, options.columns.email)
    if found is None:
        every = chain(rows, rest)
        first = next((r for r in every if not isinstance(r, str) and any(r)), [])
        raise RegistrantsError(
            [
                Problem(
                    table.source,
                    f"{where}no e-mail column: the header has "
                    f"{', '.join(c for c in first if c) or 'nothing'}; name the e-mail "
                    "header in registrants.columns.email (looked for "
                    f"{', '.join(options.columns.email)}), or set registrants.header_row",
                    row=1,
                )
            ]
        )
    return found


def is_label_row(header: list[str], row: list[str] | str, options: RegistrantsFormat) -> bool:
    """Whether the row under the header holds option labels (Framaforms' "options in
    separate columns"): no address in it, and at least two labels, all different (a row
    of ticks repeats its "X"), each under a blank header, a question's title spanning
    columns, or the sessions question's title."""
    if isinstance(row, str):
        return False
    labels = [column for column, cell in enumerate(row) if cell.strip()]
    texts = [row[column].strip() for column in labels]
    if len(labels) < 2 or len(set(texts)) < len(texts) or any("@" in text for text in texts):
        return False
    names = options.columns.sessions
    return all(_under_a_question(header, column, names) for column in labels)


def _under_a_question(header: list[str], column: int, names: Sequence[str]) -> bool:
    title = _cell(header, column).strip()
    return (
        not title
        or _cell(header, column - 1).strip() == title  # a title merged over its options
        or _cell(header, column + 1).strip() in ("", title)
        or any(tier(title, name) is not None for name in names)
    )


def _cell(row: Sequence[str], column: int) -> str:
    return row[column] if 0 <= column < len(row) else ""


def find_layout(
    table: Table,
    header: list[str],
    header_row: int,
    labels: list[str] | None,
    sample: Sequence[list[str] | str],
    options: RegistrantsFormat,
    cells: Cells,
) -> Layout:
    """Which column feeds which field, and how the sessions question is to be read.

    `header_row` is the header's row number (from 1); `labels` the row of option labels
    under it, if there is one; `sample` the first rows after them.
    """
    fields = list(options.columns)
    shown, named = _labels(header, labels)
    choices = options_in(named, shown, cells)
    rows = [row for row in sample if not isinstance(row, str)]
    judged = any(any(cell.strip() for cell in row) for row in rows)
    skip = {option.column for option in choices}
    not_sessions = _not_sessions(header, rows, options, cells, skip) if judged else {}
    unfit = {column: why for column, why in not_sessions.items() if why}
    index, said = assign(header, fields, sample, {"sessions": unfit}, skip)
    # Beside columns of options, a column named like the question but holding no
    # session (a "Date de lancement") is no rival worth a note: it is simply not used.
    notes = [note for field, note in said if field != "sessions" or not choices]
    if "email" not in index:
        raise RegistrantsError(
            [
                Problem(
                    table.source,
                    f"no e-mail column: the header has {', '.join(header)}; name one "
                    "of them in registrants.columns.email (looked for "
                    f"{', '.join(options.columns.email)})",
                    row=header_row,
                )
            ]
        )
    head = _Head(table.source, header, header_row, labels, options)
    ticks, problems = _sessions_question(head, index, notes, choices, not_sessions, cells.listed)
    used = set(index.values()) | ({option.column for option in ticks.options} if ticks else set())
    stamps = index.get("registered_at")
    in_utc = stamps is not None and bool({"utc", "gmt"} & set(words(header[stamps])))
    if in_utc and stamps is not None:
        notes.append(f"{header[stamps]!r} is read in UTC, as its header says")
    described = {field: (field, cell, how) for field, cell, how in describe(header, index, fields)}
    if ticks:
        described["sessions"] = (
            "sessions",
            f"{len(ticks.options)} columns, one per option"
            if len(ticks.options) > 1
            else "1 column for its one option",
            "by the date each label names",
        )
    mapping = ColumnMap(
        header_row,
        tuple(described[field] for field, _ in fields if field in described),
        tuple(h for c, h in enumerate(header) if c not in used and h.strip()),
        (*table.notes, *notes),
        table.sheet,
        tuple((option.label, option.session) for option in ticks.options) if ticks else (),
        header_row + 1 if labels is not None else None,
        _read_as(table),
    )
    return Layout(index, ticks, mapping, tuple(problems), in_utc)


def _labels(header: list[str], labels: list[str] | None) -> tuple[list[str], list[str]]:
    """Each column's label as staff see it (its question, then its option), and the part
    that names the option's date."""
    if labels is None:
        return header, header
    width = max(len(header), len(labels))
    shown, named = [], []
    title = ""
    for column in range(width):
        above, below = _cell(header, column).strip(), _cell(labels, column).strip()
        title = above or title
        if below:
            shown.append(f"{title}: {below}" if title and title != below else below)
            named.append(below)
        else:
            shown.append(above)
            named.append(above)
    return shown, named


def _not_sessions(
    header: list[str],
    rows: Sequence[list[str]],
    options: RegistrantsFormat,
    cells: Cells,
    skip: set[int],
) -> dict[int, str]:
    """The columns named like the sessions question whose cells name no session, and
    why; an empty one is said to be ("" when it also names none)."""
    found: dict[int, str] = {}
    names = options.columns.sessions
    for column, title in enumerate(header):
        if column in skip or all(tier(title, name) is None for name in names):
            continue
        values = [row[column] for row in rows if column < len(row) and row[column].strip()]
        if not values:
            found[column] = ""  # empty means every session: read, unless options say more
        elif all(isinstance(cells.sessions_named(value), str) for value in values):
            found[column] = f"holds no session of the cycle (e.g. {' '.join(values[0].split())!r})"
    return found


def _read_as(table: Table) -> str:
    if table.kind != "csv":
        return ""
    encoding = _READ_AS.get(table.encoding, table.encoding)
    return f"{encoding} text, {_SEPARATORS.get(table.delimiter, table.delimiter)}-separated"


@dataclass(frozen=True)
class _Head:
    """An export's header, and the settings that decide how its sessions are read."""

    source: str
    header: list[str]
    row: int  # from 1
    labels: list[str] | None  # the row of option labels under it
    options: RegistrantsFormat


def _sessions_question(
    head: _Head,
    index: dict[str, int],
    notes: list[str],
    choices: list[Option],
    not_sessions: dict[int, str],
    listed: str,
) -> tuple[Ticks | None, list[Problem]]:
    """The option columns' reader when the question has one column per option; `index`
    keeps "sessions" only when one column lists the sessions. Invariant 14: a question
    that cannot be read never becomes "every session" unsaid."""
    single = index.get("sessions")
    ticks = Ticks(choices, listed) if choices else None
    # A column that names sessions is read; an empty one too (everyone attends every
    # session), unless columns of options hold the answers.
    if (
        single is not None
        and not_sessions.get(single, "") == ""
        and (single not in not_sessions or ticks is None)
    ):
        if choices:
            notes.append(
                f"{len(choices)} other column(s) name a session's date "
                f"({', '.join(repr(o.label) for o in choices[:3])}); "
                f"{head.header[single]!r} lists the sessions and is read"
            )
        return None, []
    if ticks is not None:
        if single is not None:
            del index["sessions"]
            if not not_sessions[single]:
                notes.append(
                    f"{head.header[single]!r} also names sessions but is empty; the "
                    "columns of options are read"
                )
        return ticks, []
    index.pop("sessions", None)
    if single is not None:
        what = f"the session column {head.header[single]!r} {not_sessions[single]}"
    elif head.labels is not None:
        shown = ", ".join(repr(label) for label in head.labels if label.strip())
        what = f"the option labels on row {head.row + 1} ({shown}) name no session date"
    else:
        looked = ", ".join(head.options.columns.sessions)
        what = f"no session column (looked for {looked}, and for columns naming a date)"
    return None, _unread(head, what, notes, asked=single is not None or head.labels is not None)


def _unread(head: _Head, what: str, notes: list[str], *, asked: bool) -> list[Problem]:
    """No sessions to read: intended (all_sessions), allowed (unknown_sessions "all"), or
    an error that holds the whole export back. `asked`: the export has a question."""
    if head.options.all_sessions:
        if asked:
            notes.append(f"{what}; not read: registrants.all_sessions = true")
        return []
    if head.options.unknown_sessions == "all":
        return [
            Problem(
                head.source,
                f"{what}: EVERYONE ATTENDS EVERY SESSION, as registrants.unknown_sessions "
                '= "all" says. Name the column in registrants.columns.sessions, or set '
                "registrants.all_sessions = true if that is intended",
                row=head.row,
                severity="warning",
            )
        ]
    fix = (
        "a form exporting one column per option must name each option's date in its "
        "header or in the row under it; or name the sessions column in "
        'registrants.columns.sessions; registrants.unknown_sessions = "all" would serve '
        "everyone every session instead"
        if asked
        else "name the sessions column in registrants.columns.sessions; if this export has "
        "no sessions question and everyone attends every session, set "
        "registrants.all_sessions = true"
    )
    raise RegistrantsError(
        [
            Problem(
                head.source,
                f"{what}: nobody is served from this export until its sessions read right. "
                f"To fix: {fix}",
                row=head.row,
            )
        ]
    )
