"""Where a key sits in a TOML file, so a validation error can name its line.

tomllib gives values, not positions; this scanner knows just enough TOML
(tables, arrays of tables, the four string forms, comments) to map a key path such as
("sessions", 2, "topic") to its line. It never decides validity.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..core.errors import KeyPath, Problem

_TABLE = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_ARRAY_TABLE = re.compile(r"^\s*\[\[\s*([^\[\]]+?)\s*\]\]\s*(#.*)?$")
_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_KEY = re.compile(rf"^\s*({_PART}(?:\s*\.\s*{_PART})*)\s*=")


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", dotted)
    return tuple(part.strip("\"'") for part in parts)


def key_lines(text: str) -> dict[KeyPath, int]:
    """Map every table and key path in `text` to its 1-based line number."""
    lines: dict[KeyPath, int] = {}
    counters: dict[tuple[str, ...], int] = {}
    table: KeyPath = ()
    delimiter: str | None = None  # inside a multi-line string opened by this
    for number, line in enumerate(text.splitlines(), start=1):
        if delimiter is not None:
            delimiter = _open_string(line, delimiter)
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
            delimiter = _open_string(line[match.end() :], None)
    return lines


def _open_string(text: str, delimiter: str | None) -> str | None:
    """The multi-line string delimiter still open at the end of `text`, if any.

    `delimiter` is the one open at its start. Follows TOML's four string forms, backslash
    escapes in basic strings, and comments, so quotes inside a comment or a one-line
    string never open anything.
    """
    i = 0
    while i < len(text):
        if delimiter is not None:
            if delimiter == '"""' and text[i] == "\\":
                i += 2
            elif text.startswith(delimiter, i):
                # Up to two quotes may end the content just before the closing three.
                while i < len(text) and text[i] == delimiter[0]:
                    i += 1
                delimiter = None
            else:
                i += 1
            continue
        char = text[i]
        if char == "#":
            break
        if text.startswith(('"""', "'''"), i):
            delimiter = text[i : i + 3]
            i += 3
        elif char == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
        elif char == "'":
            end = text.find("'", i + 1)
            i = len(text) if end < 0 else end + 1
        else:
            i += 1
    return delimiter


def line_of(lines: Mapping[KeyPath, int], path: KeyPath) -> int | None:
    """The line of `path`, or of its nearest enclosing key or table that is in the file."""
    for end in range(len(path), 0, -1):
        if (found := lines.get(tuple(path[:end]))) is not None:
            return found
    return None


@dataclass(frozen=True)
class Origin:
    """Where a config came from: the one place a key path becomes a file and a line."""

    file: Path = Path("config.toml")
    lines: Mapping[KeyPath, int] = field(default_factory=dict, repr=False)

    def problem(self, message: str, at: KeyPath, severity: str = "error") -> Problem:
        return self.locate(Problem.of_key(at, message, severity))

    def locate(self, problem: Problem) -> Problem:
        """`problem` placed in this file, unless it already names its source."""
        if problem.source:
            return problem
        return replace(problem, source=str(self.file), line=line_of(self.lines, problem.at))

    def locate_all(self, problems: Iterable[Problem]) -> list[Problem]:
        return [self.locate(problem) for problem in problems]
