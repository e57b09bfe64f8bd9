"""One consistent reading of everything staff edit, validated together before it is served."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import InputError, Problem, TemplateError
from ..core.mailing import NOTICE_KINDS
from ..core.model import Registrant, Roster, Session
from ..core.plan import Slot, reminder_slots
from ..inputs.config import Config, load_config
from ..inputs.registrants import load_roster
from ..inputs.schedule import load_sessions
from ..inputs.secrets import message_key, required, secret_problems

if TYPE_CHECKING:
    from ..inputs.templating import Templates
    from ..mail.messages import Composer

SAMPLE_REGISTRANT = Registrant(
    email="camille.exemple@example.org",
    first_name="Camille",
    last_name="Exemple",
    role="Adjointe au maire",
    organisation="Commune d'Exemple",
)


@dataclass(frozen=True)
class Snapshot:
    """Config, sessions, registrants and templates as of one reading of the files.

    The templates and the composer are read on first use: plan, status and the other
    reports never pay for Jinja2, Babel's messages or the MIME machinery.
    """

    config: Config
    sessions: tuple[Session, ...]
    roster: Roster
    slots: tuple[Slot, ...]
    problems: tuple[Problem, ...]  # warnings, and the registrant rows that were skipped
    fingerprint: tuple[tuple[str, int, int], ...]
    checked_templates: Templates | None = field(default=None, compare=False, repr=False)

    @property
    def cutoff(self) -> timedelta:
        """After `session.start - cutoff` nothing more is sent for a session."""
        return self.config.reminders.late_cutoff

    @property
    def state_dir(self) -> Path:
        return self.config.paths.state

    @cached_property
    def templates(self) -> Templates:
        """The templates folder, checked: a TemplateError names every problem in it."""
        if self.checked_templates is not None:
            return self.checked_templates
        from ..inputs.templating import Templates

        templates = Templates(self.config.paths.templates, self.config.cycle.language)
        if template_problems := templates.check():
            raise TemplateError(template_problems)
        return templates

    @cached_property
    def composer(self) -> Composer:
        """Renders every (session, lead) once, so a template error shows now, not at send time."""
        from ..mail.messages import Composer

        composer = Composer(self.config, self.sessions, self.templates)
        _render_samples(composer, self.slots, self.roster)
        return composer

    def with_roster(self, roster: Roster) -> Snapshot:
        """This reading with another roster (`simulate`'s registrants as of an instant):
        the templates checked and the composer built are carried over, not made again."""
        other = replace(self, roster=roster)
        for name in ("templates", "composer"):  # cached_property values, when computed
            if name in self.__dict__:
                other.__dict__[name] = self.__dict__[name]
        return other


def load_snapshot(path: Path, *, compose: bool = True, served: bool = False) -> Snapshot:
    """Read and validate everything; raise InputError naming every problem found.

    With `compose` false the templates are left for first use (`Snapshot.templates`,
    `Snapshot.composer`): what commands that only report need. A `served` snapshot, the
    service's, must have every secret its config calls for, and keeps its Message-ID key
    in the state folder.
    """
    config = load_config(path)
    if served:
        required(config)
        message_key(config, keep=True)
    before = fingerprint(watched_paths(config))
    sessions, warnings = load_sessions(config)
    roster = load_roster(config, sessions)
    snapshot = _assemble(config, sessions, warnings, roster, before)
    if compose:
        snapshot.composer  # noqa: B018 - read now: the templates' errors belong to loading
    return snapshot


def _assemble(
    config: Config,
    sessions: list[Session],
    warnings: list[Problem],
    roster: Roster,
    before: tuple[tuple[str, int, int], ...],
    templates: Templates | None = None,
) -> Snapshot:
    """The snapshot of inputs already read and checked."""
    slots = reminder_slots(sessions, config.reminders.leads)
    problems = [*config.warnings, *warnings, *_http_warnings(config)]
    return Snapshot(
        config,
        tuple(sessions),
        roster,
        tuple(slots),
        tuple(problems) + roster.problems,
        before,
        templates,
    )


def _render_samples(composer: Composer, slots: Sequence[Slot], roster: Roster) -> None:
    """Render every (session, lead) once, and each notice once, so a template error shows
    now, not at send time (where it would fail every notice of a cancellation)."""
    from ..core.notices import sample_notice

    if slots:
        session = slots[0].session
        link = composer.config.cycle.join_url or ""
        for kind in NOTICE_KINDS:
            notice = sample_notice(session, SAMPLE_REGISTRANT, kind, link, None, slots[0].due_at)
            composer.compose_notice(notice, slots[0].due_at)
    seen: set[tuple[str, str]] = set()
    for slot in slots:
        if (slot.session.id, str(slot.lead)) in seen:
            continue
        seen.add((slot.session.id, str(slot.lead)))
        attendees = roster.attending(slot.session)
        composer.compose(slot, attendees[0] if attendees else SAMPLE_REGISTRANT, slot.due_at)


def _http_warnings(config: Config) -> list[Problem]:
    http = config.http
    if not http.enabled or http.on_loopback:
        return []
    return [
        config.origin.problem(
            f"the HTTP server listens on {http.listen}, beyond this machine: metrics, readiness "
            "and the status page would be reachable by others; keep 127.0.0.1 and let the "
            "reverse proxy expose only /u/ (README, Operations)",
            ("http", "listen"),
            severity="warning",
        )
    ]


def watched_paths(config: Config) -> list[Path]:
    """The files whose change means a new snapshot."""
    templates = config.paths.templates
    paths = [
        config.origin.file,
        config.paths.registrants,
        config.paths.suppression,
        templates,
    ]
    if templates.is_dir():
        paths += sorted(p for p in templates.rglob("*") if p.is_file())
    return paths


def fingerprint(paths: list[Path]) -> tuple[tuple[str, int, int], ...]:
    """Size and modification time of each path: cheap to take every few seconds."""
    marks = []
    for path in paths:
        try:
            stat = path.stat()
            marks.append((str(path), stat.st_mtime_ns, stat.st_size))
        except OSError:
            marks.append((str(path), -1, -1))
    return tuple(marks)


def check(path: Path, now: datetime | None = None) -> tuple[Snapshot | None, list[Problem]]:
    """Everything `reminder check` reports: as many problems as can be found in one go.

    Unlike load_snapshot, a broken stage does not hide the next one: a config error
    still lets the templates be checked. Errors are what stops sending; a registrant
    row that is skipped is a warning, since the other rows are served.
    """
    now = now or datetime.now(UTC)
    try:
        config = load_config(path)
    except InputError as exc:
        return None, list(exc.problems) + _templates_beside(path)
    before = fingerprint(watched_paths(config))
    problems: list[Problem] = list(config.warnings)
    templates: Templates | None = None
    try:
        from ..inputs.templating import Templates

        templates = Templates(config.paths.templates, config.cycle.language)
        problems += templates.check()
    except InputError as exc:
        problems += exc.problems
    roster: Roster | None = None
    try:
        sessions, warnings = load_sessions(config)
        roster = load_roster(config, sessions)
        problems += warnings + list(roster.problems)
        problems += _roster_warnings(config, sessions, roster, now)
    except InputError as exc:
        problems += exc.problems
    problems += _state_problems(config) + secret_problems(config)
    if templates is None or roster is None or any(p.severity == "error" for p in problems):
        return None, problems
    # Everything is read once: the snapshot is built from what was just checked.
    try:
        snapshot = _assemble(config, sessions, warnings, roster, before, templates)
        snapshot.composer  # noqa: B018 - renders every (session, lead): template errors now
    except InputError as exc:
        return None, problems + list(exc.problems)
    seen = set(snapshot.problems)
    return snapshot, list(snapshot.problems) + [p for p in problems if p not in seen]


def _roster_warnings(
    config: Config, sessions: list[Session], roster: Roster, now: datetime
) -> list[Problem]:
    found: list[Problem] = []
    if not roster.registrants:
        found.append(
            Problem(
                roster.source,
                "no registrant would be served: a running worker keeps its last good list "
                "(registrants.max_drop) until the file is fixed or accepted with SIGHUP",
                severity="warning",
            )
        )
    entries = {entry.date.isoformat(): index for index, entry in enumerate(config.sessions)}
    for session in sessions:
        if session.extra and session.start < now:
            found.append(
                config.origin.problem(
                    f"the extra session of {session.id} is in the past: no reminder is sent "
                    "for it; check its date",
                    ("sessions", entries[session.id], "date"),
                    severity="warning",
                )
            )
    return found


def _state_problems(config: Config) -> list[Problem]:
    """The state folder must take the ledger, the lock and the outbox."""
    folder = config.paths.state
    # Where the worker would write first: the folder, or the nearest parent it creates it in.
    existing = next((p for p in (folder, *folder.parents) if p.exists()), folder)
    probe = existing / f".reminder-check-{os.getpid()}"
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(existing))
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return [
            config.origin.problem(
                f"the state folder {folder} is not writable ({exc.strerror}): the service "
                "could not record what it sends; give its user write access",
                ("paths", "state"),
            )
        ]
    return []


def _templates_beside(path: Path) -> list[Problem]:
    """With the config unusable, still check the templates it names (or the default)."""
    try:
        paths = tomllib.loads(path.read_text(encoding="utf-8-sig")).get("paths", {})
        folder = Path(paths.get("templates", "templates")) if isinstance(paths, dict) else None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, TypeError):
        # The file does not say where its templates are: guessing would report a
        # folder that was never meant.
        return []
    if folder is None:
        return []
    folder = folder if folder.is_absolute() else path.parent / folder
    from ..inputs.templating import Templates

    try:
        return Templates(folder, "fr").check()
    except InputError as exc:
        return list(exc.problems)
