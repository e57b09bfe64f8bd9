"""Every way to send mail, registered by name, and the one the config chooses.

To add one (an HTTP mail API, say): write its class in a module beside `smtp.py` and
`outbox.py` (a `Transport`: `deliver`, `close`, a `description` and its `Capabilities`),
its section in `inputs/config.py` and the README's configuration reference, and one
entry in TRANSPORTS. The worker, the dispatcher and `send-test` take whichever the
config chooses and never name its class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core.clock import Clock, utc_now
from ..inputs.config import Config
from ..inputs.secrets import secret
from .outbox import Outbox
from .ratelimit import BudgetMaker, own_budget
from .smtp import SmtpTransport
from .transport import Transport


@dataclass(frozen=True)
class TransportKind:
    """One way to send mail, as the registry knows it."""

    name: str
    chosen: Callable[[Config], bool]  # the config asks for it
    settings: Callable[[Config], object]  # what it reads of the config: a change rebuilds it
    # The transport, with the clock that dates retries and the maker of its sending
    # budget (the worker's, shared by every worker of a ledger, or its own).
    build: Callable[[Config, Clock, BudgetMaker], Transport]


def _smtp(config: Config, clock: Clock, budget: BudgetMaker) -> Transport:
    secret(config, "smtp", "password")  # a password file this user cannot read: say so
    return SmtpTransport(config.smtp, clock=clock, budget=budget)


def _outbox(config: Config, clock: Clock, budget: BudgetMaker) -> Transport:
    return Outbox(config.paths.state / "outbox")


# In order of preference: the first the config chooses sends. The outbox, which mails
# nobody, comes last: nobody is mailed by accident from a config without a server.
TRANSPORTS: dict[str, TransportKind] = {
    kind.name: kind
    for kind in (
        TransportKind("smtp", lambda config: bool(config.smtp.host), lambda c: c.smtp, _smtp),
        TransportKind("outbox", lambda config: True, lambda c: c.paths.state, _outbox),
    )
}


def chosen_kind(config: Config) -> TransportKind:
    return next(kind for kind in TRANSPORTS.values() if kind.chosen(config))


def make_transport(
    config: Config, clock: Clock = utc_now, budget: BudgetMaker = own_budget
) -> Transport:
    """The transport the config chooses."""
    kind = chosen_kind(config)
    return kind.build(config, clock, budget)


def transport_settings(config: Config) -> tuple[str, object]:
    """Which transport the config chooses and what it reads: when a reload changes
    these, the worker builds its transport again."""
    kind = chosen_kind(config)
    return kind.name, kind.settings(config)
