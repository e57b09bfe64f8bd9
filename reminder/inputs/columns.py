"""Which column of an export holds which field: tolerant of the headers form tools write."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

# How far down a title block may push the header (Framaforms, Zoom reports).
HEADER_SEARCH_ROWS = 30
# Cells looked at to tell a column of addresses from a column of "anonymous".
SAMPLE_ROWS = 200
# How well a header matches a name: the whole header, its first words, or words inside it.
EXACT, PREFIX, INSIDE = 0, 1, 2
_TIER_WORDS = {EXACT: "exactly", PREFIX: "by its first words", INSIDE: "by words inside it"}
# Microsoft Forms fills its own Email and Name columns with this for outside respondents.
_PLACEHOLDERS = {"anonymous", "anonyme"}


def plain(text: str) -> str:
    """Lowercase, without accents: "Février" -> "fevrier"."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().casefold()


def fold(text: str) -> str:
    """Compare headers and keywords without case, accents or punctuation."""
    return re.sub(r"[^a-z0-9]+", " ", plain(text)).strip()


def words(text: str) -> tuple[str, ...]:
    """A header's significant words, singular: "À quelle(s) séance(s)" -> (quelle, seance)."""
    return tuple(
        word[:-1] if len(word) > 3 and word[-1] in "sx" else word
        for word in fold(text).split()
        if len(word) > 1
    )


def tier(header: str, name: str) -> int | None:
    """How `header` matches the configured `name`, or None."""
    have, want = words(header), words(name)
    if not want or not have:
        return None
    if have == want:
        return EXACT
    if have[: len(want)] == want:
        return PREFIX
    if any(have[i : i + len(want)] == want for i in range(1, len(have) - len(want) + 1)):
        return INSIDE
    return None


def find_header(rows: Sequence[list[str] | str], email_names: Sequence[str]) -> int | None:
    """The index of the first row, among the first ones, with a header naming an e-mail."""
    for index, row in enumerate(rows[:HEADER_SEARCH_ROWS]):
        if isinstance(row, str):
            continue
        if any(tier(cell, name) is not None for cell in row if cell for name in email_names):
            return index
    return None


def assign(
    header: list[str],
    fields: Iterable[tuple[str, Sequence[str]]],
    sample: Sequence[list[str] | str],
) -> tuple[dict[str, int], list[str]]:
    """field -> column index, and notes on the choices made.

    Exact matches are taken first for every field, then headers that begin with a
    configured name, then headers with the name inside them (form questions); a column
    serves one field. Columns holding no real value (Microsoft Forms' "anonymous") lose
    to those that do, and the e-mail goes to the column with the most addresses.
    """
    fields = list(fields)
    candidates: dict[str, list[tuple[int, int, int]]] = {}  # field -> (tier, name rank, column)
    for field, names in fields:
        for column, cell in enumerate(header):
            found = [
                (t, rank) for rank, name in enumerate(names) if (t := tier(cell, name)) is not None
            ]
            if found:
                candidates.setdefault(field, []).append((*min(found), column))
    rows = [row for row in sample if not isinstance(row, str)][:SAMPLE_ROWS]
    notes: list[str] = []
    empty = {c for c in range(len(header)) if _placeholder_only(rows, c)}
    index: dict[str, int] = {}
    taken: set[int] = set()
    for level in (EXACT, PREFIX, INSIDE):
        for field, _ in fields:
            if field in index:
                continue
            options = [c for c in candidates.get(field, []) if c[0] == level and c[2] not in taken]
            if not options:
                continue
            if field == "email":
                options.sort(key=lambda c: (-_addresses(rows, c[2]), c[1], c[2]))
            else:
                options.sort(key=lambda c: (c[2] in empty, c[1], c[2]))
            chosen = options[0][2]
            for _, _, other in options[1:]:
                if other in empty or field == "email":
                    notes.append(
                        f"{header[other]!r} also names {field} but holds "
                        + ("only 'anonymous'" if other in empty else "fewer addresses")
                        + f"; {header[chosen]!r} is used"
                    )
            index[field] = chosen
            taken.add(chosen)
    return index, notes


def describe(
    header: list[str], index: dict[str, int], fields: Iterable[tuple[str, Sequence[str]]]
) -> tuple[tuple[str, str, str], ...]:
    out = []
    for field, names in fields:
        if field in index:
            cell = header[index[field]]
            how = min(t for name in names if (t := tier(cell, name)) is not None)
            out.append((field, cell, _TIER_WORDS[how]))
    return tuple(out)


def _placeholder_only(rows: Sequence[list[str] | str], column: int) -> bool:
    values = {
        row[column].strip().casefold()
        for row in rows
        if not isinstance(row, str) and column < len(row) and row[column].strip()
    }
    return bool(values) and values <= _PLACEHOLDERS


def _addresses(rows: Sequence[list[str] | str], column: int) -> int:
    return sum(1 for row in rows if column < len(row) and "@" in row[column])
