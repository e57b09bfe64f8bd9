"""The delivery ledger: one object over SQLite or PostgreSQL, made of the parts beside it."""

from __future__ import annotations

from pathlib import Path

from .database import PostgresDatabase, SqliteDatabase, is_postgres
from .deliveries import Deliveries
from .reports import Reports
from .schema import MIGRATIONS, check_version
from .suppressions import Suppressions
from .told import ToldFacts
from .values import Claim, Outcome, Row, Suppression, canonical, stamp

# Callers import the ledger's values from here, beside the ledger itself.
__all__ = [
    "MIGRATIONS",
    "Claim",
    "Ledger",
    "Outcome",
    "Row",
    "Suppression",
    "canonical",
    "stamp",
]


class Ledger(Deliveries, ToldFacts, Suppressions, Reports):
    """The ledger's one SQL implementation, over SQLite (a file) or PostgreSQL (a URL).

    The database itself enforces one row per delivery, so several workers sharing a
    PostgreSQL ledger never both win one. Each part it is made of holds one concern
    (deliveries, what was told, suppressions, reports), over the same `db`.
    """

    def __init__(
        self,
        target: Path | str,
        *,
        worker: str = "",
        readonly: bool = False,
        password: str | None = None,
        patience: float = 30.0,
        migrate: bool = True,
    ) -> None:
        self.worker = worker
        self.readonly = readonly
        self.db = (
            PostgresDatabase(str(target), password=password, patience=patience)
            if is_postgres(target)
            else SqliteDatabase(Path(target), readonly=readonly)
        )
        self.path = self.db.where
        try:
            if migrate and not readonly:
                check_version(self.version(), self.path, readonly=readonly)
                self.db.migrate(MIGRATIONS)
            check_version(self.version(), self.path, readonly=readonly)
        except BaseException:
            self.db.close()
            raise

    @property
    def shared(self) -> bool:
        """Several workers may share this ledger (PostgreSQL)."""
        return self.db.shared

    def outside_writes(self) -> int | None:
        """A number that changes whenever something other than a delivery pass writes to
        this ledger: another process (a command, another worker), or a registrant's
        choice through this worker's own HTTP face; None when that cannot be told
        (PostgreSQL)."""
        mark = self.db.outside_writes()
        # Both only grow: their sum changes whenever either does.
        return None if mark is None else mark + self.choices_made

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def version(self) -> int:
        return self.db.version()
