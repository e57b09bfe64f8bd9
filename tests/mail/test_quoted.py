"""Bodies encoded in pieces read exactly as the whole text encoded at once."""

from __future__ import annotations

import binascii
import email
import itertools
import random

import pytest

from reminder.mail.quoted import joined, piece, quoted

# Pieces that test the edges: lines of exactly 75, 76 and 77 characters, an accent
# cut at the end of a line, "=" signs, spaces and tabs at the ends, line breaks.
AWKWARD = [
    "a" * 75,
    "a" * 76,
    "a" * 77,
    "a" * 74 + "é",
    "a" * 73 + "é",
    "é" * 30,
    "x=y",
    "=",
    "ends with a space ",
    "ends with a tab\t",
    " starts with a space",
    "\n",
    "\n\n",
    "line\n",
    "\nline",
    "Bonjour Jean-Pierre D’Arcy,\n\n",
    "https://reminder.example.org/u/QzqX.abc_DEF-123?t=1&x=2",
    "",
    # binascii writes "=20" or "=09" for a space or tab before a line end without
    # counting it against the 76 characters.
    " €" + "x" * 30 + "=  " + "x" * 30 + " \n",
    "x" * 60 + "From €\t\t\nz",
    "y" * 74 + " \n",
]


def body_of(parts: list[str]) -> str:
    return joined(piece(p) for p in parts)


def decoded(body: str) -> str:
    message = email.message_from_bytes(
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + body.encode("ascii")
    )
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode().replace("\r\n", "\n")


def assert_reads_as_whole(parts: list[str]) -> None:
    body = body_of(parts)
    whole = quoted("".join(parts))
    assert decoded(body) == decoded(whole) == "".join(parts).rstrip("\n")
    assert binascii.a2b_qp(body) == binascii.a2b_qp(whole)
    for line in body.split("\r\n"):
        assert len(line) <= 76, line
        assert not line.endswith((" ", "\t")), line  # relays may strip trailing spaces
    assert not body.endswith("="), body  # no soft break left dangling at the end


@pytest.mark.parametrize("pair", list(itertools.product(AWKWARD, repeat=2)))
def test_two_pieces_read_as_their_text(pair: tuple[str, str]) -> None:
    assert_reads_as_whole(list(pair))


def test_many_pieces_read_as_their_text() -> None:
    rng = random.Random(7)  # noqa: S311 - a repeatable choice of cases, not a secret
    for _ in range(2000):
        assert_reads_as_whole([rng.choice(AWKWARD) for _ in range(rng.randint(1, 7))])


def test_a_full_line_before_a_soft_break_is_cut_between_characters() -> None:
    # 76 characters leave no room for the "=" of the soft break: the line is cut, and
    # never inside the "=C3=A9" of an accent.
    for text in ("a" * 76, "a" * 72 + "é", "a" * 70 + "éé"):
        encoded = piece(text)
        assert all(len(line) <= 76 for line in encoded.split("\r\n")), encoded
        assert binascii.a2b_qp(encoded).decode() == text


def test_a_whole_body_is_encoded_as_before() -> None:
    text = "Bonjour Zoé,\r\n\r\nLa séance a lieu mercredi.   \n" + "x" * 100 + "\n\n"
    assert quoted(text) == (
        "Bonjour Zo=C3=A9,\r\n\r\nLa s=C3=A9ance a lieu mercredi.  =20\r\n"
        + "x" * 75
        + "=\r\n"
        + "x" * 25
    )


def test_an_encoded_space_before_a_line_end_stays_within_76_characters() -> None:
    for text in ("x" * 60 + "From €\t\t\nz", "y" * 74 + " \n", "z" * 75 + "\t"):
        for body in (quoted(text), joined([piece(text)])):
            assert all(len(line) <= 76 for line in body.split("\r\n")), body
            assert decoded(body) == text.rstrip("\n")
