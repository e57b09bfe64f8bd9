"""The plain values the pure core works on: sessions, registrants, lead times and keys.

Loaders (config, export, ledger) produce them; planning, wording and composing read them.
Nothing here touches pydantic, a file or the network.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from itertools import compress, count
from operator import attrgetter

from .errors import Problem

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# French staff write "j" (jours) and "sem"; both mean the same as d and w.
_ALIASES = {"j": "d", "sem": "w"}
_PATTERN = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class Lead:
    """How long before a session a reminder goes out."""

    amount: int
    unit: str  # one of s, m, h, d, w

    @classmethod
    def parse(cls, text: str, *, allow_zero: bool = False) -> Lead:
        match = _PATTERN.match(str(text).lower())
        unit = _ALIASES.get(match.group(2), match.group(2)) if match else ""
        if not match or unit not in _UNITS:
            raise ValueError(
                f"{text!r} is not a lead time: write a whole number and a unit, "
                "s (seconds), m (minutes), h (hours), d (days) or w (weeks), e.g. '7d' or '1h'"
            )
        amount = int(match.group(1))
        if amount == 0 and not allow_zero:
            raise ValueError(f"{text!r}: a lead time must be more than zero")
        return cls(amount, unit)

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"

    @property
    def delta(self) -> timedelta:
        return timedelta(**{_UNITS[self.unit]: self.amount})

    @property
    def is_calendar(self) -> bool:
        """Days and weeks count on the wall clock; hours and less are elapsed time."""
        return self.unit in ("d", "w")

    def before(self, start: datetime) -> datetime:
        """The instant this lead falls before an aware `start`.

        J-1 before a 17:00 session is 17:00 the day before even across a DST change
        (aware arithmetic on a zoneinfo datetime is wall-clock arithmetic), while
        "1h" is sixty real minutes before, whatever the clock says.
        """
        if start.tzinfo is None:
            raise ValueError("session start must be timezone-aware")
        if self.is_calendar:
            wall = start - self.delta
            # Round-trip through UTC to resolve a wall time that a DST jump skipped.
            return wall.astimezone(UTC).astimezone(start.tzinfo)
        return (start.astimezone(UTC) - self.delta).astimezone(start.tzinfo)


def sort_leads(leads: list[Lead]) -> list[Lead]:
    """Earliest reminder first (7d before 1d before 1h)."""
    return sorted(set(leads), key=lambda lead: lead.delta, reverse=True)


def parse_duration(text: str) -> timedelta:
    """A configured duration ("10m", "0s", "30s"): the lead-time syntax, zero allowed."""
    return Lead.parse(text, allow_zero=True).delta


def format_duration(delta: timedelta) -> str:
    """The duration as staff write it: the largest unit that divides it ("10m", "0s")."""
    seconds = int(delta.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Session:
    """One meeting of the cycle, with every instant aware in the cycle's zone."""

    id: str  # the date it was planned on (ISO): stable through moves, names its calendar UID
    start: datetime
    end: datetime
    semester: str
    topic: str = ""
    draft: bool = False
    speakers: tuple[str, ...] = ()
    partner: str = ""
    agenda: str = ""
    join_url: str | None = None
    cancelled: bool = False
    cancelled_reason: str = ""
    moved_from: datetime | None = None
    extra: bool = False
    holiday: str = ""  # the public holiday it falls on, when the policy only warns
    # The calendar SEQUENCE is derived from the ledger; staff may only raise its floor.
    sequence: int = 0
    notify_topic: bool = False  # a topic change alone owes registrants an update notice

    @cached_property  # read for every delivery of a batch: formatted once
    def appointment(self) -> str:
        """What the ledger records: a moved session is a new appointment, so new reminders."""
        return self.start.isoformat(timespec="minutes")

    @property
    def moved(self) -> bool:
        return self.moved_from is not None

    def matches(self, day: date) -> bool:
        """`--session DATE` finds a session by its current or its planned date."""
        return day in (self.start.date(), date.fromisoformat(self.id))

    def flags(self, now: datetime) -> list[str]:
        """What `plan`, `status` and the status page say of it: where it stands, then how
        it came to be (moved, on a holiday, extra, a draft)."""
        standing = "cancelled" if self.cancelled else "past" if self.end <= now else "upcoming"
        marks = {
            "moved": self.moved,
            "holiday": bool(self.holiday),
            "extra": self.extra,
            "draft": self.draft,
        }
        return [standing, *(flag for flag, set_ in marks.items() if set_)]


