"""The one exception hierarchy: every message is written for the person who must act."""

from __future__ import annotations

from dataclasses import dataclass

# A key of config.toml as a path: ("sessions", 2, "topic") is sessions[2].topic.
KeyPath = tuple[str | int, ...]


def dotted(at: KeyPath) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in at).lstrip(".")


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth a look) in an input file, located as precisely as we can."""

    source: str
    message: str
    line: int | None = None
    column: int | None = None
    key: str | None = None
    severity: str = "error"  # "error" | "warning"
    row: int | None = None  # for spreadsheets: the row as Excel numbers it (header = 1)
    at: KeyPath = ()  # the config key it concerns, for `tomlpos.Origin.locate`

    @classmethod
    def of_key(cls, at: KeyPath, message: str, severity: str = "error") -> Problem:
        """A problem with the config key `at`, not yet placed in a file: `Origin.locate`
        gives it the file and line, so the code that finds it needs neither."""
        return cls("", message, key=dotted(at), severity=severity, at=at)

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.row is not None:
            where += f": row {self.row}"
            if self.key:
                return f"{where}, column {self.key}: {self.severity}: {self.message}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}: {self.severity}:{key} {self.message}"


class ReminderError(Exception):
    """Base of every error this package raises on purpose."""


class InputError(ReminderError):
    """A file a person edits is wrong; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = [p for p in problems if p.severity == "error"] or problems
        super().__init__("\n".join(str(p) for p in self.problems))


class ConfigError(InputError):
    """config.toml (or an environment override) cannot be used."""


class RegistrantsError(InputError):
    """The registrant export or the suppression list cannot be used at all."""


class TemplateError(InputError):
    """A message template does not parse, names an unknown variable or fails to render."""


class LedgerError(ReminderError):
    """The delivery ledger cannot be opened or is from a newer release."""


class LedgerUnreachable(LedgerError):  # noqa: N818 - reads as a sentence where raised
    """The ledger's database did not answer (refused, timed out, restarting); `cause` is
    why, in words for the operator. Worth trying again; the worker does, with a pause."""

    def __init__(self, message: str, *, cause: str = "") -> None:
        super().__init__(message)
        self.cause = cause


class StateError(ReminderError):
    """The state folder (ledger, lock, outbox) cannot be used, or changed under the worker."""


class UsageError(ReminderError):
    """A command was given a value it cannot use; the command line exits 2, as for a typo."""


class AlreadyRunning(ReminderError):  # noqa: N818 - reads as a sentence where raised
    """Another worker holds the state folder."""


class DeliveryError(ReminderError):
    """A delivery could not be made; `reply` is the server's answer, when it gave one."""

    def __init__(self, message: str, *, reply: str = "") -> None:
        super().__init__(message)
        self.reply = reply


class TransportConfigError(DeliveryError):
    """The transport itself is misconfigured (login, TLS, sender): stop, do not hammer."""


class BounceError(ReminderError):
    """The bounce mailbox (IMAP or Maildir) cannot be read; the message says what to fix."""
