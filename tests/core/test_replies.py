"""Which permanent refusals mean the mailbox does not exist: enhanced code first, then words."""

import pytest

from reminder.core.replies import Refusal, classify


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("550 5.1.1 <a@example.org>: Recipient address rejected: User unknown", Refusal.NO_MAILBOX),
        (
            "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
            Refusal.NO_MAILBOX,
        ),
        ("550 5.1.1 The email account that you tried to reach does not exist.", Refusal.NO_MAILBOX),
        ("550 User unknown", Refusal.NO_MAILBOX),
        ("550 Requested action not taken: no such user here", Refusal.NO_MAILBOX),
        (
            "553 sorry, that domain isn't in my list of allowed rcpthosts; no such mailbox",
            Refusal.NO_MAILBOX,
        ),
        ("550 5.7.1 Service unavailable; client host blocked using Spamhaus", Refusal.POLICY),
        ("550 5.7.26 Unauthenticated email is not accepted: user unknown to DMARC", Refusal.POLICY),
        ("552 5.2.2 Mailbox full", Refusal.OTHER),
        ("550 Mailbox unavailable", Refusal.OTHER),
        ("554 Transaction failed", Refusal.OTHER),
        ("450 4.1.1 user unknown, try later", Refusal.OTHER),
        ("address refused before sending: bad character", Refusal.OTHER),
    ],
)
def test_enhanced_code_first_then_the_reply_text(reply: str, expected: Refusal) -> None:
    assert classify(reply) is expected
