"""Workbooks (XLSX, ODS) into rows of text cells, each merged cell's value in every row
it covers, and what the reading library warned about in our words."""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import Problem, RegistrantsError

if TYPE_CHECKING:
    from python_calamine import CalamineSheet

# A merged range as python-calamine gives it: its first and last cell, (row, column) from 0.
Merge = tuple[tuple[int, int], tuple[int, int]]

_DAMAGED = {
    "xlsx": "looks like an Excel workbook but cannot be read ({}): open it and save again",
    "ods": (
        "looks like an OpenDocument spreadsheet but cannot be read ({}): open it and save "
        "again as .ods or .xlsx"
    ),
}
# An ODS cell spanning more than its own row or column (LibreOffice writes no span of 1).
_ODS_SPAN = re.compile(rb'number-(?:rows|columns)-spanned="(?!1")')
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
# Merged ranges named in the mapping report; the others are counted.
_SHOWN_MERGES = 5


@dataclass(frozen=True)
class Sheet:
    """One sheet's rows as text, the cells a merge covers holding its value."""

    name: str
    rows: Iterator[list[str]]
    problems: tuple[Problem, ...]
    notes: tuple[str, ...]  # for the mapping report: the merged cells read


def read_sheet(path: Path, raw: bytes, kind: str, sheet: str | None) -> Sheet:
    """The sheet named `sheet` (or the first) of an XLSX or ODS workbook's bytes.

    python-calamine reads both: a compiled reader, 3 to 4 times faster than openpyxl's
    read-only mode on a 100,000-row export, and one that gives the merged ranges of an
    XLSX sheet (openpyxl's read-only mode does not). ODS merges are read from the
    content here, which calamine does not report.
    """
    from python_calamine import CalamineError, CalamineWorkbook

    with warnings.catch_warnings(record=True) as caught:
        # Every warning is caught here, to be said once in our words, never printed raw.
        warnings.simplefilter("always")
        try:
            book = CalamineWorkbook.from_filelike(io.BytesIO(raw))
            name = _pick_sheet(path, list(book.sheet_names), sheet)
            found = book.get_sheet_by_name(name)
            merges = found.merged_cell_ranges if kind == "xlsx" else _ods_merges(raw, name)
            rows = _rows(found)
        # SyntaxError: ElementTree's ParseError, from the content of a damaged ODS.
        except (CalamineError, zipfile.BadZipFile, ValueError, KeyError, SyntaxError) as exc:
            raise _unreadable(path, _DAMAGED[kind].format(exc)) from None
    problems = tuple(
        Problem(
            str(path),
            f"the spreadsheet reader warned: {message}; the rows were read, check them "
            "with `reminder registrants`",
            severity="warning",
        )
        for message in dict.fromkeys(str(w.message) for w in caught)
    )
    spans = [merge for merge in merges or [] if merge[0] != merge[1]]
    notes = (_merged_note(spans),) if spans else ()
    return Sheet(name, _trimmed_rows(_filled(rows, spans)), problems, notes)


def _merged_note(spans: list[Merge]) -> str:
    shown = ", ".join(f"{_a1(*first)}:{_a1(*last)}" for first, last in spans[:_SHOWN_MERGES])
    more = f" and {len(spans) - _SHOWN_MERGES} more" if len(spans) > _SHOWN_MERGES else ""
    return f"merged cells {shown}{more}: each row they cover is read with their value"


