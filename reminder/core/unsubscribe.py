"""The registrant's signed links: a token per (cycle, address), signed with a secret.

One token opens the one-click unsubscribe (RFC 8058, `/u/<token>`), the page of their
sessions (`/m/<token>`) and the decline of one session (`/m/<token>/<session>`): whoever
holds one holds the others (they travel in the same mail), and the page offers the
unsubscribe anyway, so separate marks would protect nothing and cost a second index.

The token is a mark (core.marks) and nothing else: it cannot be forged without the
secret, reveals nothing of the address, and is found again by computing the tokens of
the addresses the worker knows.
"""

from __future__ import annotations

from collections.abc import Iterable

from .marks import sign

TOKEN_PATTERN = "[A-Za-z0-9_-]{22}"  # noqa: S105 - a URL pattern, not a secret


def canonical(address: str) -> str:
    return address.strip().casefold()


def token(secret: str, cycle: str, address: str) -> str:
    """The token of `address` in `cycle`: the links of mails already sent depend on it."""
    return sign(secret.encode(), "unsubscribe", cycle, canonical(address))


class TokenIndex:
    """Token -> address for a set of addresses, built once per reading of the export."""

    def __init__(self, secret: str, cycle: str, addresses: Iterable[str]) -> None:
        self._addresses = {token(secret, cycle, a): canonical(a) for a in addresses}

    def address(self, candidate: str) -> str | None:
        """The address whose token this is, or None for a forged or unknown token."""
        return self._addresses.get(candidate)
