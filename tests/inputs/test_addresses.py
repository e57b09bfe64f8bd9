"""Addresses checked without email-validator get its very answers, and nothing else does."""

import itertools
import random
import subprocess
import sys

import email_validator
import pytest
from email_validator import rfc_constants

from reminder.inputs import addresses
from reminder.inputs.addresses import EmailNotValidError, validate_email

LOCALS = [
    "m.petit",
    "Jean.Dupont",
    "a+b_c-d",
    "x!#$%&'*+/=?^_`{|}~",
    "a..b",
    ".a",
    "a.",
    "",
    "postmaster",
    "PostMaster",
    "Info",
    "webmasters",
    "élu",
    '"quoted"',
    "a b",
    "a" * 64,
    "a" * 65,
    "a" * 200,
]
DOMAINS = [
    "irev.fr",
    "IREV.Fr",
    "mairie-lille.fr",
    "a-b-c.gouv.fr",
    "ab--cd.fr",
    "a--b.fr",
    "xn--mairie-vry-b7a.fr",
    "XN--mairie-vry-b7a.fr",
    "mairie-évry.fr",
    "a.b",
    "a.fr1",
    "a.123",
    "fr",
    "x.test",
    "x.Test",
    "test",
    "mail.localhost",
    "x.onion",
    "in-addr.ARPA",
    "x.invalid",
    "my.local",
    "notlocal.fr",
    "-a.fr",
    "a-.fr",
    "a.fr.",
    ".a.fr",
    "a..fr",
    "[127.0.0.1]",
    "sub.example.com",
    ("a" * 63) + ".fr",
    ("a" * 64) + ".fr",
    ".".join(["a" * 61] * 4) + ".fr",  # 250 characters
    ".".join(["a" * 62] * 4) + ".fr",  # 254 characters
]


def library(text: str) -> tuple[str, str | None] | str:
    """email-validator's answer: the two forms, or its refusal."""
    try:
        found = email_validator.validate_email(
            text, check_deliverability=False, allow_smtputf8=False
        )
    except email_validator.EmailNotValidError as exc:
        return str(exc)
    return (found.normalized, found.ascii_email)


def ours(text: str) -> tuple[str, str | None] | str:
    try:
        found = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        return str(exc)
    return (found.normalized, found.ascii_email)


def corpus() -> list[str]:
    built = [f"{local}@{domain}" for local, domain in itertools.product(LOCALS, DOMAINS)]
    built += ["", "@", "a@", "@irev.fr", "a@b@irev.fr", "Morgane <m.petit@irev.fr>", " a@irev.fr"]
    draw = random.Random(15)  # noqa: S311 - a fixed seed: the same corpus on every run
    alphabet = "aZ09.-_+@é\"<> !'x"
    built += [
        "".join(draw.choices(alphabet, k=draw.randint(1, 14))) + draw.choice(["", ".fr", "@x.fr"])
        for _ in range(3000)
    ]
    return built


def test_every_address_gets_the_libraries_answer() -> None:
    different = [(t, ours(t), library(t)) for t in corpus() if ours(t) != library(t)]
    assert different == []


def test_what_is_accepted_here_the_library_accepts_in_the_same_form() -> None:
    accepted = 0
    for text in corpus():
        plain = addresses._plain(text)
        if plain is not None:
            accepted += 1
            assert library(text) == (plain, plain), text
    assert accepted > 100  # the common case does take the short way


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("m.petit@irev.fr", "m.petit@irev.fr"),
        ("G.Noye@Example.FR", "G.Noye@example.fr"),
        ("postmaster@irev.fr", None),  # the library lower-cases a role mailbox
        ("a@xn--mairie-vry-b7a.fr", None),  # IDNA: only the library decodes it
        ("élu@irev.fr", None),
        ("a@x.test", None),
        ("a@" + ".".join(["a" * 62] * 4) + ".fr", None),  # too long
    ],
)
def test_the_short_way_takes_only_plain_addresses(text: str, plain: str | None) -> None:
    assert addresses._plain(text) == plain


def test_the_copied_lists_match_the_installed_library() -> None:
    assert tuple(email_validator.SPECIAL_USE_DOMAIN_NAMES) == addresses._SPECIAL_USE
    assert set(rfc_constants.CASE_INSENSITIVE_MAILBOX_NAMES) == addresses._ROLE_MAILBOXES
    assert addresses._EMAIL_MAX_LENGTH == rfc_constants.EMAIL_MAX_LENGTH
    assert addresses._DOMAIN_MAX_LENGTH == rfc_constants.DOMAIN_MAX_LENGTH


@pytest.mark.parametrize(
    ("text", "imported"), [("Jean.Dupont@Irev.fr", False), ("jean.dupont@mairie-évry.fr", True)]
)
def test_email_validator_is_imported_only_for_an_address_it_must_judge(
    text: str, imported: bool
) -> None:
    probe = (
        "import sys; from reminder.inputs.addresses import validate_email; "
        f"print(validate_email({text!r}).ascii_email, 'email_validator' in sys.modules)"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert found[1] == str(imported)
    assert found[0] == library(text)[1]  # type: ignore[index]
