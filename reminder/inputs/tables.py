"""Reading an export file (CSV, XLSX, ODS) into rows of text cells, or saying what it is."""

from __future__ import annotations

import csv
import gc
import io
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from itertools import compress, count, repeat
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openpyxl import Workbook

from ..core.errors import Problem, RegistrantsError

ODS_MIMETYPE = b"application/vnd.oasis.opendocument.spreadsheet"


@dataclass(frozen=True)
class Table:
    """The cells of one sheet or CSV file, as text; a str row is a CSV row that broke.

    The rows are streamed, to be read once: a million-row export never exists as a
    second, parsed copy beside the registrants made from it.
    """

    source: str
    rows: Iterator[list[str] | str]
    kind: str  # csv, xlsx or ods
    sheet: str = ""
    delimiter: str = ""


@contextmanager
def collection_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a large export becomes objects, then
    leave those objects out of its future collections.

    Reading 100,000 rows creates millions of objects and none of them cyclic garbage,
    yet each allocation burst triggers a full collection: a third of an XLSX load. The
    roster then lives as long as the process, or until the next reload: frozen (moved to
    the collector's permanent generation), its million objects are never walked again,
    neither by the first collection after the load (0.3 s at 1,000,000 registrants) nor
    by any later one. The previous load's objects are unfrozen first, so what the
    roster they belonged to leaves behind can still be collected.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    gc.unfreeze()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def read_table(path: Path, *, encoding: str, delimiter: str, sheet: str | None) -> Table | None:
    """The export's rows, or None when there is no export yet (missing or empty file)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unreadable(path, f"cannot be read: {exc.strerror}") from None
    if not raw or raw.isspace():  # not raw.strip(): no copy of a 100 MB export
        return None
    if raw.startswith(b"PK\x03\x04"):
        return _read_zip(path, raw, sheet)
    looks = _looks_like(raw)
    if looks:
        raise _unreadable(path, looks)
    text = _decode(path, raw, encoding)
    if delimiter == "auto":
        delimiter = _sniff_delimiter(text)
    return Table(str(path), _csv_rows(text, delimiter), "csv", delimiter=delimiter)


def _unreadable(path: Path, message: str) -> RegistrantsError:
    return RegistrantsError([Problem(str(path), message)])


def _looks_like(raw: bytes) -> str:
    """What a file that is neither CSV text nor a workbook we read seems to be, and what to do."""
    head = raw[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if raw.startswith(b"\xd0\xcf\x11\xe0"):
        return (
            "looks like an old Excel workbook (.xls) or a password-protected one: open it "
            "and save it as Excel (.xlsx) or CSV UTF-8, without a password"
        )
    if head.startswith((b"<!doctype html", b"<html", b"<table")):
        return (
            "looks like a web page (HTML), as some tools save under an .xls name: open it "
            "in a spreadsheet and save it as .xlsx or CSV UTF-8"
        )
    if raw.startswith(b"%PDF"):
        return "looks like a PDF document, not an export: download the answers as CSV or XLSX"
    if b"\x00" in raw[:4096]:
        return (
            "looks like a binary file, not a CSV, XLSX or ODS export: download the answers "
            "again as CSV UTF-8 or XLSX"
        )
    return ""


def _decode(path: Path, raw: bytes, encoding: str) -> str:
    if encoding == "auto":
        if raw.startswith(b"\xef\xbb\xbf"):
            encoding = "utf-8-sig"
        else:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                # Excel in a French locale saves "CSV (séparateur : point-virgule)" as cp1252.
                encoding = "cp1252"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise _unreadable(
            path,
            f"looks like text but is not {encoding} (byte {exc.start}): save it as CSV UTF-8, "
            "or set registrants.encoding",
        ) from None


def _sniff_delimiter(text: str) -> str:
    # Exports with a title block above the header: judge by the busiest of the first lines.
    end = 0
    for _ in range(20):  # not text.split("\n", 20): its last part copies the rest of the text
        end = text.find("\n", end) + 1 or len(text)
    lines = text[:end].split("\n")[:20]
    return max((";", ",", "\t"), key=lambda d: max(line.count(d) for line in lines))


# The CSV text is read in blocks of whole lines of about this many characters.
BLOCK = 64 * 1024
# A line of its own after a block handed to the csv module: it comes back as a row of its
# own only if every quoted cell of the block was closed on its line.
_SENTINEL = "\x1e\x1f"


def _csv_rows(text: str, delimiter: str, block: int = BLOCK) -> Iterator[list[str] | str]:
    """The rows of CSV text, as the csv module reads them, most of them without it.

    The text is taken in blocks of whole lines. A line without a quote is split with
    str.split; the lines of a block that hold a quote go to the csv module together,
    which is right as long as each of them is a whole record. When one is not (a quoted
    cell holds a line break), or a row is broken, the block is read again a line at a
    time, and the csv module reads on through the following lines as it must.
    """
    if text.count("\r") != text.count("\r\n"):
        # A lone carriage return ends a line too (old Mac exports): the csv module's own
        # universal-newline reading, at the cost of a copy of the text.
        yield from _parsed(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
        return
    lines = _Lines(text)
    pending: list[str] = []
    reader = csv.reader(_fed(pending, lines), delimiter=delimiter)
    limit = csv.field_size_limit()
    while chunk := lines.block(block):
        # Every carriage return ends a line here (counted above): one end of line, "\n".
        plain = chunk.replace("\r\n", "\n") if "\r" in chunk else chunk
        split = plain.split("\n")
        if plain.endswith("\n"):
            split.pop()
        # A blank line is a row of no cells, where str.split would give one empty cell.
        rows: list[list[str] | str] = (
            list(map(str.split, split, repeat(delimiter)))
            if "" not in split
            else [line.split(delimiter) if line else [] for line in split]
        )
        if len(chunk) <= limit and (
            '"' not in chunk or _quoted_rows(split, rows, delimiter) is not None
        ):
            yield from rows
            continue
        # A quoted cell over several lines, a broken row, or a line past the csv module's
        # limit: line by line, the csv module pulling the following lines it needs.
        end = lines.at
        lines.at -= len(chunk)
        while lines.at < end:
            line = next(lines)
            body = line.rstrip("\r\n")
            if '"' in body or len(body) > limit:
                pending.append(line)
                try:
                    yield next(reader)
                except csv.Error as exc:
                    yield f"broken row ({exc}); skipped"
                except StopIteration:  # pragma: no cover - the reader was just given a line
                    return
                continue
            yield body.split(delimiter) if body else []


def _quoted_rows(
    split: list[str], rows: list[list[str] | str], delimiter: str
) -> list[list[str] | str] | None:
    """`rows` with the csv module's reading of each line that holds a quote, or None when
    one of those lines is not a whole record (or not a good one)."""
    at = list(compress(count(), map(str.__contains__, split, repeat('"'))))
    try:
        parsed = list(csv.reader([*(split[n] for n in at), _SENTINEL], delimiter=delimiter))
    except csv.Error:
        return None
    # Each line given ends its record unless a quoted cell is left open, which then takes
    # the next line given, down to the sentinel: one row fewer.
    if len(parsed) != len(at) + 1 or parsed[-1] != [_SENTINEL]:
        return None
    for number, cells in zip(at, parsed, strict=False):
        rows[number] = cells
    return rows


def _parsed(reader: Iterator[list[str]]) -> Iterator[list[str] | str]:
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield f"broken row ({exc}); skipped"


class _Lines:
    """The text's lines, each with its end, from a position that can be moved back: no
    copy of the text, no list of a million lines."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        start, text = self.at, self.text
        if start >= len(text):
            raise StopIteration
        self.at = text.find("\n", start) + 1 or len(text)
        return text[start : self.at]

    def block(self, size: int) -> str:
        """The next whole lines, about `size` characters of them (at least one line)."""
        start, text = self.at, self.text
        if start >= len(text):
            return ""
        self.at = text.find("\n", start + max(size, 1) - 1) + 1 or len(text)
        return text[start : self.at]


def _fed(pending: list[str], lines: Iterator[str]) -> Iterator[str]:
    """The line handed over first, then the following ones (a quoted cell's next lines)."""
    while True:
        if pending:
            yield pending.pop()
            continue
        line = next(lines, None)
        if line is None:
            return
        yield line


def _read_zip(path: Path, raw: bytes, sheet: str | None) -> Table:
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = set(archive.namelist())
            mimetype = archive.read("mimetype").strip() if "mimetype" in names else b""
    except zipfile.BadZipFile:
        raise _unreadable(
            path, "looks like a damaged or truncated ZIP file (XLSX and ODS are ZIP): export again"
        ) from None
    if "xl/workbook.xml" in names:
        return _read_xlsx(path, raw, sheet)
    if mimetype == ODS_MIMETYPE:
        return _read_ods(path, sheet)
    if mimetype.startswith(b"application/vnd.oasis.opendocument"):
        return _raise(path, "is an OpenDocument file but not a spreadsheet: export the answers")
    if "word/document.xml" in names:
        return _raise(path, "looks like a Word document, not an export: export the answers")
    return _raise(
        path, "is a ZIP archive but not an XLSX or ODS workbook: unzip it and point at the export"
    )


def _raise(path: Path, message: str) -> Table:
    raise _unreadable(path, message)


def _pick_sheet(path: Path, names: list[str], sheet: str | None) -> str:
    if sheet is None:
        if not names:
            _raise(path, "has no sheet")
        return names[0]
    if sheet not in names:
        _raise(
            path,
            f"has no sheet named {sheet!r} (registrants.sheet); its sheets are "
            + ", ".join(repr(n) for n in names),
        )
    return sheet


def _read_xlsx(path: Path, raw: bytes, sheet: str | None) -> Table:
    try:
        book = _open_workbook(raw)
    except Exception as exc:  # openpyxl raises a zoo of types for a damaged file
        raise _unreadable(path, _DAMAGED.format(exc)) from None
    try:
        name = _pick_sheet(path, book.sheetnames, sheet)
        worksheet = book[name]
        # Some tools write a wrong <dimension>; read-only mode would trust it and cut rows.
        worksheet.reset_dimensions()
    except RegistrantsError:
        book.close()
        raise
    except Exception as exc:
        book.close()
        raise _unreadable(path, _DAMAGED.format(exc)) from None
    return Table(str(path), _xlsx_rows(path, book, worksheet), "xlsx", sheet=name)


_DAMAGED = "looks like an Excel workbook but cannot be read ({}): open it and save again"


def _xlsx_rows(path: Path, book: Workbook, worksheet: Any) -> Iterator[list[str] | str]:
    try:
        for row in worksheet.iter_rows(values_only=True):
            yield _trimmed(_texts(row))
    except Exception as exc:  # a damaged sheet shows only as it is streamed
        raise _unreadable(path, _DAMAGED.format(exc)) from None
    finally:
        book.close()


def _open_workbook(raw: bytes) -> Workbook:
    """openpyxl's load_workbook in read-only mode, with a faster shared-string table.

    Read-only streams the sheet instead of building every cell object. From the bytes,
    because openpyxl refuses a path whose name does not end in .xlsx. Exports hold a
    shared string per address and name; openpyxl builds a rich-text object for each,
    which took 40% of the load of 100,000 rows, so the table is read here as plain text,
    exactly as openpyxl's Text.content joins it (the plain text, then each run's).
    """
    from openpyxl.reader.excel import ExcelReader  # only workbooks pay for the import
    from openpyxl.xml.constants import SHARED_STRINGS

    class Reader(ExcelReader):
        def read_strings(self) -> None:
            part = self.package.find(SHARED_STRINGS)  # type: ignore[no-untyped-call]
            if part is not None:
                with self.archive.open(part.PartName[1:]) as source:
                    self.shared_strings = _shared_strings(source)

    reader = Reader(io.BytesIO(raw), read_only=True, data_only=True)
    reader.read()
    book: Workbook = reader.wb
    return book


def _shared_strings(source: IO[bytes]) -> list[str]:
    from xml.etree import ElementTree  # here: a CSV export need not load the XML parser

    main = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    item, text, run = f"{main}si", f"{main}t", f"{main}r"
    strings = []
    # The same parser openpyxl reads the sheets with; expat refuses entity expansion bombs.
    for _, node in ElementTree.iterparse(source):  # noqa: S314
        if node.tag == item:
            plain = node.find(text)
            joined = (plain.text or "") if plain is not None else ""
            joined += "".join(r.findtext(text) or "" for r in node.iterfind(run))
            strings.append(joined.replace("x005F_", ""))  # as openpyxl: an escaped "_"
            node.clear()
    return strings


def _read_ods(path: Path, sheet: str | None) -> Table:
    from python_calamine import CalamineError, CalamineWorkbook

    try:
        book = CalamineWorkbook.from_path(str(path))
        name = _pick_sheet(path, list(book.sheet_names), sheet)
        values = book.get_sheet_by_name(name).to_python(skip_empty_area=False)
    except CalamineError as exc:
        raise _unreadable(
            path,
            f"looks like an OpenDocument spreadsheet but cannot be read ({exc}): open it and "
            "save again as .ods or .xlsx",
        ) from None
    rows: Iterator[list[str] | str] = (_trimmed(_texts(row)) for row in values)
    return Table(str(path), rows, "ods", sheet=name)


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


def _trimmed(row: list[str]) -> list[str]:
    """Without the empty cells a sheet pads rows with on the right."""
    end = len(row)
    while end and not row[end - 1]:
        end -= 1
    return row if end == len(row) else row[:end]
