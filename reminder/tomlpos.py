"""Where a key sits in a TOML file, so a validation error can name its line.

tomllib gives values, not positions; this scanner knows just enough TOML
(tables, arrays of tables, multi-line strings) to map a key path such as
("sessions", 2, "topic") to its line. It never decides validity.
"""

from __future__ import annotations

import re

_TABLE = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_ARRAY_TABLE = re.compile(r"^\s*\[\[\s*([^\[\]]+?)\s*\]\]\s*(#.*)?$")
_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_KEY = re.compile(rf"^\s*({_PART}(?:\s*\.\s*{_PART})*)\s*=")

Path = tuple[str | int, ...]


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", dotted)
    return tuple(part.strip("\"'") for part in parts)


def key_lines(text: str) -> dict[Path, int]:
    """Map every table and key path in `text` to its 1-based line number."""
    lines: dict[Path, int] = {}
    counters: dict[tuple[str, ...], int] = {}
    table: Path = ()
    delimiter: str | None = None  # inside a multi-line string opened by this
    for number, line in enumerate(text.splitlines(), start=1):
        if delimiter is not None:
            if line.count(delimiter) % 2 == 1:
                delimiter = None
            continue
        if match := _ARRAY_TABLE.match(line):
            name = _split_key(match.group(1))
            index = counters.get(name, -1) + 1
            counters[name] = index
            table = (*name, index)
            lines.setdefault(table, number)
            lines.setdefault(name, number)
            continue
        if match := _TABLE.match(line):
            table = _split_key(match.group(1))
            lines.setdefault(table, number)
            continue
        if match := _KEY.match(line):
            lines.setdefault((*table, *_split_key(match.group(1))), number)
            rest = line[match.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    delimiter = quote
    return lines


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """The line of `path`, or of its nearest enclosing key or table that is in the file."""
    for end in range(len(path), 0, -1):
        if (found := lines.get(tuple(path[:end]))) is not None:
            return found
    return None
