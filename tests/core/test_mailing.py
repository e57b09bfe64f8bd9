"""The words of mailing: what the ledger and the Message-IDs keep of them stays as it was."""

import pytest

from reminder.core.mailing import NOTICE_KINDS, DeliveryKey, DeliveryState, MailKind
from reminder.core.message_ids import message_id

APPOINTMENT = "2023-03-01T17:00+01:00"
REMINDER = DeliveryKey(APPOINTMENT, MailKind.REMINDER, "1d", "anne@example.org")
NOTICE = DeliveryKey(APPOINTMENT, MailKind.CANCELLATION, "", "anne@example.org", version=3)


@pytest.mark.parametrize("key", [REMINDER, NOTICE], ids=["reminder", "notice"])
def test_a_key_is_read_back_from_the_ledger_columns_it_is_written_to(key: DeliveryKey) -> None:
    assert DeliveryKey.from_stored(*key.stored) == key


def test_a_notice_version_is_its_own_field_and_keeps_its_text_in_the_ledger() -> None:
    assert NOTICE.stored == (APPOINTMENT, "cancellation", "v3", "anne@example.org")
    assert (NOTICE.version, NOTICE.lead) == (3, "")
    assert REMINDER.stored == (APPOINTMENT, "reminder", "1d", "anne@example.org")


def test_the_words_are_stored_as_they_always_were() -> None:
    assert [str(kind) for kind in (MailKind.REMINDER, *NOTICE_KINDS)] == [
        "reminder",
        "update",
        "cancellation",
    ]
    assert [str(state) for state in DeliveryState] == [
        "claimed",
        "waiting",
        "sent",
        "failed",
        "superseded",
    ]


def test_message_ids_are_those_the_last_release_wrote() -> None:
    """Receivers drop a resend by its Message-ID, and a bounce is matched by it: the same
    delivery under the same key gives the same one, the notice's version written "v3"."""
    key = b"0123456789abcdef0123456789abcdef"
    assert message_id(key, NOTICE, "irev-elus-2023", "irev.fr") == (
        "<irev-elus-2023.20230301.cancellation.v3.1249b539d929505833f0c824@irev.fr>"
    )
    assert message_id(key, REMINDER, "irev-elus-2023", "irev.fr") == (
        "<irev-elus-2023.20230301.reminder.1d.6f0a766d0d4c51ed986e8b0a@irev.fr>"
    )
