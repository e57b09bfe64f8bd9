"""What `status`, `history` and the status page read: counts, rows, errors, late sends."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from ..core.mailing import DeliveryState, MailKind
from .database import Database
from .schema import IS_CLAIMED, IS_NOT_SENT
from .values import Row, stamp, unstamp

_ROW_COLUMNS = (
    "session, kind, lead, recipient, status, message_id, due_at, attempts, "
    "sent_at, updated_at, last_reply, fault"
)


def _row(values: tuple[object, ...]) -> Row:
    session, kind, lead, recipient, status, mid, due, attempts, sent, updated, reply, fault = values
    state = DeliveryState(str(status))
    if fault and state is DeliveryState.CLAIMED:
        state = DeliveryState.WAITING  # the fault holds it until a fixed config sends it
    return Row(
        str(session),
        MailKind(str(kind)),
        str(lead),
        str(recipient),
        state,
        str(mid or ""),
        datetime.fromisoformat(str(due)),
        int(str(attempts)),
        unstamp(str(sent) if sent else None),
        datetime.fromisoformat(str(updated)),
        str(reply),
        str(fault or ""),
    )


class Reports:
    """The ledger's part that answers questions about deliveries, and changes nothing."""

    db: Database

    def rows(
        self, *, session_prefix: str = "", recipient: str = "", since: datetime | None = None
    ) -> list[Row]:
        """The history, oldest first, optionally for one session (by date) or one address,
        or only what changed since an instant."""
        # Only the constant column list is formatted in; every value is a bound parameter.
        query = f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE session LIKE ? "  # noqa: S608
        parameters: list[str] = [f"{session_prefix}%"]
        if recipient:
            query += "AND recipient = ? "
            parameters.append(recipient.strip().casefold())
        if since is not None:
            query += "AND updated_at >= ? "
            parameters.append(stamp(since))
        query += "ORDER BY due_at, session, lead, recipient"
        return [_row(values) for values in self.db.execute(query, parameters)]

    def counts(self) -> dict[tuple[str, str, str], dict[DeliveryState, int]]:
        """(appointment, kind, lead) -> state -> number of deliveries; claims that wait on
        a configuration fault count as WAITING."""
        found: dict[tuple[str, str, str], dict[DeliveryState, int]] = defaultdict(dict)
        # Without reading the millions of sent rows: the totals from the unique index
        # alone, the few deliveries not sent through the status index, and the sent the
        # difference. (An index on the status as well would count faster, but every
        # result of a batch would then move an entry in it: half as much again per commit.)
        # One statement, so one snapshot: workers claim while the status page counts.
        rows = self.db.execute(
            "SELECT session, kind, lead, '', 0, count(*) FROM deliveries "  # noqa: S608
            "GROUP BY session, kind, lead UNION ALL "
            "SELECT session, kind, lead, status, CASE WHEN fault IS NULL THEN 0 ELSE 1 END, "
            f"count(*) FROM deliveries WHERE {IS_NOT_SENT} "
            "GROUP BY session, kind, lead, status, CASE WHEN fault IS NULL THEN 0 ELSE 1 END"
        ).fetchall()
        for session, kind, lead, status, _, number in rows:
            if not status:
                found[session, kind, lead][DeliveryState.SENT] = number
        for session, kind, lead, status, waiting, number in rows:
            if status:
                counted = found[session, kind, lead]
                counted[DeliveryState.SENT] -= number
                state = DeliveryState(status)
                if waiting and state is DeliveryState.CLAIMED:
                    state = DeliveryState.WAITING
                counted[state] = counted.get(state, 0) + number
        for counted in found.values():
            if not counted[DeliveryState.SENT]:
                del counted[DeliveryState.SENT]
        return {key: dict(sorted(counted.items())) for key, counted in sorted(found.items())}

    def open_claims(self, now: datetime) -> int:
        """Claims not settled that can still be sent."""
        return int(
            self.db.execute(
                f"SELECT count(*) FROM deliveries WHERE {IS_CLAIMED} AND not_after > ?",  # noqa: S608
                (stamp(now),),
            ).fetchone()[0]
        )

    def faults(self) -> list[Row]:
        """Claims waiting on a configuration fault, most recent first."""
        return [
            _row(values)
            for values in self.db.execute(
                f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE {IS_CLAIMED} "  # noqa: S608
                "AND fault IS NOT NULL ORDER BY updated_at DESC"
            )
        ]

    def last_error(self) -> Row | None:
        """The most recent delivery that did not go through, with the server's reply."""
        values = self.db.execute(
            f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE {IS_NOT_SENT} "  # noqa: S608
            "AND last_reply != '' ORDER BY updated_at DESC LIMIT 1"
        ).fetchone()
        return _row(values) if values else None

    def errors(self, limit: int = 10) -> list[Row]:
        """The most recent deliveries that did not go through, newest first."""
        return [
            _row(values)
            for values in self.db.execute(
                f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE {IS_NOT_SENT} "  # noqa: S608
                "AND last_reply != '' ORDER BY updated_at DESC LIMIT ?",
                (limit,),
            )
        ]

    def late_counts(self, tolerance: timedelta) -> dict[tuple[str, str, str], int]:
        """(session, kind, lead) -> deliveries sent more than `tolerance` after their instant."""
        return {
            (session, kind, lead): number
            for session, kind, lead, number in self.db.execute(
                # Only the dialect's expression over two column names is formatted in.
                "SELECT session, kind, lead, count(*) FROM deliveries WHERE status = 'sent' "  # noqa: S608
                f"AND {self.db.seconds_between('due_at', 'sent_at')} > ? "
                "GROUP BY session, kind, lead",
                (tolerance.total_seconds(),),
            )
        }

    def recipients(self) -> frozenset[str]:
        """Everyone the cycle ever mailed: their unsubscribe links must keep working after
        they leave the export."""
        return frozenset(a for (a,) in self.db.execute("SELECT DISTINCT recipient FROM deliveries"))

    def write_problem(self) -> str | None:
        """Why a write could not start now (for readiness), or None when it could.

        Waits 0.2 s at most for another process's lock, not the 30 s a delivery waits.
        """
        return self.db.write_problem()
