"""What each session's registrants were told: the notice view, the told counts, and
since when each session's current version has stood."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

from ..core.mailing import NOTICE_KINDS, DeliveryKey, DeliveryState
from ..core.notices import ALWAYS, Facts, NoticeView, Told, ToldGroup
from .database import Database
from .schema import IS_CLAIMED
from .values import stamp

# Added as new claims with facts are won, in the same transaction: their group counts them
# (SQLite; on PostgreSQL the claim statement counts them itself).
COUNT_TOLD = (
    "INSERT INTO told_facts (session_id, fact_start, fact_end, fact_join_url, fact_status, "
    "fact_topic, sequence, rows) VALUES (?, ?, ?, coalesce(?, ''), ?, coalesce(?, ''), ?, ?) "
    "ON CONFLICT (session_id, fact_start, fact_end, fact_join_url, fact_status, fact_topic, "
    "sequence) DO UPDATE SET rows = rows + excluded.rows"
)


# Registrants whose rows one query reads, by their keys.
_LOOKUPS = 500
_TOLD_COLUMNS = (
    "recipient, session, kind, lead, status, next_attempt_at, fact_start, fact_end, "
    "fact_join_url, fact_status, fact_topic, sequence, sent_at, id"
)


def _facts(known: dict[tuple[str, str, str, str, str], Facts], said: Sequence[Any]) -> Facts:
    """Facts as stored, one value for each distinct set (a million rows tell a few)."""
    start, end, link, status, topic = said
    key = (start, end, link or "", status, topic or "")
    facts = known.get(key)
    if facts is None:
        facts = known[key] = Facts(
            datetime.fromisoformat(start), datetime.fromisoformat(end), key[2], status, key[4]
        )
    return facts


def _file_notice(
    claims: dict[tuple[str, str], dict[DeliveryKey, datetime]],
    settled: set[DeliveryKey],
    session_id: str,
    key: DeliveryKey,
    status: str,
    retry_at: str,
) -> None:
    """A notice's row: an open claim and when it may be tried again, or settled."""
    if status == DeliveryState.CLAIMED:
        claims[session_id, key.recipient][key] = datetime.fromisoformat(retry_at)
    else:
        settled.add(key)


def _told_group(row: Sequence[Any]) -> tuple[str, str, str, str, str, int]:
    """The told_facts key of a row read with _TOLD_COLUMNS."""
    start, end, link, status, topic, sequence = row[6:12]
    return (start, end, link or "", status, topic or "", int(sequence))


