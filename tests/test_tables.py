"""Reading CSV text: the fast split of unquoted lines gives what the csv module gives."""

import csv
import io
import random

import pytest

from reminder.inputs.tables import _csv_rows


def by_csv_module(text: str, delimiter: str) -> list[list[str] | str]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[list[str] | str] = []
    while True:
        try:
            rows.append(next(reader))
        except StopIteration:
            return rows
        except csv.Error as exc:
            rows.append(f"broken row ({exc}); skipped")


PIECES = ["a", "Évelyne", " b ", "", ";", ",", '"', '""', '"x;y"', '"l1\nl2"', "\t", "\x00"]
ENDS = ["\n", "\r\n", ""]


@pytest.mark.parametrize("seed", range(40))
def test_unquoted_lines_split_as_the_csv_module_reads_them(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible shapes of text, not secrets
    delimiter = rng.choice([";", ",", "\t"])
    lines = []
    for _ in range(rng.randint(0, 30)):
        cells = [
            "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 3)))
            for _ in range(rng.randint(0, 5))
        ]
        lines.append(delimiter.join(cells) + rng.choice(ENDS[:2]))
    text = "".join(lines) + rng.choice(ENDS)
    assert list(_csv_rows(text, delimiter)) == by_csv_module(text, delimiter)


@pytest.mark.parametrize(
    "text",
    [
        'a;"open\nstill open\nclosed";b\nc;d\n',  # a quoted cell over three lines
        'a;"never closed\nb;c\n',
        "a;b\rc;d\r",  # old Mac line ends
        "a;b\r\nc;d\rmixed\r\n",
        "\n\n;\n",
        "a;" + "x" * 140_000 + "\nb;c\n",  # a cell over the csv module's limit
    ],
)
def test_awkward_csv_reads_as_the_csv_module_reads_it(text: str) -> None:
    assert list(_csv_rows(text, ";")) == by_csv_module(text, ";")
