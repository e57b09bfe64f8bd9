"""Reading an export file (CSV, Unicode text, XLSX, ODS) into rows of text cells, or
saying what it is."""

from __future__ import annotations

import codecs
import gc
import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import Problem, RegistrantsError
from .delimited import csv_rows, sniff_delimiter
from .regular import not_regular

ODS_MIMETYPE = b"application/vnd.oasis.opendocument.spreadsheet"
# Bytes looked at to tell UTF-16 text without its byte-order mark.
_SNIFFED = 4096


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
    encoding: str = ""  # the text's, as read (for CSV)
    problems: tuple[Problem, ...] = ()  # what the reading library warned about
    notes: tuple[str, ...] = ()  # how the file was read, for the mapping report


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
    if odd := not_regular(path):
        raise _unreadable(path, odd)
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
    if encoding == "auto":
        encoding = _utf16(raw) or encoding
    if not encoding.startswith("utf-16") and (looks := _looks_like(raw)):
        raise _unreadable(path, looks)
    text, encoding = _decode(path, raw, encoding)
    if delimiter == "auto":
        delimiter = sniff_delimiter(text)
    rows = csv_rows(text, delimiter)
    return Table(str(path), rows, "csv", delimiter=delimiter, encoding=encoding)


def _unreadable(path: Path, message: str) -> RegistrantsError:
    return RegistrantsError([Problem(str(path), message)])


def _utf16(raw: bytes) -> str:
    """The codec of UTF-16 text ("" for other bytes), whatever the file's name.

    Excel's "Texte Unicode (*.txt)" and Framaforms' "delimited text" download are UTF-16
    with a byte-order mark, tab-separated, sometimes named .xls. Without the mark, text
    written in UTF-16 has a zero byte in most characters, always on the same side.
    """
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    head = raw[:_SNIFFED]
    even, odd = head[0::2].count(0), head[1::2].count(0)
    if len(head) >= 4 and not even and odd * 3 > len(head) // 2:
        return "utf-16-le"
    if len(head) >= 4 and not odd and even * 3 > len(head) // 2:
        return "utf-16-be"
    return ""


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
    if b"\x00" in raw[:_SNIFFED]:
        return (
            "looks like a binary file, not a CSV, XLSX or ODS export: download the answers "
            "again as CSV UTF-8 or XLSX"
        )
    return ""


def _decode(path: Path, raw: bytes, encoding: str) -> tuple[str, str]:
    """The text, and the encoding it was read in."""
    if encoding == "auto":
        if raw.startswith(codecs.BOM_UTF8):
            encoding = "utf-8-sig"
        else:
            try:
                return raw.decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                # Excel in a French locale saves "CSV (séparateur : point-virgule)" as cp1252.
                encoding = "cp1252"
    try:
        return raw.decode(encoding), encoding
    except UnicodeDecodeError as exc:
        raise _unreadable(
            path,
            f"looks like text but is not {encoding} (byte {exc.start}): save it as CSV UTF-8, "
            "or set registrants.encoding",
        ) from None


def _read_zip(path: Path, raw: bytes, sheet: str | None) -> Table:
    from .workbooks import read_sheet  # only workbooks pay for the reader's import

    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = set(archive.namelist())
            mimetype = archive.read("mimetype").strip() if "mimetype" in names else b""
    except zipfile.BadZipFile:
        raise _unreadable(
            path, "looks like a damaged or truncated ZIP file (XLSX and ODS are ZIP): export again"
        ) from None
    if "xl/workbook.xml" in names:
        kind = "xlsx"
    elif mimetype == ODS_MIMETYPE:
        kind = "ods"
    elif mimetype.startswith(b"application/vnd.oasis.opendocument"):
        raise _unreadable(path, "is an OpenDocument file but not a spreadsheet: export the answers")
    elif "word/document.xml" in names:
        raise _unreadable(path, "looks like a Word document, not an export: export the answers")
    else:
        raise _unreadable(
            path,
            "is a ZIP archive but not an XLSX or ODS workbook: unzip it and point at the export",
        )
    found = read_sheet(path, raw, kind, sheet)
    return Table(
        str(path), found.rows, kind, sheet=found.name, problems=found.problems, notes=found.notes
    )
