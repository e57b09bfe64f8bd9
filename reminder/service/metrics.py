"""Prometheus metrics of one worker, in a registry of its own (never an address in a label)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# The classic text format, which generate_latest writes for names like ours and every
# Prometheus release reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OUTCOMES = ("sent", "late", "failed", "superseded")
# From a prompt send (well under a second) to a reminder sent days late.
DUE_TO_ACCEPT_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400)
# From a loop that keeps up (a millisecond) to one held for seconds.
LOOP_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

__all__ = ["CONTENT_TYPE", "OUTCOMES", "Metrics"]

# No `_created` series beside every counter: twice the lines for a start time nobody
# alerts on. (A process-wide switch: this process is the worker.)
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream


class Metrics:
    """The worker's gauges, counters and histogram; `/metrics` exposes `exposition()`."""

    def __init__(self) -> None:
        # A registry per worker: tests run several workers in one process.
        self.registry = CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(
            "reminder_deliveries",
            "Deliveries settled, by kind, lead and outcome (sent on time, late, failed, "
            "superseded)",
            ["kind", "lead", "outcome"],
            registry=r,
        )
        self.in_flight = Gauge(
            "reminder_messages_in_flight",
            "Messages handed to the transport, not settled yet",
            registry=r,
        )
        self.due_to_accept = Histogram(
            "reminder_due_to_accept_seconds",
            "Seconds from a reminder's due instant to the server accepting it",
            buckets=DUE_TO_ACCEPT_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            "reminder_event_loop_lag_seconds",
            "How late a periodic tick of the event loop came: what blocked the loop",
            buckets=LOOP_LAG_BUCKETS,
            registry=r,
        )
        self.next_wakeup = Gauge(
            "reminder_next_wakeup_timestamp_seconds",
            "When the worker next wakes to send (Unix time; NaN when nothing is left)",
            registry=r,
        )
        self.last_delivery = Gauge(
            "reminder_last_delivery_timestamp_seconds",
            "When a server last accepted a reminder (Unix time; 0 before the first)",
            registry=r,
        )
        self.paused = Gauge(
            "reminder_transport_paused",
            "1 while deliveries wait for a configuration fix (login, TLS, sender), else 0",
            registry=r,
        )
        self.registrants = Gauge(
            "reminder_registrants",
            "Registrants of the export: served, suppressed, and rows with a problem",
            ["state"],
            registry=r,
        )
        self.reloads = Counter(
            "reminder_reloads", "Reloads of the edited files, by result", ["result"], registry=r
        )
        self.unsubscribes = Counter(
            "reminder_unsubscribes", "One-click unsubscribes received", registry=r
        )
        self.choices = Counter(
            "reminder_registrant_choices",
            "Registrants' choices through their signed links that changed the ledger: a "
            "session declined, or a decline undone (attend)",
            ["choice"],
            registry=r,
        )
        self.declines = Gauge(
            "reminder_declines",
            "Registrants whose decline of a session stands, by session (its planned date)",
            ["session"],
            registry=r,
        )
        self.bad_requests = Counter(
            "reminder_http_bad_requests",
            "Malformed HTTP requests answered 400 (a bad request line, header or path)",
            registry=r,
        )
        self.login_failures = Counter(
            "reminder_staff_login_failures",
            "Staff logins with a wrong user or password, from any client",
            registry=r,
        )
        self.logins_refused = Counter(
            "reminder_staff_logins_refused",
            "Staff logins refused unchecked (429) while their client, or every client, waits "
            "after too many failures",
            registry=r,
        )
        self.next_wakeup.set(float("nan"))
        for result in ("ok", "refused"):
            self.reloads.labels(result)
        for choice in ("decline", "attend"):
            self.choices.labels(choice)

    def declare_leads(self, kind: str, leads: Iterable[str]) -> None:
        """Every series exists from the start at 0, so rate() and alerts see the first one."""
        for lead in leads:
            for outcome in OUTCOMES:
                self.deliveries.labels(kind, lead, outcome)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
