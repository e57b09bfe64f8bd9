"""Reading CSV text: the fast split of unquoted lines, and the blocks of lines handed to
the csv module together, give exactly what the csv module gives line by line."""

import csv
import io
import random

import pytest

from reminder.inputs.delimited import csv_rows


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


PIECES = [
    "a",
    "Évelyne",
    " b ",
    "",
    ";",
    ",",
    '"',
    '""',
    '"x;y"',
    '"l1\nl2"',
    '"l1\r\nl2"',
    "\t",
    "\x00",
    "\ufeff",
]
ENDS = ["\n", "\r\n", ""]


def random_text(seed: int) -> tuple[str, str]:
    rng = random.Random(seed)  # noqa: S311 - reproducible shapes of text, not secrets
    delimiter = rng.choice([";", ",", "\t"])
    lines = []
    for _ in range(rng.randint(0, 30)):
        cells = [
            "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 3)))
            for _ in range(rng.randint(0, 5))
        ]
        lines.append(delimiter.join(cells) + rng.choice(ENDS[:2]))
    return "".join(lines) + rng.choice(ENDS), delimiter


@pytest.mark.parametrize("seed", range(40))
def test_unquoted_lines_split_as_the_csv_module_reads_them(seed: int) -> None:
    text, delimiter = random_text(seed)
    assert list(csv_rows(text, delimiter)) == by_csv_module(text, delimiter)


@pytest.mark.parametrize("block", [1, 2, 7, 23, 64])
@pytest.mark.parametrize("seed", range(40))
def test_every_block_boundary_reads_as_the_csv_module_reads_it(seed: int, block: int) -> None:
    # Small blocks put a boundary everywhere: inside a quoted cell's line break, after a
    # quoted line, on a blank line, before a last line without its end.
    text, delimiter = random_text(seed)
    assert list(csv_rows(text, delimiter, block)) == by_csv_module(text, delimiter)


@pytest.mark.parametrize(
    "text",
    [
        'a;"open\nstill open\nclosed";b\nc;d\n',  # a quoted cell over three lines
        'a;"never closed\nb;c\n',
        "a;b\rc;d\r",  # old Mac line ends
        "a;b\r\nc;d\rmixed\r\n",
        "\n\n;\n",
        "a;" + "x" * 140_000 + "\nb;c\n",  # a cell over the csv module's limit
        "\ufeffNom;Courriel\r\nA;a@x.fr\r\n",  # a BOM kept by an explicit utf-8
        'a;b;\r\n"c;d";e;\r\n\r\n;;\r\n',  # trailing delimiters, CRLF, a blank line
        'a;"x""y";b\nc;d\n',  # a doubled quote inside a quoted cell
        'a;b"c;"d\ne;f"\ng;h\n',  # a quote inside an unquoted cell, then one left open
        'a;"x"y;b\nc\n',  # text after a closing quote
        '"a\n\nb";c\n\n"d";e',  # blank lines inside a quoted cell and between rows
        'a;"x\r\ny";b\r\nc;d\r\n',  # CRLF inside a quoted cell of a CRLF file
    ],
)
@pytest.mark.parametrize("block", [1, 3, 8, 64 * 1024])
def test_awkward_csv_reads_as_the_csv_module_reads_it(text: str, block: int) -> None:
    assert list(csv_rows(text, ";", block)) == by_csv_module(text, ";")


def test_a_quoted_line_does_not_stop_the_fast_split_of_the_others() -> None:
    # Excel quotes only the cells that need it: most lines of a block have no quote.
    cells = ['"01/03; 05/04"', "toutes"]
    lines = [f"elu{n}@example.org;{cells[n % 4 == 0]};x" for n in range(500)]
    text = "\r\n".join(["Courriel;Séances;Note", *lines]) + "\r\n"
    assert list(csv_rows(text, ";", 1000)) == by_csv_module(text, ";")
