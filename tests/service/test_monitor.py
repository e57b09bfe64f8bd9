"""What the worker tells Prometheus: label values a monitoring system can hold."""

from __future__ import annotations

from datetime import UTC, datetime

from reminder.core.mailing import DeliveryKey, MailKind
from reminder.service.monitor import Monitor


def test_notice_versions_do_not_become_label_values() -> None:
    monitor = Monitor(lambda: datetime(2023, 3, 1, 12, tzinfo=UTC))
    session = "2023-03-01T17:00+01:00"
    for version in (1, 2, 3):
        key = DeliveryKey(session, MailKind.CANCELLATION, "", "a@example.org", version)
        monitor.settled(key, "sent")
    monitor.settled(DeliveryKey(session, MailKind.REMINDER, "1d", "a@example.org"), "sent")
    text = monitor.metrics.exposition().decode()
    assert 'reminder_deliveries_total{kind="cancellation",lead="",outcome="sent"} 3.0' in text
    assert 'reminder_deliveries_total{kind="reminder",lead="1d",outcome="sent"} 1.0' in text
    assert 'lead="v' not in text
