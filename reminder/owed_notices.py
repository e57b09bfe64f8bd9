"""Change notices owed by today's files against the ledger, read without sending anything.

Apart from delivery so that `plan`, `check` and `status` reach them without importing
the composing and sending code.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from .config import Config
from .notices import NoticePlan, Told, plan_notices, since_as_of, version
from .snapshot import Snapshot
from .store import DeliveryLedger, ledger_target, open_ledger

__all__ = ["notice_plan", "notices_in", "told"]


def notice_plan(
    ledger: DeliveryLedger, snapshot: Snapshot, now: datetime, *, observe: bool = False
) -> NoticePlan:
    """Change notices owed at `now`. With `observe`, the sessions' current versions are
    recorded first (the worker); without, the ledger is only read (plan, status, check)."""
    default = snapshot.config.cycle.join_url or ""
    live = [
        s
        for s in snapshot.sessions
        if now < s.start or (s.moved_from is not None and now < s.moved_from)
    ]
    versions = {s.id: version(s, snapshot.roster, default) for s in live}
    since = (
        ledger.observe(versions, now) if observe else since_as_of(ledger.versions(), versions, now)
    )
    delay = snapshot.config.reminders.notice_delay
    view = ledger.notice_view(versions, since)
    # Nobody suppressed in the ledger is owed a notice: the worker would never send it,
    # so status, plan, check and the stop line must not count it as owed either.
    stopped = ledger.suppressed_addresses()
    return plan_notices(now, live, snapshot.roster, view, delay, default, stopped)


def _no_ledger_yet(config: Config) -> bool:
    target = ledger_target(config)
    return isinstance(target, Path) and not target.exists()


def notices_in(config: Config, snapshot: Snapshot, now: datetime) -> NoticePlan | None:
    """The notices the configured ledger and these files make owed, without writing
    anything (None when there is no ledger yet: nobody has been told anything)."""
    if _no_ledger_yet(config):
        return None
    with open_ledger(config, readonly=True) as ledger:
        return notice_plan(ledger, snapshot, now)


def told(config: Config, session_id: str, recipient: str) -> Told | None:
    """What the configured ledger says `recipient` was last told about a session."""
    if _no_ledger_yet(config):
        return None
    with open_ledger(config, readonly=True) as ledger:
        return ledger.notice_view([session_id], {}).told.get(session_id, {}).get(recipient)
