"""Delimited text (CSV, tab-separated "Unicode text") into rows of cells, as the csv
module reads it, most of it without the csv module."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from itertools import compress, count, repeat


def sniff_delimiter(text: str) -> str:
    """The commonest of ; , and tab on the busiest of the first lines."""
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


def csv_rows(text: str, delimiter: str, block: int = BLOCK) -> Iterator[list[str] | str]:
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
