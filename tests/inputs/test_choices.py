"""What a form tool writes in an option's column, read as chosen, not chosen, or neither."""

import pytest

from reminder.inputs.choices import tick


@pytest.mark.parametrize(
    "cell",
    ["X", "x", "✓", "✔", "☑", "1", "Oui", "oui ", "Yes", "Y", "Je participe", "Mercredi 1er mars"],
)
def test_a_mark_or_a_label_is_a_tick(cell: str) -> None:
    assert tick(cell) is True


@pytest.mark.parametrize(
    "cell", ["", "  ", "0", "Non", "no", "N", "Not selected", "Non sélectionné", "-", "Absent"]
)
def test_an_empty_cell_or_a_no_is_not_a_tick(cell: str) -> None:
    assert tick(cell) is False


@pytest.mark.parametrize("cell", ["Peut-être", "maybe", "?", "Je ne sais pas", "À confirmer"])
def test_an_answer_that_chooses_nothing_is_neither(cell: str) -> None:
    assert tick(cell) is None
