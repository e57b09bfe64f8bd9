"""Which column of an export holds which field: tolerant of the headers form tools write."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence

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


# A header numbered by the form tool because an earlier column has its name: Microsoft
# Forms exports the question "Nom" as "Nom2" when its own respondent column is "Nom".
_TWIN = re.compile(r"^(.*[^\W\d_])\d{1,2}$")


def tier(header: str, name: str) -> int | None:
    """How `header` matches the configured `name`, or None; a numbered twin ("Nom2")
    matches as its name without the number."""
    found = _tier(words(header), words(name))
    if found is None and (twin := _TWIN.match(header.strip())):
        return _tier(words(twin.group(1)), words(name))
    return found


def _tier(have: tuple[str, ...], want: tuple[str, ...]) -> int | None:
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
    unfit: Mapping[str, Mapping[int, str]] | None = None,
    skip: Collection[int] = (),
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """field -> column index, and notes on the choices made (each with its field).

    Exact matches are taken first for every field, then headers that begin with a
    configured name, then headers with the name inside them (form questions); a column
    serves one field, and the columns in `skip` none. A column with no real value in it
    (empty, Microsoft Forms' "anonymous", or what `unfit` says of it for a field) is
    never preferred to one with data, whatever their headers. Among those with data, a
    numbered twin ("Nom2", the form's question) wins over the tool's own column of that
    name, and the e-mail goes to the column with the most addresses.
    """
    fields = list(fields)
    rows = [row for row in sample if not isinstance(row, str)][:SAMPLE_ROWS]
    hollow = {c: said for c in range(len(header)) if (said := _hollow(rows, c))}
    twins = _twins(header)
    candidates: dict[str, list[tuple[int, int, int]]] = {}  # field -> (tier, name rank, column)
    for field, names in fields:
        for column, cell in enumerate(header):
            found = [
                (t, rank) for rank, name in enumerate(names) if (t := tier(cell, name)) is not None
            ]
            if found and column not in skip:
                candidates.setdefault(field, []).append((*min(found), column))
    notes: list[tuple[str, str]] = []
    index: dict[str, int] = {}
    taken: set[int] = set()
    for level in (EXACT, PREFIX, INSIDE):
        for field, _ in fields:
            if field in index:
                continue
            why = {**hollow, **(unfit or {}).get(field, {})}
            left = [c for c in candidates.get(field, []) if c[2] not in taken]
            options = [c for c in left if c[0] == level]
            if not options:
                continue
            if field == "email":
                options.sort(key=lambda c: (c[2] in why, -_addresses(rows, c[2]), c[1], c[2]))
            else:
                options.sort(key=lambda c: (c[2] in why, c[2] not in twins, c[1], c[2]))
            chosen = options[0][2]
            if chosen in why and any(c[2] not in why for c in left if c[0] > level):
                continue  # a column with data further down the tiers wins
            for _, _, other in (c for c in left if c[0] <= level and c[2] != chosen):
                said = _why_not(field, header, rows, why, twins, other, chosen)
                if said:
                    used = f"{header[chosen]!r} is used"
                    notes.append((field, f"{header[other]!r} also names {field}{said}; {used}"))
            index[field] = chosen
            taken.add(chosen)
    return index, notes


def _why_not(
    field: str,
    header: list[str],
    rows: Sequence[list[str] | str],
    why: Mapping[int, str],
    twins: Mapping[int, str],
    other: int,
    chosen: int,
) -> str:
    """Why `other` lost `field` to `chosen`, when that is worth a note."""
    if other in why:
        return f" but {why[other]}"
    if field == "email" and _addresses(rows, other) < _addresses(rows, chosen):
        return " but holds fewer addresses"
    if twins.get(chosen) == fold(header[other]):
        return " (the form tool's own column; the form's question has a number added)"
    return ""


def _twins(header: list[str]) -> dict[int, str]:
    """The columns whose header is another's with a number added ("Nom2" beside "Nom"),
    each with that other header, folded."""
    names = {fold(cell) for cell in header}
    return {
        column: fold(twin.group(1))
        for column, cell in enumerate(header)
        if (twin := _TWIN.match(cell.strip())) and fold(twin.group(1)) in names
    }


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


def _hollow(rows: Sequence[list[str] | str], column: int) -> str:
    """Why the column holds no real value in these rows, or "" when it does."""
    values = {
        row[column].strip().casefold()
        for row in rows
        if not isinstance(row, str) and column < len(row) and row[column].strip()
    }
    if not values:
        return "is empty" if rows else ""
    return "holds only 'anonymous'" if values <= _PLACEHOLDERS else ""


def _addresses(rows: Sequence[list[str] | str], column: int) -> int:
    return sum(1 for row in rows if column < len(row) and "@" in row[column])