@dataclass(frozen=True, slots=True)
class Registrant:
    """One person, by their canonical address, and the sessions they signed up for.

    Slotted, with its folded key computed once: a roster holds a million of them, and
    the key is read for every delivery planned, claimed, composed and settled.
    """

    email: str
    first_name: str = ""
    last_name: str = ""
    role: str = ""
    organisation: str = ""
    join_url: str | None = None
    sessions: frozenset[str] | None = None  # session ids; None means every session
    language: str | None = None
    registered_at: datetime | None = None
    row: int = 0
    # What two rows must share to be the same person (and what the ledger records).
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        folded = self.email.casefold()
        # Most addresses are written in lower case already: one string, not two equal ones.
        object.__setattr__(self, "key", self.email if folded == self.email else folded)

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    @staticmethod
    def many(
        emails: Iterable[str],
        keys: Iterable[str],
        first_names: Iterable[str],
        last_names: Iterable[str],
        roles: Iterable[str],
        organisations: Iterable[str],
        join_urls: Iterable[str | None],
        sessions: Iterable[frozenset[str] | None],
        languages: Iterable[str | None],
        registered: Iterable[datetime | None],
        first_row: int,
    ) -> list[Registrant]:
        """Registrants from columns of their fields, each key given (the email folded).

        The same objects as the constructor's, five times faster: the frozen dataclass's
        __init__ makes a call per field (object.__setattr__), 1.5 s for a million. They
        are filled as an unfrozen twin with the same slots, then made Registrants.
        """
        made: list[Registrant] = []
        add = made.append
        for email, key, first, last, role, org, url, named, language, at, row in zip(
            emails,
            keys,
            first_names,
            last_names,
            roles,
            organisations,
            join_urls,
            sessions,
            languages,
            registered,
            count(first_row),
        ):
            twin = _UnfrozenRegistrant()
            twin.email = email
            twin.key = key
            twin.first_name = first
            twin.last_name = last
            twin.role = role
            twin.organisation = org
            twin.join_url = url
            twin.sessions = named
            twin.language = language
            twin.registered_at = at
            twin.row = row
            twin.__class__ = Registrant  # type: ignore[assignment]
            add(twin)  # type: ignore[arg-type]
        return made

    def attends(self, session: Session) -> bool:
        return self.sessions is None or session.id in self.sessions


class _UnfrozenRegistrant:
    """Registrant's slots, writable: what Registrant.many fills before it seals them."""

    __slots__ = Registrant.__slots__
    email: str
    key: str
    first_name: str
    last_name: str
    role: str
    organisation: str
    join_url: str | None
    sessions: frozenset[str] | None
    language: str | None
    registered_at: datetime | None
    row: int


@dataclass(frozen=True)
class ColumnMap:
    """Where each field was read from, for staff to check at a glance."""

    header_row: int  # 1-based row of the header in the file or sheet
    fields: tuple[tuple[str, str, str], ...]  # field, header, how it matched
    ignored: tuple[str, ...]  # headers no field uses
    notes: tuple[str, ...] = ()  # choices worth knowing (e.g. a column of "anonymous")
    sheet: str = ""
    # A sessions question with one column per option: each column's label and the
    # session it was read as (None: its date is no session of the cycle).
    options: tuple[tuple[str, str | None], ...] = ()
    label_row: int | None = None  # 1-based row of the option labels under the header
    read_as: str = ""  # how a text file was read: its encoding and separator

    def column(self, field: str) -> str | None:
        return next((header for name, header, _ in self.fields if name == field), None)

    def lines(self) -> list[str]:
        where = "".join(
            f"{part}, "
            for part in (self.read_as, f"sheet {self.sheet!r}" if self.sheet else "")
            if part
        )
        below = f", option labels on row {self.label_row}" if self.label_row else ""
        out = [f"columns ({where}header on row {self.header_row}{below}):"]
        width = max((len(name) for name, _, _ in self.fields), default=0)
        for name, header, how in self.fields:
            if name != "sessions" or not self.options:
                out.append(f"  {name:<{width}}  <- {header!r} ({how})")
            else:  # one column per option: each, and the session it stands for
                out.append(f"  {name:<{width}}  <- {header} ({how}):")
                out += [
                    f"  {'':<{width}}       {label!r} -> {session or 'no session of the cycle'}"
                    for label, session in self.options
                ]
        out.append(
            "  ignored: " + ", ".join(repr(h) for h in self.ignored)
            if self.ignored
            else "  ignored: none"
        )
        out += [f"  note: {note}" for note in self.notes]
        return out


