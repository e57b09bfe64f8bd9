"""Writing real XLSX and ODS workbooks with typed cells and merged ranges, for tests and
benchmarks."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import openpyxl
from openpyxl.utils.cell import range_boundaries

Cell = str | int | float | date | datetime | None


def write_xlsx(
    path: Path,
    sheets: dict[str, Iterable[Sequence[Cell]]],
    merged: dict[str, Sequence[str]] | None = None,
) -> None:
    """One sheet per entry; datetimes become date cells, as Microsoft Forms writes them.

    `merged` gives a sheet's merged ranges ("C2:C3"), as staff merge them by hand: the
    cells a range covers lose their values, as in Excel.
    """
    if not merged:
        book = openpyxl.Workbook(write_only=True)
        for name, rows in sheets.items():
            sheet = book.create_sheet(name)
            for row in rows:
                sheet.append(list(row))
        book.save(path)
        return
    book = openpyxl.Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(list(row))
        for cells in merged.get(name, ()):
            sheet.merge_cells(cells)
    book.save(path)


def write_ods(
    path: Path,
    sheets: dict[str, Iterable[Sequence[Cell]]],
    merged: dict[str, Sequence[str]] | None = None,
) -> None:
    """A minimal OpenDocument spreadsheet, as LibreOffice saves one, with typed cells and
    merged ranges ("C2:C3": a spanning cell, the cells it covers written as covered)."""
    tables = "".join(
        f"<table:table table:name={quoteattr(name)}>"
        + "".join(_ods_rows(list(rows), (merged or {}).get(name, ())))
        + "</table:table>"
        for name, rows in sheets.items()
    )
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
        ' xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
        ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        f"<office:body><office:spreadsheet>{tables}</office:spreadsheet></office:body>"
        "</office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"'
        ' manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/" manifest:media-type='
        '"application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    with zipfile.ZipFile(path, "w") as archive:
        # The mimetype comes first and uncompressed: that is how readers recognise ODS.
        archive.writestr(
            "mimetype", "application/vnd.oasis.opendocument.spreadsheet", zipfile.ZIP_STORED
        )
        archive.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
        archive.writestr("content.xml", content, zipfile.ZIP_DEFLATED)


def _ods_rows(rows: list[Sequence[Cell]], merged: Sequence[str]) -> list[str]:
    spans: dict[tuple[int, int], tuple[int, int]] = {}
    covered: set[tuple[int, int]] = set()
    for cells in merged:
        left, top, right, bottom = range_boundaries(cells)
        assert left is not None and top is not None and right is not None and bottom is not None
        spans[(top - 1, left - 1)] = (bottom - top + 1, right - left + 1)
        covered |= {(r, c) for r in range(top - 1, bottom) for c in range(left - 1, right)}
    out = []
    for r, row in enumerate(rows):
        cells = []
        for c, cell in enumerate(row):
            if (r, c) in spans:
                down, across = spans[(r, c)]
                span = (
                    f' table:number-rows-spanned="{down}" table:number-columns-spanned="{across}"'
                )
                cells.append(
                    re.sub(r"^<table:table-cell", f"<table:table-cell{span}", _ods_cell(cell))
                )
            elif (r, c) in covered:
                cells.append("<table:covered-table-cell/>")
            else:
                cells.append(_ods_cell(cell))
        out.append("<table:table-row>" + "".join(cells) + "</table:table-row>")
    return out


def _ods_cell(cell: Cell) -> str:
    if cell is None or cell == "":
        return "<table:table-cell/>"
    if isinstance(cell, datetime | date):
        return (
            f'<table:table-cell office:value-type="date" office:date-value="{cell.isoformat()}">'
            f"<text:p>{cell.isoformat()}</text:p></table:table-cell>"
        )
    if isinstance(cell, int | float):
        return (
            f'<table:table-cell office:value-type="float" office:value="{cell}">'
            f"<text:p>{cell}</text:p></table:table-cell>"
        )
    return (
        '<table:table-cell office:value-type="string">'
        f"<text:p>{escape(str(cell))}</text:p></table:table-cell>"
    )
