"""The ledger as the rest of the service sees it, and the backend the config selects."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from ..core.declines import Declines
from ..core.errors import LedgerError
from ..core.mailing import DeliveryKey, DeliveryState, MailKind
from ..core.notices import NoticeView, ToldGroup
from ..core.plan import LedgerView
from ..inputs.config import Config
from ..inputs.secrets import secret
from .ledger import Claim, Ledger, Outcome, Row, Suppression


class DeliveryLedger(Protocol):
    """What the dispatcher, the plan, `status` and `history` use; SQLite and PostgreSQL
    both provide it (tests/storage/test_ledger.py is its contract)."""

    worker: str
    path: str

    @property
    def shared(self) -> bool: ...

    def outside_writes(self) -> int | None: ...

    def view(
        self, sessions: Iterable[str], kind: MailKind = ..., *, claims_only: bool = False
    ) -> LedgerView: ...

    def notice_view(
        self,
        session_ids: Iterable[str],
        since: dict[str, datetime],
        listed: Mapping[str, Collection[str]] | None = None,
    ) -> NoticeView: ...

    def recipients_told(self, session_id: str, groups: Iterable[ToldGroup]) -> set[str]: ...

    def versions(self) -> dict[str, tuple[str, datetime]]: ...

    def observe(self, versions: dict[str, str], now: datetime) -> dict[str, datetime]: ...

    def adopt_claims(self, now: datetime, *, only_expired: bool = False) -> int: ...

    def release(self, keys: Iterable[DeliveryKey], now: datetime) -> None: ...

    def claim(
        self, claims: Sequence[Claim], now: datetime, *, ours: bool = False
    ) -> list[Claim]: ...

    def supersede(
        self,
        items: Sequence[tuple[DeliveryKey, datetime]],
        now: datetime,
        not_after: datetime | None = None,
    ) -> None: ...

    def record(self, outcomes: Sequence[Outcome], now: datetime) -> None: ...

    def expire(self, now: datetime) -> int: ...

    def hold(self, keys: Sequence[DeliveryKey], fault: str, now: datetime) -> None: ...

    def rows(
        self, *, session_prefix: str = "", recipient: str = "", since: datetime | None = None
    ) -> list[Row]: ...

    def open_claims(self, now: datetime) -> int: ...

    def faults(self) -> list[Row]: ...

    def suppress(
        self, address: str, *, reason: str, source: str, at: datetime, reply: str = ""
    ) -> bool: ...

    def unsuppress(self, address: str) -> bool: ...

    def suppressions(self) -> list[Suppression]: ...

    def suppressed_addresses(self) -> frozenset[str]: ...

    def declines(self) -> Declines: ...

    def counts(self) -> dict[tuple[str, str, str], dict[DeliveryState, int]]: ...

    def last_error(self) -> Row | None: ...

    def close(self) -> None: ...


def ledger_target(config: Config) -> Path | str:
    """The PostgreSQL URL of ledger.url, or the SQLite file in the state folder."""
    return config.ledger.url or config.ledger_file


def ledger_password(config: Config) -> str | None:
    """REMINDER_LEDGER__PASSWORD, or the file REMINDER_LEDGER__PASSWORD_FILE names: asked
    for only by what opens a PostgreSQL ledger."""
    return secret(config, "ledger", "password") if config.ledger.url else None


def ledger_patience(config: Config) -> float:
    """How long a lost PostgreSQL connection is retried: two leases (at least 30 s), long
    enough for a restart or a failover, with every outcome kept."""
    return max(30.0, 2 * config.ledger.lease.total_seconds())


def open_ledger(
    config: Config,
    *,
    worker: str = "",
    readonly: bool = False,
    migrate: bool = True,
    patience: float | None = None,
) -> Ledger:
    """The ledger the config names. With `patience` 0, a call that cannot reach the
    database raises LedgerUnreachable at once: the worker's loop retries it, asleep."""
    return Ledger(
        ledger_target(config),
        worker=worker,
        readonly=readonly,
        password=ledger_password(config),
        patience=ledger_patience(config) if patience is None else patience,
        migrate=migrate,
    )


# What a copy leaves behind: who was alive and the sending budget belong to one cluster.
_NOT_COPIED = frozenset({"workers", "rate_sends"})


def copy_ledger(source: Ledger, target: Ledger) -> dict[str, int]:
    """Copy every table of a SQLite ledger into an empty (migrated) one, then compare
    them row for row; return the rows copied per table."""
    if source.shared:
        raise LedgerError("the source of a copy is the SQLite ledger of paths.state")
    if source.version() != target.version():
        raise LedgerError(
            f"the two ledgers have different schemas ({source.version()} and "
            f"{target.version()}): run this release on both first"
        )
    tables = [
        str(name)
        for (name,) in source.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
        if name not in _NOT_COPIED
    ]
    held = target.db.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    if held:
        raise LedgerError(
            f"{target.path} already holds {held} deliveries: copy into an empty ledger"
        )
    copied: dict[str, int] = {}
    for table in tables:
        columns = [str(row[1]) for row in source.db.execute(f"PRAGMA table_info({table})")]
        listed = ", ".join(columns)
        # Table and column names come from the ledger's own schema; values are bound.
        select = f"SELECT {listed} FROM {table} ORDER BY {listed}"  # noqa: S608
        rows = source.db.execute(select).fetchall()
        insert = (
            f"INSERT INTO {table} ({listed}) "  # noqa: S608
            f"VALUES ({', '.join('?' for _ in columns)})"
        )
        target.db.write((insert, tuple(row)) for row in rows)
        # Compared as multisets: each database orders text by its own collation (a
        # PostgreSQL database in a language's collation puts "a-b" before "a+b").
        if Counter(map(tuple, target.db.execute(select).fetchall())) != Counter(map(tuple, rows)):
            raise LedgerError(f"the copy of {table} into {target.path} differs from its source")
        copied[table] = len(rows)
    if target.shared:
        # Explicit ids were copied: the identity column continues after the largest.
        target.db.write(
            [
                (
                    "SELECT setval(pg_get_serial_sequence('deliveries', 'id'), "
                    "(SELECT coalesce(max(id), 0) + 1 FROM deliveries), false)",
                    (),
                )
            ]
        )
    return copied
