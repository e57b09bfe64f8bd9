"""The two databases under the ledger: one SQL text, a dialect object for what differs.

The ledger writes its SQL once, with `?` placeholders; SQLite runs it as written,
PostgreSQL (psycopg 3, one pool per process) gets `%s` placeholders and its own types.
"""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from itertools import chain
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ..core.errors import LedgerError, LedgerUnreachable

log = logging.getLogger("reminder")
# The pool logs every failed reconnection; the ledger logs one line per outage instead.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
logging.getLogger("psycopg").setLevel(logging.ERROR)

Statement = tuple[str, Sequence[object]]
T = TypeVar("T")


class Rows(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


Execute = Callable[[str, Sequence[object]], Rows]


class Database(Protocol):
    """What the ledger needs of a database: queries, one-transaction batches, a version."""

    where: str  # for messages: a path, or a URL without its password
    shared: bool  # several workers may use it at once
    bulk: bool  # claims a chunk in one statement (PostgreSQL: bulk_claims)
    clock_sql: str  # the database's own clock, in seconds since the epoch

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> Rows: ...

    def write(self, statements: Iterable[Statement]) -> list[int]: ...

    def transaction(self, work: Callable[[Execute], T], lock: int | None = None) -> T:
        """Run `work` in one transaction; with `lock`, one such transaction at a time."""
        ...

    def reading(self) -> AbstractContextManager[None]:
        """Reads inside it see one state of the database (SQLite); on PostgreSQL each
        statement sees its own."""
        ...

    def version(self) -> int: ...

    def outside_writes(self) -> int | None:
        """A number that changes whenever another connection commits; None where that
        cannot be told."""
        ...

    def seconds_between(self, start: str, end: str) -> str:
        """SQL for the seconds from one stamped column to another."""
        ...

    def write_problem(self) -> str | None:
        """Why a write could not start now, in a fraction of a second; None if it could."""
        ...

    def migrate(self, migrations: Sequence[str]) -> int: ...

    def close(self) -> None: ...


class SqliteOnly(str):
    """A migration for SQLite alone: PostgreSQL counts it as applied and runs nothing."""


class PostgresOnly(str):
    """A migration for PostgreSQL alone: SQLite counts it as applied and runs nothing. It
    runs as one script, as written (its functions' bodies hold `;`)."""


def sql_statements(script: str) -> Iterator[str]:
    """A migration's statements, one by one: split at each `;` that ends one, which
    a trigger's body does not."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
    if pending.strip(" \n;"):
        yield pending


def is_postgres(target: str | Path) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


def redacted(url: str) -> str:
    """The URL as logs and errors may show it: never with a password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" if parts.username else f"***@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _sqlite_error(where: str, doing: str, exc: sqlite3.Error) -> LedgerError:
    """One line for every command: a damaged file says what to do about it."""
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return LedgerError(
            f"the ledger {where} is not a SQLite database ({exc}): it was damaged or "
            "replaced. Restore it from a backup; moving it aside starts an empty ledger, "
            "which forgets what was sent"
        )
    return LedgerError(f"the ledger {where} cannot be {doing}: {exc}")


class SqliteDatabase:
    """A SQLite file in WAL mode: one machine, one worker."""

    shared = False
    bulk = False
    clock_sql = "(julianday('now') - 2440587.5) * 86400.0"

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.where = str(path)
        self.db: sqlite3.Connection
        if readonly and not path.exists():
            raise LedgerError(f"no ledger at {path} yet: `reminder run` creates it")
        try:
            if readonly:
                self.db = sqlite3.connect(
                    f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=30
                )
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
                # WAL survives a process crash at every commit; NORMAL skips the per-commit
                # fsync, so only a power cut could lose the last moments (and then a resend
                # carries the same Message-ID).
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
            self.version()  # a file that is not a database says so here, in one line
        except sqlite3.Error as exc:
            raise _sqlite_error(self.where, "opened", exc) from None

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> Rows:
        try:
            return self.db.execute(sql, parameters)
        except sqlite3.Error as exc:
            raise _sqlite_error(self.where, "read", exc) from None

    def write(self, statements: Iterable[Statement]) -> list[int]:
        """Run statements in one immediate transaction; return each one's row count."""
        statements = list(statements)
        if len(statements) == 1:
            # One statement is its own transaction: the settle after each SMTP
            # transaction skips the BEGIN and COMMIT round trips.
            try:
                return [self.db.execute(*statements[0]).rowcount]
            except sqlite3.Error as exc:
                raise _sqlite_error(self.where, "written", exc) from None
        return self.transaction(
            lambda execute: [execute(sql, parameters).rowcount for sql, parameters in statements]
        )

    def transaction(self, work: Callable[[Execute], T], lock: int | None = None) -> T:
        # BEGIN IMMEDIATE takes SQLite's one write lock: `lock` is implied.
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                result = work(self.db.execute)
                self.db.execute("COMMIT")
            except BaseException:
                # SQLite has already rolled back after some errors (a full disk): a second
                # rollback would replace the real cause with "no transaction is active".
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _sqlite_error(self.where, "written", exc) from None
        return result

    @contextmanager
    def reading(self) -> Iterator[None]:
        # A read transaction: in WAL mode, a snapshot that writers do not move.
        self.execute("BEGIN")
        try:
            yield
        finally:
            if self.db.in_transaction:
                self.db.execute("COMMIT")

    def version(self) -> int:
        return int(self.execute("PRAGMA user_version").fetchone()[0])

    def outside_writes(self) -> int | None:
        try:
            return int(self.db.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return None

    def seconds_between(self, start: str, end: str) -> str:
        return f"(julianday({end}) - julianday({start})) * 86400"

    def write_problem(self) -> str | None:
        try:
            self.db.execute("PRAGMA busy_timeout = 200")
            try:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute("ROLLBACK")
            finally:
                self.db.execute("PRAGMA busy_timeout = 30000")
        except sqlite3.Error as exc:
            return str(exc)
        return None

    def migrate(self, migrations: Sequence[str]) -> int:
        """Apply the migrations this file lacks, in one transaction; return how many."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            start = self.version()
            for version in range(start, len(migrations)):
                migration = migrations[version]
                script = "" if isinstance(migration, PostgresOnly) else migration
                for statement in sql_statements(script):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {version + 1}")
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        return max(0, len(migrations) - start)

    def close(self) -> None:
        self.db.close()


_PLACEHOLDER = re.compile(r"'[^']*'|\?")


@functools.lru_cache(maxsize=256)  # the statements are constants: each converted once
def postgres_sql(sql: str) -> str:
    """`?` placeholders (outside quoted literals) as psycopg's `%s`; a literal % doubled."""
    sql = sql.replace("%", "%%")
    return _PLACEHOLDER.sub(lambda m: "%s" if m.group() == "?" else m.group(), sql)


def postgres_ddl(sql: str) -> str:
    """SQLite's auto-numbered key is PostgreSQL's identity column."""
    return sql.replace("INTEGER PRIMARY KEY", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")


def _fetched(cursor: Any) -> _Fetched:
    return _Fetched(cursor.fetchall() if cursor.description else [], cursor.rowcount)


# Causes (as `PostgresDatabase.cause` words them) that waiting for the server cannot mend.
_LASTING = ("authentication failed", "the database does not exist", "TLS required")


class _Fetched:
    """A statement's rows, read before its connection goes back to the pool."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows, self.rowcount = rows, rowcount

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)


# Any number of workers migrating at once: the first takes this lock, the others wait.
_MIGRATION_LOCK = 7_432_001


class PostgresDatabase:
    """A PostgreSQL database shared by every worker of a cycle, through a small pool.

    A lost connection (a restart, a failover) is retried for up to `patience` seconds:
    the worker pauses with one log line and resumes when the server answers again.
    """

    shared = True
    bulk = True
    clock_sql = "extract(epoch from clock_timestamp())::double precision"
    # Seconds a transaction may wait on its client between two statements. Ours never
    # pause; one that does belongs to a stopped worker (SIGSTOP, a suspended VM), whose
    # locks would otherwise hold up the others, adopting its claims included. The server
    # ends its transaction; the worker, once it runs again, finds its lease expired.
    IDLE_IN_TRANSACTION = 5.0

    def __init__(self, url: str, *, password: str | None = None, patience: float = 30.0) -> None:
        # Imported here: only those who configure PostgreSQL pay for loading it.
        import psycopg
        from psycopg_pool import ConnectionPool, PoolTimeout

        self.psycopg = psycopg
        self.pool_timeout = PoolTimeout
        self.where = redacted(url)
        self.patience = patience
        self._secret = password or urlsplit(url).password or ""
        self._down_since: float | None = None
        self._reading = threading.local()  # the connection of a `reading()` block, if any
        # Autocommit: a statement alone is its own transaction (one round trip); several
        # run inside `connection.transaction()`.
        kwargs: dict[str, Any] = {
            "connect_timeout": 5,
            "application_name": "reminder",
            "autocommit": True,
        }
        if password:
            kwargs["password"] = password
        self._url, self._kwargs = url, kwargs
        self.pool = ConnectionPool(
            url,
            kwargs=kwargs,
            min_size=1,
            max_size=4,
            open=False,
            # No check query before each use (a round trip per statement): a connection a
            # server restart broke fails its statement, leaves the pool, and _run retries.
            name="reminder-ledger",
            configure=self._configure,
        )
        # One connection first, on its own: its error names the cause (a wrong password,
        # a missing database, a closed port, TLS required), where the pool would only say,
        # after 10 s, that its initialization is incomplete.
        try:
            psycopg.connect(url, **kwargs).close()
            self.pool.open(wait=True, timeout=10)
        except (PoolTimeout, psycopg.Error) as exc:
            self.pool.close()
            cause = self.cause(exc)
            message = f"the ledger database {self.where} cannot be used: {cause}"
            if cause.startswith(_LASTING):
                raise LedgerError(message) from None  # waiting would not mend it
            raise LedgerUnreachable(message, cause=cause) from None

    def _configure(self, connection: Any) -> None:
        timeout = round(self.IDLE_IN_TRANSACTION * 1000)
        connection.execute(f"SET idle_in_transaction_session_timeout = {timeout}")
        connection.commit()

    def _clean(self, exc: BaseException) -> str:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return text.replace(self._secret, "***") if self._secret else text

    def cause(self, exc: BaseException) -> str:
        """Why the server cannot be used, in words that say what to fix."""
        text = self._clean(exc)
        found = text.lower()
        if "password authentication failed" in found or "no password supplied" in found:
            return (
                f"authentication failed ({text}): check the password in "
                "REMINDER_LEDGER__PASSWORD or the file REMINDER_LEDGER__PASSWORD_FILE names"
            )
        if "does not exist" in found and "database" in found:
            return (
                f"the database does not exist ({text}): create it, or correct the database "
                "name in ledger.url"
            )
        if "connection refused" in found:
            return (
                f"connection refused ({text}): is PostgreSQL running and listening on the "
                "host and port of ledger.url?"
            )
        if "ssl" in found or "encryption" in found or "pg_hba.conf" in found:
            return (
                f"TLS required or access refused ({text}): if the server requires TLS, add "
                "?sslmode=require to ledger.url; otherwise allow this host in pg_hba.conf"
            )
        if isinstance(exc, self.pool_timeout):
            # The pool says only that it has no connection to give: one attempt of our
            # own says why (a refused connection answers at once).
            try:
                self.psycopg.connect(self._url, **self._kwargs).close()
            except self.psycopg.Error as direct:
                return self.cause(direct)
            return f"no connection within a second ({text})"
        return text

    def _run(self, work: Callable[[Any], T], what: str, *, transaction: bool = True) -> T:
        """Run `work(connection)` in a transaction (without: its one statement is one),
        again while the server is unreachable."""

        def attempt() -> T:
            with self.pool.connection(timeout=1) as connection:
                if not transaction:
                    return work(connection)
                with connection.transaction():
                    return work(connection)

        return self._retrying(attempt, what)

    def _retrying(self, attempt: Callable[[], T], what: str) -> T:
        psycopg = self.psycopg
        deadline = time.monotonic() + self.patience
        while True:
            try:
                result = attempt()
            except (
                psycopg.OperationalError,
                psycopg.errors.DeadlockDetected,
                # The server ended a transaction this worker had left waiting (stopped
                # past IDLE_IN_TRANSACTION): nothing of it was written, so it runs again.
                psycopg.errors.IdleInTransactionSessionTimeout,
                self.pool_timeout,
            ) as exc:
                failure: BaseException = exc
            except psycopg.Error as exc:
                raise LedgerError(
                    f"the ledger database {self.where} refused to {what}: {self._clean(exc)}"
                ) from None
            else:
                if self._down_since is not None:
                    log.warning(
                        "the ledger database %s answers again after %.1f s; resuming",
                        self.where,
                        time.monotonic() - self._down_since,
                    )
                    self._down_since = None
                return result
            if isinstance(
                failure,
                psycopg.errors.DeadlockDetected | psycopg.errors.IdleInTransactionSessionTimeout,
            ):
                # Two workers claimed overlapping batches and the database chose one, or
                # the server ended a transaction this worker left waiting: at once again.
                continue
            if not self.patience:
                # The worker's ledger thread: its event loop tries again, with
                # asyncio.sleep, and keeps answering meanwhile.
                raise LedgerUnreachable(
                    f"the ledger database {self.where} cannot be reached: {self.cause(failure)}",
                    cause=self.cause(failure),
                ) from None
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning(
                    "the ledger database %s does not answer (%s); pausing until it does",
                    self.where,
                    self.cause(failure),
                )
            if time.monotonic() > deadline:
                raise LedgerUnreachable(
                    f"the ledger database {self.where} cannot be reached: {self.cause(failure)}",
                    cause=self.cause(failure),
                ) from None
            # Off the loop (invariant 13): a command's own thread, or the worker's ledger
            # thread, which calls with patience 0 and retries on its own.
            time.sleep(0.5)

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> Rows:
        text = postgres_sql(sql)
        reader = getattr(self._reading, "connection", None)
        if reader is not None:
            try:
                return _fetched(reader.execute(text, list(parameters)))
            except self.psycopg.Error as exc:
                raise LedgerError(
                    f"the ledger database {self.where} refused to read: {self._clean(exc)}"
                ) from None
        # One statement is its own transaction: one round trip, no BEGIN and COMMIT.
        return self._run(
            lambda connection: _fetched(connection.execute(text, list(parameters))),
            "read",
            transaction=False,
        )

    def write(self, statements: Iterable[Statement]) -> list[int]:
        batch = [(postgres_sql(sql), list(parameters)) for sql, parameters in statements]
        if len(batch) == 1:
            # One statement is its own transaction, as on SQLite: one round trip.
            sql, parameters = batch[0]
            return self._run(
                lambda connection: [connection.execute(sql, parameters).rowcount],
                "write",
                transaction=False,
            )

        def work(connection: Any) -> list[int]:
            # The statements as one message, their values bound by psycopg on this side
            # (quoted as literals): the server runs them as one transaction (implicit:
            # atomic, rolled back whole on an error) and answers once. In pipeline mode
            # a worker frozen between its statements and their Sync left the server
            # holding their row locks with no idle-in-transaction timeout running, and
            # BEGIN and COMMIT cost a round trip each: 385 µs a group of two where that
            # took 572 (a script, not kept).
            cursor = self.psycopg.ClientCursor(connection)
            cursor.execute(
                ";\n".join(sql for sql, _ in batch), list(chain.from_iterable(p for _, p in batch))
            )
            counts = [cursor.rowcount]
            while cursor.nextset():
                counts.append(cursor.rowcount)
            return counts

        return self._run(work, "write", transaction=False)

    def transaction(self, work: Callable[[Execute], T], lock: int | None = None) -> T:
        def run(connection: Any) -> T:
            if lock is not None:
                connection.execute("SELECT pg_advisory_xact_lock(%s)", [lock])

            def execute(sql: str, parameters: Sequence[object] = ()) -> Rows:
                return _fetched(connection.execute(postgres_sql(sql), list(parameters)))

            return work(execute)

        return self._run(run, "write")

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Reads inside it see one state of the database: a read-only REPEATABLE READ
        transaction on one connection of the pool (of this thread)."""

        def begin() -> Any:
            connection = self.pool.getconn(timeout=1)
            try:
                connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            except BaseException:
                self.pool.putconn(connection)
                raise
            return connection

        connection = self._retrying(begin, "read")
        self._reading.connection = connection
        try:
            yield
        finally:
            self._reading.connection = None
            # Nothing was written: nothing to commit. A broken connection cannot roll
            # back, and the pool discards it.
            with suppress(self.psycopg.Error):
                connection.execute("ROLLBACK")
            self.pool.putconn(connection)

    def version(self) -> int:
        if self.execute("SELECT to_regclass('reminder_schema')").fetchone()[0] is None:
            return 0
        found = self.execute("SELECT version FROM reminder_schema").fetchone()
        return int(found[0]) if found else 0

    def outside_writes(self) -> int | None:
        return None  # other workers write all the time: nothing to tell by

    def seconds_between(self, start: str, end: str) -> str:
        return f"extract(epoch from ({end}::timestamptz - {start}::timestamptz))"

    def write_problem(self) -> str | None:
        """Why a write cannot start; a server that cannot be reached at all raises
        LedgerUnreachable, as any other call would."""
        try:
            with self.pool.connection(timeout=1) as connection, connection.transaction():
                connection.execute("SELECT 1")
        except (self.psycopg.OperationalError, self.pool_timeout) as exc:
            cause = self.cause(exc)
            raise LedgerUnreachable(
                f"the ledger database {self.where} cannot be reached: {cause}", cause=cause
            ) from None
        except self.psycopg.Error as exc:
            return self.cause(exc)
        return None

    def migrate(self, migrations: Sequence[str]) -> int:
        def work(connection: Any) -> int:
            connection.execute("SELECT pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK])
            connection.execute(
                "CREATE TABLE IF NOT EXISTS reminder_schema (version INTEGER NOT NULL)"
            )
            found = connection.execute("SELECT version FROM reminder_schema").fetchone()
            if found is None:
                connection.execute("INSERT INTO reminder_schema VALUES (0)")
            start = int(found[0]) if found else 0
            for version in range(start, len(migrations)):
                migration = migrations[version]
                if isinstance(migration, PostgresOnly):
                    connection.execute(migration)  # several statements: no parameters
                elif not isinstance(migration, SqliteOnly):
                    for statement in postgres_ddl(migration).split(";"):
                        if statement.strip():
                            connection.execute(statement)
                connection.execute("UPDATE reminder_schema SET version = %s", [version + 1])
            return max(0, len(migrations) - start)

        applied: int = self._run(work, "migrate")
        return applied

    def close(self) -> None:
        self.pool.close()
