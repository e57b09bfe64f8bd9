"""A sessions question exported as one column per option (Framaforms, LimeSurvey, Typeform,
a Google Forms checkbox grid): which column is which session, and what a row ticked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .cells import Cells
from .columns import fold

# What a form tool writes in the column of an option that was not chosen. Anything else
# written there is a tick: "X", "✓", "1", "Oui", "Yes", the option's own label (Typeform),
# a grid's column label ("Je participe").
NOT_TICKED = frozenset(
    {
        "",
        "0",
        "non",
        "no",
        "n",
        "false",
        "faux",
        "not selected",
        "non selectionne",
        "non selectionnee",
        "non coche",
        "non cochee",
        "unchecked",
        "not checked",
        "aucun",
        "none",
        "absent",
        "absente",
    }
)
# Answers that choose nothing either way: never read as a yes or a no.
UNSURE = frozenset({"peut etre", "maybe", "ne sait pas", "je ne sais pas", "nsp", "a confirmer"})
_DASHES = frozenset({"-", "–", "—"})


@dataclass(frozen=True)
class Option:
    """One column of the sessions question: the option it holds, and its session."""

    column: int
    label: str  # as staff see it: the header, and the option's label under it if any
    option: str  # the option's own label (the header, or the label under it)
    day: str  # the date its label names, as written
    session: str | None  # None: that date is no session of the cycle


def options_in(labels: Sequence[str], shown: Sequence[str], cells: Cells) -> list[Option]:
    """The columns whose label names exactly one date: the options of a sessions question
    (`shown`: each column's label as staff see it, with its question).

    A label naming several dates is a question listing them ("Séances (01/03, 05/04)"),
    not an option; one naming none is another question.
    """
    found = []
    for column, label in enumerate(labels):
        if not label:
            continue
        days = cells.named_days(label)
        if len(days) == 1:
            found.append(Option(column, shown[column], label, *days[0]))
    return found


def tick(text: str) -> bool | None:
    """Whether an option's cell says it was chosen; None when it says neither."""
    cell = text.strip()
    folded = fold(cell)
    if cell == "?" or folded in UNSURE:
        return None
    if cell in _DASHES:
        return False
    # A tick mark folds to nothing: it is not an empty cell.
    return folded not in NOT_TICKED or (not folded and bool(cell))


class Ticks:
    """Reads the option cells of a row into the sessions chosen, or why they cannot be.

    Rows repeat a handful of combinations of ticks: each is read once.
    """

    def __init__(self, options: Sequence[Option], listed: str) -> None:
        self.options = tuple(options)
        self.columns = tuple(option.column for option in options)
        self.listed = listed
        self.read: dict[tuple[str, ...], frozenset[str] | str] = {}
        self.ticked: set[str] = set()  # the ticks read, as the mapping report shows them

    def key(self, cells: Sequence[str]) -> tuple[str, ...]:
        """The row's option cells (a row cut short leaves the last ones empty)."""
        count = len(cells)
        return tuple(cells[c] if c < count else "" for c in self.columns)

    def sessions(self, values: tuple[str, ...]) -> frozenset[str] | str:
        try:
            return self.read[values]
        except KeyError:
            found = self.read[values] = self._read(values)
            return found

    def _read(self, values: tuple[str, ...]) -> frozenset[str] | str:
        chosen: set[str] = set()
        for option, value in zip(self.options, values, strict=True):
            said = tick(value)
            if said is None:
                return f"{value.strip()!r} under {option.label!r} is neither a tick nor empty"
            if not said:
                continue
            shown = value.strip()
            own = fold(shown) == fold(option.option)  # Typeform writes the choice itself
            self.ticked.add("the option's own label" if own else repr(shown))
            if option.session is None:
                return (
                    f"{option.label!r} is ticked but {option.day} is not a session of the "
                    f"cycle (sessions: {self.listed})"
                )
            chosen.add(option.session)
        if not chosen:
            if len(self.options) == 1:
                return f"no session ticked in {self.options[0].label!r}"
            return f"no session ticked in the {len(self.options)} session columns"
        return frozenset(chosen)
