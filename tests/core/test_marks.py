"""Marks and the Message-IDs that carry them: only the key makes them, and they are read back."""

from __future__ import annotations

import pytest

from reminder.core.mailing import DeliveryKey
from reminder.core.marks import Spelling, sign
from reminder.core.message_ids import OurMessageId, message_id, parse
from reminder.core.unsubscribe import token

KEY = b"0123456789abcdef0123456789abcdef"
DELIVERY = DeliveryKey("2023-03-01T17:00+01:00", "reminder", "7d", "marie.leroy@example.org")


def test_a_mark_depends_on_its_key_purpose_and_fields() -> None:
    mark = sign(KEY, "decline", "irev-elus-2023", "2023-03-01", "marie.leroy@example.org")
    assert len(mark) == 22
    assert mark == sign(KEY, "decline", "irev-elus-2023", "2023-03-01", "marie.leroy@example.org")
    for purpose, fields, key in (
        ("decline", ("irev-elus-2023", "2023-03-01", "paul.henry@example.org"), KEY),
        ("decline", ("irev-elus-2023", "2023-04-05", "marie.leroy@example.org"), KEY),
        ("unsubscribe", ("irev-elus-2023", "2023-03-01", "marie.leroy@example.org"), KEY),
        ("decline", ("irev-elus-2023", "2023-03-01", "marie.leroy@example.org"), b"x" * 32),
    ):
        assert sign(key, purpose, *fields) != mark


def test_fields_that_could_run_together_are_refused() -> None:
    # ("a\nb", "c") and ("a", "b\nc") would mark alike.
    with pytest.raises(ValueError, match="line feed"):
        sign(KEY, "decline", "a\nb", "c")


def test_unsubscribe_links_of_mails_already_sent_keep_their_token() -> None:
    assert token("s" * 40, "c", "A@b.org") == "ySlzU3c9mKeHD978RQ04FA"


def test_a_message_id_is_marked_and_read_back() -> None:
    mid = message_id(KEY, DELIVERY, "irev-elus-2023", "irev.fr")
    mark = sign(
        KEY, "message-id", "irev-elus-2023", *DELIVERY.stored, spelling=Spelling.HEX, size=12
    )
    assert mid == f"<irev-elus-2023.20230301.reminder.7d.{mark}@irev.fr>"
    assert message_id(KEY, DELIVERY, "irev-elus-2023", "irev.fr") == mid  # a resend's
    assert message_id(b"y" * 32, DELIVERY, "irev-elus-2023", "irev.fr") != mid
    assert parse(f" {mid} ") == OurMessageId(
        "irev-elus-2023", "2023-03-01", "reminder", "7d", marked=True
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # What earlier releases wrote: a plain digest anyone could compute.
        (
            "<irev-elus-2023.20230301.cancellation.v2.0123456789abcdef0123@irev.fr>",
            OurMessageId("irev-elus-2023", "2023-03-01", "cancellation", "v2", marked=False),
        ),
        ("<a-newsletter-sent-by-a-colleague@irev.fr>", None),
        ("<irev-elus-2023.20230301.reminder.7d.TOOSHORT@irev.fr>", None),
        ("irev-elus-2023.20230301.reminder.7d.0123456789abcdef01234567@irev.fr", None),
    ],
)
def test_only_our_forms_are_read(text: str, expected: OurMessageId | None) -> None:
    assert parse(text) == expected