def _a1(row: int, column: int) -> str:
    """A cell's name as a spreadsheet shows it: (1, 2) -> C2."""
    letters = ""
    column += 1
    while column:
        column, rest = divmod(column - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"{letters}{row + 1}"


def _unreadable(path: Path, message: str) -> RegistrantsError:
    return RegistrantsError([Problem(str(path), message)])


def _pick_sheet(path: Path, names: list[str], sheet: str | None) -> str:
    if sheet is None:
        if not names:
            raise _unreadable(path, "has no sheet")
        return names[0]
    if sheet not in names:
        raise _unreadable(
            path,
            f"has no sheet named {sheet!r} (registrants.sheet); its sheets are "
            + ", ".join(repr(n) for n in names),
        )
    return sheet


def _rows(sheet: CalamineSheet) -> Iterator[list[str]]:
    """Every row from the sheet's first, as text, each cell in its own column.

    calamine's rows begin at the first row of the sheet but at its first column that
    holds anything: the columns left of it are put back, so a column's position (and
    a merged range's) is the same in every row.
    """
    start = sheet.start
    if start is None:
        return iter(())
    left = [""] * start[1]
    rows = map(_texts, sheet.iter_rows())
    return (left + row for row in rows) if left else rows


def _texts(row: Iterable[object]) -> list[str]:
    return [cell if type(cell) is str else _text(cell) for cell in row]


def _text(cell: object) -> str:
    """A typed cell as the text a CSV export would hold; dates and times in ISO 8601."""
    if cell is None:
        return ""
    if isinstance(cell, datetime):
        return cell.isoformat(sep=" ") if cell.time() != time() else cell.date().isoformat()
    if isinstance(cell, date | time):
        return cell.isoformat()
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell)


def _filled(rows: Iterator[list[str]], merges: list[Merge]) -> Iterator[list[str]]:
    """The rows with each merged range's value (its first cell's) in every row it covers,
    in its first column.

    Staff merge a "Séances" cell over the rows of two people who chose the same dates:
    the second person chose them too, and their cell is not empty. A range over several
    columns says one thing once (a full name merged over Prénom and Nom): its other
    columns stay empty rather than repeat it.
    """
    starting: dict[int, list[tuple[int, int, int]]] = {}
    for (top, left), (bottom, right) in merges:
        starting.setdefault(top, []).append((bottom, left, right))
    if not starting:
        yield from rows
        return
    open_: list[tuple[int, int, int, str]] = []  # last row, first and last column, value
    for number, row in enumerate(rows):
        for bottom, left, right in starting.pop(number, ()):
            open_.append((bottom, left, right, row[left] if left < len(row) else ""))
        if open_:
            for _, left, right, value in open_:
                if len(row) <= right:
                    row.extend([""] * (right + 1 - len(row)))
                row[left : right + 1] = [value] + [""] * (right - left)
            open_ = [merge for merge in open_ if merge[0] > number]
        yield row


def _trimmed_rows(rows: Iterator[list[str]]) -> Iterator[list[str]]:
    """Without the empty cells a sheet pads rows with on the right."""
    for row in rows:
        end = len(row)
        while end and not row[end - 1]:
            end -= 1
        yield row if end == len(row) else row[:end]


def _ods_merges(raw: bytes, sheet: str) -> list[Merge]:
    """The merged ranges of an ODS sheet: its cells with a row or column span.

    The content is looked at for a span first: most exports have none, and are not
    parsed twice.
    """
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        content = archive.read("content.xml")
    if not _ODS_SPAN.search(content):
        return []
    from xml.etree import ElementTree  # here: most exports never need it

    found: list[Merge] = []
    row = column = following = 0
    inside = False
    # Python's expat parser refuses entity expansion bombs (expat 2.4 and later).
    for event, node in ElementTree.iterparse(io.BytesIO(content), ("start", "end")):  # noqa: S314
        tag = node.tag
        if tag == f"{_TABLE}table":
            if event == "start":
                inside = node.get(f"{_TABLE}name") == sheet
                following = 0
            elif inside:
                break
            continue
        if not inside or event != "start":
            if event == "end" and tag == f"{_TABLE}table-row":
                node.clear()
            continue
        if tag == f"{_TABLE}table-row":
            # A repeated row is the same row again (most often empty): its spans, if any,
            # are taken once, at its first row.
            row, column = following, 0
            following = row + int(node.get(f"{_TABLE}number-rows-repeated", "1"))
        elif tag in (f"{_TABLE}table-cell", f"{_TABLE}covered-table-cell"):
            rows = int(node.get(f"{_TABLE}number-rows-spanned", "1"))
            columns = int(node.get(f"{_TABLE}number-columns-spanned", "1"))
            if rows > 1 or columns > 1:
                found.append(((row, column), (row + rows - 1, column + columns - 1)))
            column += int(node.get(f"{_TABLE}number-columns-repeated", "1"))
    return found
