"""Key positions in config.toml: an error must point at the line staff have to fix."""

from __future__ import annotations

import tomllib

import pytest

from reminder.inputs.tomlpos import key_lines

Q3, A3 = '"' * 3, "'" * 3  # TOML's multi-line string delimiters


def toml(*lines: str) -> str:
    return "\n".join(("[cycle]", *lines, 'title = "t"', ""))


SAMPLES = {
    "comment holding triple quotes": toml(f'id = "x"  # a comment with {Q3} in it'),
    "basic string holding triple single quotes": toml(f'id = "it is {A3} here"'),
    "literal string holding triple double quotes": toml(f"id = '{Q3} quoted'"),
    "escaped quote in a basic string": toml(r'id = "a \" \"\" b"'),
    "multi-line basic string ending in quotes": toml(
        f"id = {Q3}", "first line", f'ends with two quotes""{Q3}'
    ),
    "multi-line basic string with an escaped delimiter": toml(
        f"id = {Q3}", f"keeps going \\{Q3} still inside", Q3
    ),
    "multi-line literal string with a comment sign": toml(f"id = {A3}", "# not a comment", Q3, A3),
    "two strings on one line": toml(f"id = [{Q3}a{Q3}, 'b', \"c\"]  # {Q3}"),
}


@pytest.mark.parametrize("text", SAMPLES.values(), ids=SAMPLES.keys())
def test_the_key_after_any_string_form_is_on_its_own_line(text: str) -> None:
    assert tomllib.loads(text)["cycle"]["title"] == "t"  # the sample is valid TOML
    expected = next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith("title"))
    assert key_lines(text)[("cycle", "title")] == expected


def test_arrays_of_tables_are_counted_after_a_multiline_string() -> None:
    text = "\n".join(
        [
            *("[[sessions]]", "date = 2023-03-01", f"agenda = {Q3}", "[[sessions]]", Q3),
            *("[[sessions]]", 'topic = "x"', ""),
        ]
    )
    lines = key_lines(text)
    assert lines[("sessions", 1, "topic")] == 7
    assert ("sessions", 2) not in lines