class ToldFacts:
    """The ledger's part the notice plan reads: what was told, and session versions."""

    db: Database

    def notice_view(
        self,
        session_ids: Iterable[str],
        since: dict[str, datetime],
        listed: Mapping[str, Collection[str]] | None = None,
    ) -> NoticeView:
        """What these sessions' registrants were last told, and their open or settled notices.

        With `listed` (session id -> registrant keys), only those registrants' rows are
        read, and those of anyone with an open notice claim; `rest` says, from the
        counts, what everybody else was told.
        """
        if listed is None:
            return self._full_notice_view(session_ids, since)
        # The counts and the rows read beside them must agree: one state of the ledger,
        # even while a worker sends.
        with self.db.reading():
            return self._counted_notice_view(session_ids, since, listed)

    def _counted_notice_view(
        self,
        session_ids: Iterable[str],
        since: dict[str, datetime],
        listed: Mapping[str, Collection[str]],
    ) -> NoticeView:
        told: dict[str, dict[str, Told]] = defaultdict(dict)
        settled: set[DeliveryKey] = set()
        claims: dict[tuple[str, str], dict[DeliveryKey, datetime]] = defaultdict(dict)
        rest: dict[str, tuple[ToldGroup, ...]] = {}
        kinds = ", ".join(f"'{kind}'" for kind in NOTICE_KINDS)
        known: dict[tuple[str, str, str, str, str], Facts] = {}
        for session_id in set(session_ids):
            who = set(listed.get(session_id, ()))
            who.update(
                recipient
                for (recipient,) in self.db.execute(
                    f"SELECT recipient FROM deliveries WHERE {IS_CLAIMED} "  # noqa: S608
                    f"AND session_id = ? AND kind IN ({kinds})",
                    (session_id,),
                )
            )
            counted: Counter[tuple[str, str, str, str, str, int]] = Counter()
            ordered = sorted(who)
            for first in range(0, len(ordered), _LOOKUPS):
                chunk = ordered[first : first + _LOOKUPS]
                rows = self.db.execute(
                    f"SELECT {_TOLD_COLUMNS} FROM deliveries WHERE session_id = ? "  # noqa: S608
                    f"AND recipient IN ({', '.join('?' * len(chunk))})",
                    (session_id, *chunk),
                ).fetchall()
                rows.sort(key=itemgetter(0))
                for recipient, mine in groupby(rows, key=itemgetter(0)):
                    mine_rows = list(mine)
                    self._read_told(session_id, recipient, mine_rows, known, told, counted)
                    for _, session, kind, lead, status, retry_at, *_ in mine_rows:
                        if kind in NOTICE_KINDS:
                            key = DeliveryKey.from_stored(session, kind, lead, recipient)
                            _file_notice(claims, settled, session_id, key, status, retry_at)
            rest[session_id] = self._rest(session_id, counted, known)
        return NoticeView(dict(told), frozenset(settled), dict(claims), since, rest)

    def recipients_told(self, session_id: str, groups: Iterable[ToldGroup]) -> set[str]:
        """Who has a counted row in these groups (claimed or sent with their facts)."""
        found: set[str] = set()
        for group in groups:
            facts = group.facts
            found.update(
                recipient
                for (recipient,) in self.db.execute(
                    "SELECT DISTINCT recipient FROM deliveries WHERE session_id = ? "
                    "AND status IN ('sent', 'claimed') AND fact_start = ? AND fact_end = ? "
                    "AND coalesce(fact_join_url, '') = ? AND fact_status = ? "
                    "AND coalesce(fact_topic, '') = ? AND sequence = ?",
                    (
                        session_id,
                        facts.start.isoformat(),
                        facts.end.isoformat(),
                        facts.join_url,
                        facts.status,
                        facts.topic,
                        group.sequence,
                    ),
                )
            )
        return found

    def _read_told(
        self,
        session_id: str,
        recipient: str,
        rows: list[tuple[Any, ...]],
        known: dict[tuple[str, str, str, str, str], Facts],
        told: dict[str, dict[str, Told]],
        counted: Counter[tuple[str, str, str, str, str, int]],
    ) -> None:
        """One registrant's rows for a session: what they were last told, and which rows
        told_facts counts (claimed with facts; sent at their highest SEQUENCE)."""
        sent = [r for r in rows if r[4] == DeliveryState.SENT and r[6] is not None]
        if sent:
            last = max(sent, key=itemgetter(12, 13))
            told[session_id][recipient] = Told(
                _facts(known, last[6:11]), int(last[11]), datetime.fromisoformat(last[12])
            )
            level = max(r[11] for r in sent)
            counted.update(_told_group(r) for r in sent if r[11] == level)
        counted.update(
            _told_group(r) for r in rows if r[4] == DeliveryState.CLAIMED and r[6] is not None
        )

    def _rest(
        self,
        session_id: str,
        counted: Counter[tuple[str, str, str, str, str, int]],
        known: dict[tuple[str, str, str, str, str], Facts],
    ) -> tuple[ToldGroup, ...]:
        """told_facts' counts for a session less the rows already read one by one."""
        groups = []
        # The sum of a group's rows: PostgreSQL keeps several per group (its shards).
        for *said, sequence, rows in self.db.execute(
            "SELECT fact_start, fact_end, fact_join_url, fact_status, fact_topic, sequence, "
            "sum(rows) FROM told_facts WHERE session_id = ? GROUP BY 1, 2, 3, 4, 5, 6 "
            "HAVING sum(rows) != 0",
            (session_id,),
        ):
            key = (*said, int(sequence))
            left = int(rows) - counted.pop(key, 0)
            if left:
                groups.append(ToldGroup(_facts(known, said), int(sequence), left))
        # Rows read that the counts do not hold: they cannot settle anything.
        groups.extend(
            ToldGroup(_facts(known, key[:5]), key[5], -count) for key, count in counted.items()
        )
        return tuple(groups)

    def _full_notice_view(
        self, session_ids: Iterable[str], since: dict[str, datetime]
    ) -> NoticeView:
        """Every told row of these sessions: what each registrant was told last."""
        told: dict[str, dict[str, Told]] = defaultdict(dict)
        settled: set[DeliveryKey] = set()
        claims: dict[tuple[str, str], dict[DeliveryKey, datetime]] = defaultdict(dict)
        kinds = ", ".join(f"'{kind}'" for kind in NOTICE_KINDS)
        # A million registrants were told a handful of distinct facts: one value each.
        known: dict[tuple[str, str, str, str, str], Facts] = {}
        for session_id in set(session_ids):
            # Oldest first, so each registrant keeps the facts of the last mail sent
            # (one SQL for both databases: no bare columns beside an aggregate).
            for row in self.db.execute(
                "SELECT recipient, fact_start, fact_end, fact_join_url, fact_status, fact_topic, "
                "sequence, sent_at FROM deliveries WHERE session_id = ? AND status = 'sent' "
                "AND fact_start IS NOT NULL ORDER BY sent_at, id",
                (session_id,),
            ):
                who, sequence, sent_at = row[0], row[6], row[7]
                facts = _facts(known, row[1:6])
                told[session_id][who] = Told(facts, int(sequence), datetime.fromisoformat(sent_at))
            for session, kind, lead, who, status, retry_at in self.db.execute(
                "SELECT session, kind, lead, recipient, status, next_attempt_at "  # noqa: S608
                f"FROM deliveries WHERE session_id = ? AND kind IN ({kinds})",
                (session_id,),
            ):
                _file_notice(
                    claims,
                    settled,
                    session_id,
                    DeliveryKey.from_stored(session, kind, lead, who),
                    status,
                    retry_at,
                )
        return NoticeView(dict(told), frozenset(settled), dict(claims), since)

    def versions(self) -> dict[str, tuple[str, datetime]]:
        """Session id -> (version digest, since when it has stood)."""
        return {
            session_id: (version, datetime.fromisoformat(since))
            for session_id, version, since in self.db.execute(
                "SELECT session_id, version, since FROM session_versions"
            )
        }

    def observe(self, versions: dict[str, str], now: datetime) -> dict[str, datetime]:
        """Record each session's current version; return since when each has stood.

        A session seen for the first time has stood "always": only a change seen by a
        worker starts the settling delay, so a fresh ledger sends on time.
        """
        known = self.versions()
        at = stamp(now)
        fresh = [
            (
                "INSERT INTO session_versions (session_id, version, since) VALUES (?, ?, ?) "
                "ON CONFLICT (session_id) DO UPDATE SET version = excluded.version, "
                "since = excluded.since WHERE session_versions.version != excluded.version",
                (session_id, version, stamp(ALWAYS) if session_id not in known else at),
            )
            for session_id, version in versions.items()
            if known.get(session_id, ("",))[0] != version
        ]
        if fresh:
            self.db.write(fresh)
            known = self.versions()
        return {session_id: known[session_id][1] for session_id in versions if session_id in known}