@dataclass(frozen=True)
class Roster:
    """The usable registrants of an export, and what was wrong with the rest."""

    source: str
    registrants: tuple[Registrant, ...]
    problems: tuple[Problem, ...] = ()
    suppressed: tuple[str, ...] = ()
    mapping: ColumnMap | None = None  # None when there is no export yet
    _by_session: dict[str, tuple[Registrant, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def attending(self, session: Session) -> tuple[Registrant, ...]:
        """Its attendees, in the export's order; each session's list is made once."""
        found = self._by_session.get(session.id)
        if found is None:
            found = self._attendance.of(session.id, self.registrants)
            self._by_session[session.id] = found
        return found

    def absent(self, session: Session) -> tuple[Registrant, ...]:
        """Those who do not attend it: nobody, in an export that names no sessions."""
        return self._attendance.absent(session.id, self.registrants)

    def count(self, session: Session) -> int:
        """How many attend it, without listing them."""
        found = self._by_session.get(session.id)
        return len(found) if found is not None else self._attendance.count(session.id)

    @cached_property
    def _attendance(self) -> Attendance:
        return Attendance(self.registrants)

    @cached_property
    def by_key(self) -> dict[str, Registrant]:
        """Each registrant under its key (what the ledger records).

        Made when first asked: a worker with nobody told of a change and no address
        to look up never holds it (40 MB at 1,000,000 registrants).
        """
        return {r.key: r for r in self.registrants}

    def having(self, keys: Collection[str]) -> dict[str, Registrant]:
        """The registrants with these keys, under them: through `by_key` once it is made,
        otherwise in one pass, without holding an index of everybody."""
        if "by_key" in self.__dict__ or len(keys) > len(self.registrants) // 8:
            return {key: self.by_key[key] for key in keys if key in self.by_key}
        return {r.key: r for r in self.registrants if r.key in keys}

    @cached_property
    def with_own_link(self) -> tuple[Registrant, ...]:
        """Those whose row gives a personal join link: usually few, often none."""
        return tuple(r for r in self.registrants if r.join_url)

    def find(self, email: str) -> Registrant | None:
        return self.by_key.get(email.strip().casefold())

    def served_and_suppressed(self, stopped: frozenset[str]) -> tuple[int, int]:
        """How many are mailed, and how many are not: the list file's suppressions plus
        the registrants the ledger stops (`stopped`: unsubscribes, bounces, staff)."""
        gone = sum(r.key in stopped for r in self.registrants) if stopped else 0
        return len(self.registrants) - gone, len(self.suppressed) + gone


class Attendance:
    """Who attends which session, without a look at each registrant for each session.

    An export repeats a handful of session cells: registrants are counted by the
    sessions they named, so a session's count is the sum of a few groups' counts, and
    its attendees one filtered pass over the roster, in C, in the export's order.
    """

    def __init__(self, registrants: Sequence[Registrant]) -> None:
        # sessions named (None: every session) -> how many registrants named them
        self.groups: Counter[frozenset[str] | None] = Counter(map(_NAMED, registrants))

    def _matching(self, session_id: str) -> set[frozenset[str] | None]:
        return {named for named in self.groups if named is None or session_id in named}

    def count(self, session_id: str) -> int:
        return sum(map(self.groups.__getitem__, self._matching(session_id)))

    def absent(self, session_id: str, registrants: Sequence[Registrant]) -> tuple[Registrant, ...]:
        others = set(self.groups) - self._matching(session_id)
        if not others:
            return ()
        return tuple(compress(registrants, map(others.__contains__, map(_NAMED, registrants))))

    def of(self, session_id: str, registrants: Sequence[Registrant]) -> tuple[Registrant, ...]:
        matching = self._matching(session_id)
        if not matching:
            return ()
        if len(matching) == len(self.groups):
            return tuple(registrants)
        return tuple(compress(registrants, map(matching.__contains__, map(_NAMED, registrants))))


_NAMED = attrgetter("sessions")
