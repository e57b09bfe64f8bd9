"""Commands that change the ledger: its schema and copy, suppressions, bounce reports."""

from __future__ import annotations

from pathlib import Path

from ..core.answer import Answer
from ..core.clock import Clock, utc_now
from ..inputs.config import load_config
from ..inputs.registrants import masked
from ..storage.backend import open_ledger
from ..storage.ledger import canonical


def migrate_ledger(config_path: Path) -> Answer:
    """Bring the configured ledger's schema up to this release."""
    from ..storage.ledger import MIGRATIONS

    config = load_config(config_path)
    with open_ledger(config, migrate=False) as ledger:
        before = ledger.version()
    with open_ledger(config) as ledger:
        return Answer().say(
            f"{ledger.path}: schema {before} -> {ledger.version()} (this release knows "
            f"{len(MIGRATIONS)})"
        )


def copy_ledger(config_path: Path, *, to: str) -> Answer:
    """Copy the SQLite ledger of paths.state into the PostgreSQL database at `to`."""
    from ..storage.backend import copy_ledger as copy
    from ..storage.backend import ledger_target
    from ..storage.ledger import Ledger

    config = load_config(config_path)
    target_config = config.model_copy(
        update={"ledger": config.ledger.model_copy(update={"url": to})}
    )
    with (
        Ledger(ledger_target(config), readonly=True) as source,
        open_ledger(target_config, worker="copy") as target,
    ):
        copied = copy(source, target)
    return (
        Answer()
        .say(
            f"copied {source.path} into {target.path}, checked row for row: "
            + ", ".join(f"{table} {count}" for table, count in copied.items())
        )
        .say(f"now set ledger.url = {target.path!r} (or REMINDER_LEDGER__URL) for every worker")
    )


def suppress(config_path: Path, *, address: str, reason: str, clock: Clock = utc_now) -> Answer:
    """Never mail `address` again; say so, or since when it already was."""
    config = load_config(config_path)
    with open_ledger(config) as ledger:
        added = ledger.suppress(address, reason=reason, source="staff", at=clock())
        known = {s.address: s for s in ledger.suppressions()}[canonical(address)]
    if added:
        return Answer().say(
            f"suppressed {masked(known.address)}: never mailed again ({known.reason})"
        )
    return Answer().say(
        f"{masked(known.address)} was already suppressed since "
        f"{known.created_at.astimezone(config.zone):%Y-%m-%d %H:%M%z} "
        f"({known.source}: {known.reason})"
    )


def unsuppress(config_path: Path, *, address: str) -> Answer:
    """Mail `address` again; failed while the suppression list still names it."""
    from ..inputs.registrants import load_suppression

    config = load_config(config_path)
    address = canonical(address)
    with open_ledger(config) as ledger:
        removed = ledger.unsuppress(address)
    listed = address in load_suppression(config.paths.suppression)
    answer = Answer()
    if removed:
        answer.say(f"{masked(address)} is mailed again from the service's next pass")
    if listed:
        answer.note(
            f"{masked(address)} is still in {config.paths.suppression}: remove its line there "
            "to mail it again"
        )
    if not removed and not listed:
        answer.note(f"{masked(address)} was not suppressed")
    return answer.fail(not removed or listed)


def bounces(config_path: Path, *, clock: Clock = utc_now) -> Answer:
    """Read the bounce reports once; suppress the mailboxes that do not exist."""
    from ..service.bounces import collect

    config = load_config(config_path)
    with open_ledger(config) as ledger:
        run = collect(config, ledger, clock())
    return Answer().say("\n".join(run.lines()))
