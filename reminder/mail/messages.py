"""The mails (reminders and change notices): context, rendering, calendar part, MIME."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import css_inline
from markupsafe import escape

from ..core.mailing import DeliveryKey, MailKind
from ..core.message_ids import message_id
from ..core.model import Lead, Registrant, Session
from ..core.notices import Facts, Notice, facts_for
from ..core.plan import Slot
from ..core.typography import breakable, french
from ..core.unsubscribe import token
from ..core.wording import (
    date_at_time,
    lead_words,
    long_date,
    relative_day,
    time_of_day,
    time_range,
)
from ..inputs.config import Config
from ..inputs.secrets import message_key
from ..inputs.templating import Templates
from .calendar_links import WebEvent, web_calendar_links
from .ics import Entry, session_calendar
from .mime import (
    LINE,
    calendar_body,
    date_value,
    display_name,
    mailbox,
    one_line,
    part,
    subject_value,
)
from .quoted import quoted
from .stencil import Parts, Stencils

_NO_LEAD = Lead(0, "s")  # a notice is tied to no lead
_UNSUBSCRIBE = quote("Désinscription")  # the subject of the unsubscribe mailto
_INLINER = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)


@dataclass(frozen=True)
class Composed:
    """A message ready for the transport, and its parts for previews."""

    message_id: str
    sender: str
    recipient: str
    data: bytes
    subject: str
    text: str
    html: str
    ics: bytes


class Composer:
    """Turns (slot, registrant) into a complete message, with the templates of one folder."""

    def __init__(
        self,
        config: Config,
        sessions: Sequence[Session],
        templates: Templates,
        *,
        stencils: bool = True,
        key: bytes | None = None,
    ) -> None:
        """With `stencils` False, every mail is rendered in full (the tests compare).
        `key` marks Message-IDs; by default the configured one (inputs.secrets)."""
        self.config = config
        self.sessions = [s for s in sessions if not s.cancelled]
        # Every calendar's VTIMEZONE covers all the cycle's years, whichever session it names.
        self._years = (
            (min(s.start.year for s in sessions), max(s.end.year for s in sessions))
            if sessions
            else None
        )
        self.templates = templates
        self.language = config.cycle.language
        self._calendars: dict[tuple[Session, str, str, int, Facts | None, bool], Entry] = {}
        self._session_context = lru_cache(maxsize=256)(self._session_uncached)
        self._web_calendars = lru_cache(maxsize=256)(self._web_calendars_uncached)
        self._stencils = Stencils() if stencils else None
        self.message_key = message_key(config) if key is None else key
        sender = config.sender
        self._fixed_headers = (  # From, Reply-To (or ""), List-Id: the same on every mail
            mailbox(
                display_name(sender.name or config.organizer.name), sender.address, len("From: ")
            ),
            sender.reply_to
            and mailbox(display_name(config.contact.name), sender.reply_to, len("Reply-To: ")),
            mailbox(
                display_name(config.cycle.title),
                f"{config.cycle.id}.{sender.domain}",
                len("List-Id: "),
            ),
        )
        # The same for every message; the immutable sandbox keeps templates from changing it.
        self._fixed = {
            name: getattr(config, name).model_dump(mode="json")
            for name in ("cycle", "organizer", "contact")
        }

    def message_id(self, key: DeliveryKey) -> str:
        """The marked Message-ID of a delivery (core.message_ids), for its first claim."""
        return message_id(self.message_key, key, self.config.cycle.id, self.config.sender.domain)

    def language_for(self, registrant: Registrant) -> str:
        # A registrant's language is used only where templates exist for it: French text
        # with English dates would be worse than French throughout.
        language = registrant.language or self.language
        return language if self.templates.speaks(language) else self.language

    def compose(
        self,
        slot: Slot,
        registrant: Registrant,
        now: datetime,
        key: DeliveryKey | None = None,
        sequence: int = 0,
        recorded_id: str | None = None,
    ) -> Composed:
        """The message; `recorded_id` is the Message-ID the ledger recorded at the claim,
        which a resend must carry whatever changed in the config since."""
        key = key or slot.delivery_key(registrant.key)
        language = self.language_for(registrant)
        lead = str(slot.lead)
        if self._stencils is not None and registrant.join_url is None:
            # Everybody's mail but for a few words: filled from the stencil of its shape.
            unsubscribe, choices = self._links(registrant, slot.session)
            when = relative_day(now, slot.session.start, language)
            late = now > slot.due_at and lead != "0s"
            filled = self._stencils.parts(
                (slot, language, when, late),
                registrant,
                (unsubscribe["url"], choices["decline_url"], choices["sessions_url"]),
                lambda someone: self.context(slot, someone, now, language),
                lambda context: self._rendered(MailKind.REMINDER, lead, context),
                french if language == "fr" else _as_is,
            )
            if filled is not None:
                join_url = self._session_context(slot.session, language)["join_url"]
                return self._packed(
                    filled.parts,
                    slot.session,
                    registrant,
                    key,
                    now,
                    sequence,
                    language,
                    join_url,
                    unsubscribe,
                    recorded_id=recorded_id,
                    bodies=(filled.text, filled.html),
                )
        context = self.context(slot, registrant, now, language)
        return self._finish(
            MailKind.REMINDER,
            lead,
            context,
            slot.session,
            registrant,
            key,
            now,
            sequence,
            recorded_id=recorded_id,
        )

    def compose_notice(
        self, notice: Notice, now: datetime, recorded_id: str | None = None
    ) -> Composed:
        """A cancellation or an update: what changed, old and new, and the calendar entry."""
        language = self.language_for(notice.registrant)
        slot = Slot(notice.session, _NO_LEAD, notice.session.start)
        context = self.context(slot, notice.registrant, now, language)
        context["notice"] = self.notice_context(notice, language)
        cancelled = notice.kind == MailKind.CANCELLATION
        return self._finish(
            notice.kind,
            "",
            context,
            notice.session,
            notice.registrant,
            notice.key,
            now,
            notice.sequence,
            # The entry withdrawn is the one the registrant holds: at the times they were told.
            notice.told.facts if cancelled else None,
            # Taken off a session that still takes place: withdrawn for them, not called off.
            uninvited=cancelled and not notice.session.cancelled,
            recorded_id=recorded_id,
        )

    def notice_context(self, notice: Notice, language: str) -> dict[str, Any]:
        def described(facts: Facts) -> dict[str, Any]:
            return {
                "date": long_date(facts.start, language),
                "day": long_date(facts.start, language, year=False),
                "start_time": time_of_day(facts.start, language),
                "end_time": time_of_day(facts.end, language),
                "time": time_range(facts.start, facts.end, language),
                "join_url": facts.join_url,
                "topic": facts.topic,
                "cancelled": facts.status == "cancelled",
            }

        return {
            "kind": notice.kind,
            "changes": list(notice.changes),
            "before": described(notice.told.facts),
            "after": described(notice.facts),
            "sequence": notice.sequence,
            # Cancelled for this registrant only: the session itself still takes place.
            "unregistered": notice.kind == MailKind.CANCELLATION and not notice.session.cancelled,
            # Their own choice: they declined the session, or came back on it.
            "declined": notice.declined,
            "came_back": notice.came_back,
        }

    def _finish(
        self,
        kind: MailKind,
        lead: str,
        context: dict[str, Any],
        session: Session,
        registrant: Registrant,
        key: DeliveryKey,
        now: datetime,
        sequence: int,
        withdrawn: Facts | None = None,
        *,
        uninvited: bool = False,
        recorded_id: str | None = None,
    ) -> Composed:
        return self._packed(
            self._rendered(kind, lead, context),
            session,
            registrant,
            key,
            now,
            sequence,
            context["language"],
            context["session"]["join_url"],
            context["unsubscribe"],
            withdrawn,
            uninvited=uninvited,
            recorded_id=recorded_id,
        )

    def _rendered(self, kind: MailKind, lead: str, context: dict[str, Any]) -> Parts:
        """Subject, text and HTML: rendered, typography set, CSS inlined."""
        language = context["language"]
        typeset = french if language == "fr" else _as_is
        render = self.templates.render
        subject = typeset(one_line(render("subject", lead, language, context, kind)))
        text = typeset(render("text", lead, language, context, kind))
        html = typeset(render("html", lead, language, context, kind), html=True)
        if typeset is french:
            html = breakable(html, _typed(context["registrant"]))
        return subject, text, _INLINER.inline(html)

    def _packed(
        self,
        parts: Parts,
        session: Session,
        registrant: Registrant,
        key: DeliveryKey,
        now: datetime,
        sequence: int,
        language: str,
        join_url: str,
        unsubscribe: dict[str, str],
        withdrawn: Facts | None = None,
        *,
        uninvited: bool = False,
        recorded_id: str | None = None,
        bodies: tuple[str, str] | None = None,
    ) -> Composed:
        """The parts with their calendar entry and headers, as bytes for the transport;
        `bodies` are the text and HTML already in quoted-printable, from a stencil."""
        subject, text, html = parts
        entry = self._calendar(session, join_url, language, now, sequence, withdrawn, uninvited)
        ics = entry.to(registrant.email)
        mid = recorded_id or self.message_id(key)
        data = self._assemble(
            subject,
            text,
            html,
            entry,
            ics,
            registrant,
            mid,
            now,
            session,
            language,
            unsubscribe,
            bodies or (quoted(text), quoted(html)),
        )
        return Composed(
            mid,
            self.config.sender.address,
            registrant.email,
            data,
            subject,
            text,
            html,
            ics,
        )

    def facts(self, session: Session, registrant: Registrant) -> Facts:
        """The facts a reminder to this registrant carries."""
        return facts_for(session, registrant, self.config.cycle.join_url or "", attending=True)

    def context(
        self, slot: Slot, registrant: Registrant, now: datetime, language: str
    ) -> dict[str, Any]:
        session = dict(self._session_context(slot.session, language))
        session["join_url"] = registrant.join_url or session["join_url"]
        unsubscribe, choices = self._links(registrant, slot.session)
        return {
            **self._fixed,
            "language": language,
            "session": session,
            "registrant": {
                "first_name": registrant.first_name,
                "last_name": registrant.last_name,
                "name": registrant.name,
                "role": registrant.role,
                "organisation": registrant.organisation,
                "email": registrant.email,
            },
            "reminder": {
                "lead": str(slot.lead),
                "lead_words": lead_words(slot.lead, language),
                "when": relative_day(now, slot.session.start, language),
                "due_at": slot.due_at.isoformat(),
                "late": now > slot.due_at and str(slot.lead) != "0s",
            },
            "upcoming": [
                self._session_context(s, language)
                for s in self.sessions
                if s.start > slot.session.start
            ][:3],
            "unsubscribe": unsubscribe,
            # Signed links of their own: decline this session, the page of their sessions.
            "choices": choices,
            "add_to_calendar": self._web_calendars(slot.session, session["join_url"], language),
        }

    def _session_uncached(self, session: Session, language: str) -> dict[str, Any]:
        return {
            "id": session.id,
            "date": long_date(session.start, language),
            "day": long_date(session.start, language, year=False),
            "start_time": time_of_day(session.start, language),
            "end_time": time_of_day(session.end, language),
            "time": time_range(session.start, session.end, language),
            "start": session.start.isoformat(),
            "semester": session.semester,
            "topic": session.topic,
            "draft": session.draft,
            "speakers": list(session.speakers),
            "partner": session.partner,
            "agenda": [line.strip() for line in session.agenda.splitlines() if line.strip()],
            "join_url": session.join_url or self.config.cycle.join_url or "",
            "location": self.config.cycle.location,
            "timezone": self.config.cycle.timezone,
            "city": self.config.cycle.timezone.rpartition("/")[2].replace("_", " "),
            "cancelled": session.cancelled,
            "cancelled_reason": session.cancelled_reason,
            "moved": session.moved,
            "moved_from": (
                date_at_time(session.moved_from, language) if session.moved_from else ""
            ),
            "moved_to": date_at_time(session.start, language) if session.moved_from else "",
            "holiday": session.holiday,
            "extra": session.extra,
        }

    def _web_calendars_uncached(
        self, session: Session, join_url: str, language: str
    ) -> dict[str, str]:
        """The links that add the session to Google Agenda and Outlook.com: the entry the
        `.ics` describes (title, times, link, description)."""
        cycle = self.config.cycle
        event = WebEvent(
            session.topic or cycle.title,
            session.start,
            session.end,
            self._description(session, join_url, language),
            join_url or cycle.location,
            cycle.timezone,
        )
        return web_calendar_links(event)

    def _description(self, session: Session, join_url: str, language: str) -> str:
        """The calendar entry's description: the agenda, then the link."""
        lines = [*self._session_context(session, language)["agenda"]]
        if join_url:
            lines += ["", f"Rejoindre : {join_url}" if language == "fr" else f"Join: {join_url}"]
        return "\n".join(lines)

    def _links(
        self, registrant: Registrant, session: Session
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The registrant's unsubscribe (link and mailto), and their choices: the links
        that decline this session and open the page of their sessions, when the service
        has its own public address. One token signs all three."""
        reminders = self.config.reminders
        mailto = (
            reminders.unsubscribe_mailto
            or self.config.sender.reply_to
            or (self.config.contact.email or self.config.sender.address)
        )
        url = reminders.unsubscribe_url or ""
        if "{email}" in url:
            url = url.replace("{email}", quote(registrant.email))
        http = self.config.http
        choices = {"decline_url": "", "sessions_url": ""}
        base = http.signed_links
        if base and http.secret:
            # Our own endpoints (one-click RFC 8058, the sessions' page): a signed token,
            # never the address.
            signed = token(http.secret.get_secret_value(), self.config.cycle.id, registrant.key)
            url = f"{base}/u/{signed}"
            page = f"{base}/m/{signed}"
            choices = {"decline_url": f"{page}/{session.id}", "sessions_url": page}
        unsubscribe = {
            "mailto": f"mailto:{mailto}?subject={_UNSUBSCRIBE}",
            "address": mailto,
            "url": url,
        }
        return unsubscribe, choices

    def _calendar(
        self,
        session: Session,
        join_url: str,
        language: str,
        now: datetime,
        sequence: int = 0,
        withdrawn: Facts | None = None,
        uninvited: bool = False,
    ) -> Entry:
        """One entry per session, link and version, built once: attendees share it but
        for their ATTENDEE line."""
        key = (session, join_url, language, sequence, withdrawn, uninvited)
        if key not in self._calendars:
            if len(self._calendars) > 1024:
                self._calendars.clear()
            self._calendars[key] = session_calendar(
                self.config,
                session,
                join_url or None,
                self._description(session, join_url, language),
                stamp=now,
                sequence=sequence,
                withdrawn=withdrawn,
                uninvited=uninvited,
                years=self._years,
            )
        return self._calendars[key]

    def _assemble(
        self,
        subject: str,
        text: str,
        html: str,
        entry: Entry,
        ics: bytes,
        registrant: Registrant,
        mid: str,
        now: datetime,
        session: Session,
        language: str,
        unsubscribe: dict[str, str],
        bodies: tuple[str, str],
    ) -> bytes:
        """The MIME message, serialised directly: its shape never varies, and the email
        package spends milliseconds re-folding headers that are already encoded here."""
        sender, reply_to, list_id = self._fixed_headers
        headers = [
            ("Subject", subject_value(subject)),
            ("From", sender),
            ("To", mailbox(display_name(registrant.name), registrant.email, len("To: "))),
        ]
        if reply_to:
            headers.append(("Reply-To", reply_to))
        headers += [
            # One zone for every mail, whatever clock `now` came from: the cycle's.
            ("Date", date_value(now.astimezone(self.config.zone))),
            # Folded before the "<" when long: a Message-ID itself never breaks.
            ("Message-ID", mid if len(mid) <= LINE - len("Message-ID: ") else f"\r\n {mid}"),
            # RFC 3834: keeps vacation responders quiet; the X- header does so for Exchange.
            ("Auto-Submitted", "auto-generated"),
            ("X-Auto-Response-Suppress", "All"),
            ("List-Id", list_id),
        ]
        if unsubscribe["url"]:
            # RFC 8058 one-click: the https link, with the mailto as fallback.
            headers.append(
                ("List-Unsubscribe", f"<{unsubscribe['url']}>,\r\n <{unsubscribe['mailto']}>")
            )
            headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        else:
            headers.append(("List-Unsubscribe", f"<{unsubscribe['mailto']}>"))
        # Boundaries from the Message-ID: unique per mail, and base64 and
        # quoted-printable bodies can never contain "=_".
        boundary = hashlib.sha256(mid.encode()).hexdigest()[:24]
        mixed, alternative = f"=_m{boundary}", f"=_a{boundary}"
        filename = f"seance-{session.start:%Y-%m-%d}.ics"
        calendar = f'text/calendar; charset="utf-8"; method={entry.method}'
        encoded = calendar_body(entry.head, ics)
        # A value that starts with a fold starts on the next line.
        lines = [
            f"{name}:{value}" if value.startswith("\r\n") else f"{name}: {value}"
            for name, value in headers
        ]
        lines += [
            "Content-Language: " + language,
            "MIME-Version: 1.0",
            f'Content-Type: multipart/mixed; boundary="{mixed}"',
            "",
            f"--{mixed}",
            f'Content-Type: multipart/alternative; boundary="{alternative}"',
            "",
            f"--{alternative}",
            part('text/plain; charset="utf-8"', bodies[0], "quoted-printable"),
            f"--{alternative}",
            part('text/html; charset="utf-8"', bodies[1], "quoted-printable"),
            f"--{alternative}",
            # The part's method= must match the calendar's METHOD.
            part(calendar, encoded, "base64"),
            f"--{alternative}--",
            f"--{mixed}",
            # Outlook may ignore a calendar part inside multipart/alternative: attach it too.
            part(
                f'{calendar};\r\n name="{filename}"',
                encoded,
                "base64",
                f'attachment; filename="{filename}"',
            ),
            f"--{mixed}--",
            "",
        ]
        return "\r\n".join(lines).encode("ascii")


def _typed(registrant: dict[str, Any]) -> list[str]:
    """What the registrant typed that typography could keep on one line, as in the HTML.

    A stencil's markers (`stencil._Hole`, a str subclass) are left untouched: reading one
    would count as a template using the value."""
    return [
        str(escape(value))
        for field, value in registrant.items()
        if field != "email" and type(value) is str and "-" in value
    ]


def _as_is(text: str, *, html: bool = False) -> str:
    return text
