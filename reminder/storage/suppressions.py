"""Who is not mailed: addresses nobody mails any more (and which of them a bounce
report names), and registrants' declines of one session."""

from __future__ import annotations

from datetime import date, datetime

from ..core.declines import Decline, Declines
from ..core.message_ids import parse
from .database import Database
from .values import Suppression, canonical, stamp, unstamp

SUPPRESSION_SOURCES = ("staff", "bounce", "unsubscribe")


class Suppressions:
    """The ledger's part that keeps who is not mailed: the suppression list, and the
    sessions registrants declined."""

    db: Database
    choices_made = 0  # declines and undoings written through this connection

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

    def decline(self, session_id: str, address: str, day: date, at: datetime) -> bool:
        """Record that `address` will not come to a session held on `day`; True if this
        changes anything (a decline already standing keeps its first date)."""
        changed = bool(
            self.db.write(
                [
                    (
                        "INSERT INTO declines (session_id, recipient, day, declined_at) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (session_id, recipient) DO UPDATE "
                        "SET day = excluded.day, declined_at = excluded.declined_at, "
                        "undone_at = NULL WHERE declines.undone_at IS NOT NULL "
                        "OR declines.day != excluded.day",
                        (session_id, canonical(address), day.isoformat(), stamp(at)),
                    )
                ]
            )[0]
        )
        self.choices_made += changed
        return changed

    def undo_decline(self, session_id: str, address: str, at: datetime) -> bool:
        """ "Finalement je viendrai": True if a decline was standing and is now undone."""
        undo = (
            "UPDATE declines SET undone_at = ? WHERE session_id = ? AND recipient = ? "
            "AND undone_at IS NULL",
            (stamp(at), session_id, canonical(address)),
        )
        changed = bool(self.db.write([undo])[0])
        self.choices_made += changed
        return changed

    def declines(self) -> Declines:
        """Every decline recorded, undone ones too: a few rows a session, read at each pass."""
        return Declines(
            Decline(
                str(session_id),
                str(recipient),
                date.fromisoformat(str(day)),
                datetime.fromisoformat(str(declined_at)),
                unstamp(str(undone_at) if undone_at else None),
            )
            for session_id, recipient, day, declined_at, undone_at in self.db.execute(
                "SELECT session_id, recipient, day, declined_at, undone_at FROM declines "
                "ORDER BY session_id, recipient"
            )
        )

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
