"""Addresses nobody mails any more, and which of them a bounce report names."""

from __future__ import annotations

from datetime import datetime

from ..core.message_ids import parse
from .database import Database
from .values import Suppression, canonical, stamp

SUPPRESSION_SOURCES = ("staff", "bounce", "unsubscribe")


class Suppressions:
    """The ledger's part that keeps the suppression list."""

    db: Database

    def suppress(
        self, address: str, *, reason: str, source: str, at: datetime, reply: str = ""
    ) -> bool:
        """Stop mailing `address`; True if newly suppressed (a first reason is kept)."""
        if source not in SUPPRESSION_SOURCES:
            raise ValueError(f"suppression source {source!r} is not one of {SUPPRESSION_SOURCES}")
        return bool(
            self.db.write(
                [
                    (
                        "INSERT INTO suppressions (address, reason, source, reply, created_at) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (canonical(address), reason, source, reply, stamp(at)),
                    )
                ]
            )[0]
        )

    def unsuppress(self, address: str) -> bool:
        """Mail `address` again; True if it was suppressed in the ledger."""
        delete = ("DELETE FROM suppressions WHERE address = ?", (canonical(address),))
        return bool(self.db.write([delete])[0])

    def suppressions(self) -> list[Suppression]:
        """Every suppression in the ledger, newest first."""
        return [
            Suppression(str(a), str(r), str(s), str(p), datetime.fromisoformat(str(c)))
            for a, r, s, p, c in self.db.execute(
                "SELECT address, reason, source, reply, created_at FROM suppressions "
                "ORDER BY created_at DESC, address"
            )
        ]

    def suppressed_addresses(self) -> frozenset[str]:
        return frozenset(a for (a,) in self.db.execute("SELECT address FROM suppressions"))

    def recipient_of(self, message_id: str, named: str = "") -> str | None:
        """The address a message of ours went to, by its Message-ID as a bounce report
        quotes it, and `named`, the address the report names, if any.

        Message-IDs are not indexed: each is a mark of its delivery, so a batch's IDs
        would land all through such an index, and claiming at a million rows cost three
        times as much. Ours name the session's day, the kind and the lead
        (core.message_ids): the sessions of that day are found through the unique index,
        then the named address in one lookup each, else that reminder's rows compared (a
        report naming no address, or one a forward changed). Any other Message-ID is
        none of ours, and costs no lookup: a stranger's reports never scan the table.
        """
        mid = message_id.strip()
        ours = parse(mid)
        if ours is None:
            return None
        kind, lead = ours.kind, ours.lead
        first, end = ours.day, f"{ours.day}U"  # 'U' follows the 'T' of every session that day
        sessions: list[str] = []
        while row := self.db.execute(
            "SELECT session FROM deliveries WHERE session > ? AND session < ? "
            "ORDER BY session LIMIT 1",
            (sessions[-1] if sessions else first, end),
        ).fetchone():
            sessions.append(str(row[0]))
        if named:
            for session in sessions:
                row = self.db.execute(
                    "SELECT recipient FROM deliveries WHERE session = ? AND kind = ? "
                    "AND lead = ? AND recipient = ? AND message_id = ?",
                    (session, kind, lead, named.strip().casefold(), mid),
                ).fetchone()
                if row:
                    return str(row[0])
        for session in sessions:
            row = self.db.execute(
                "SELECT recipient FROM deliveries WHERE session = ? AND kind = ? AND lead = ? "
                "AND message_id = ? LIMIT 1",
                (session, kind, lead, mid),
            ).fetchone()
            if row:
                return str(row[0])
        return None
