"""The config.toml schema, its loading with environment overrides, and every message about it."""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from datetime import date, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrulestr
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from ..core.errors import ConfigError, KeyPath, Problem, dotted
from ..core.model import Lead, format_duration, parse_duration, sort_leads
from .environment import with_overrides
from .regular import not_regular
from .tomlpos import Origin, key_lines

ENV_PREFIX = "REMINDER_"
DEFAULT_RULE = "FREQ=MONTHLY;BYDAY=+1WE"
DEFAULT_SENDER = "reminder@localhost.localdomain"


def _wall_time(value: Any) -> Any:
    """Accept "17:00" and the French "17h00" / "17h"."""
    match = (
        re.fullmatch(r"\s*(\d{1,2})\s*[hH:]\s*(\d{2})?\s*", value)
        if isinstance(value, str)
        else None
    )
    if match:
        return time(int(match.group(1)), int(match.group(2) or 0))
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {value!r}: use an IANA name such as 'Europe/Paris'"
        ) from None
    return value


def _rule(value: str) -> str:
    text = value.strip().removeprefix("RRULE:")
    if re.search(r"(DTSTART|UNTIL|COUNT)", text, re.IGNORECASE):
        raise ValueError(
            "the rule must not hold DTSTART, UNTIL or COUNT: semesters give its start and end"
        )
    try:
        rrulestr(f"RRULE:{text}", dtstart=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{value!r} is not an RFC 5545 RRULE ({exc}); "
            f"first Wednesday of the month is {DEFAULT_RULE!r}"
        ) from None
    return text


def _lead(value: object) -> Lead:
    if isinstance(value, Lead):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a lead time: write it in quotes, e.g. '7d' or '1h'")
    return Lead.parse(value)


def _duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration: write it in quotes, e.g. '10m' or '0s'")
    return parse_duration(value)


def _leads(value: tuple[Lead, ...]) -> tuple[Lead, ...]:
    return tuple(sort_leads(list(value)))


Day = date  # SessionEntry has a field named `date`
WallTime = Annotated[time, BeforeValidator(_wall_time)]
TimeZoneName = Annotated[str, AfterValidator(_timezone)]
RuleText = Annotated[str, AfterValidator(_rule)]
# Parsed once, here: the rest of the code reads a Lead or a timedelta, never the text.
LeadTime = Annotated[Lead, PlainValidator(_lead), PlainSerializer(str)]
Duration = Annotated[timedelta, PlainValidator(_duration), PlainSerializer(format_duration)]
Email = Annotated[str, Field(pattern=r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")]
Url = Annotated[str, Field(pattern=r"^https?://\S+$")]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Organizer(Section):
    name: str
    address: str = ""
    phone: str = ""
    email: Email | None = None
    website: Url | None = None


class Contact(Section):
    name: str
    role: str = ""
    email: Email | None = None
    phone: str = ""


class Cycle(Section):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    title: str
    subtitle: str = ""
    audience: str = ""
    description: str = ""
    agenda: str = ""
    language: str = "fr"
    timezone: TimeZoneName = "Europe/Paris"
    location: str = "Visioconférence"
    join_url: Url | None = None
    url: Url | None = None
    registration_url: Url | None = None


class Schedule(Section):
    rule: RuleText = DEFAULT_RULE
    start: WallTime = time(17, 0)
    end: WallTime = time(19, 0)
    holidays: Literal["warn", "skip", "next-week"] = "warn"
    holiday_country: str = "FR"
    holiday_subdivision: str | None = None

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, end: time, info: ValidationInfo) -> time:
        start = info.data.get("start")
        if start is not None and end <= start:
            raise ValueError(f"end ({end:%H:%M}) must be after start ({start:%H:%M})")
        return end


class Semester(Section):
    name: str
    start: date
    end: date
    rule: RuleText | None = None

    @field_validator("end")
    @classmethod
    def _ends_after_start(cls, end: date, info: ValidationInfo) -> date:
        start = info.data.get("start")
        if start is not None and end < start:
            name = info.data.get("name", "")
            raise ValueError(f"semester {name!r} ends ({end}) before it starts ({start})")
        return end


class SessionEntry(Section):
    date: Day
    topic: str = ""
    draft: bool = False
    speakers: list[str] = []
    partner: str = ""
    agenda: str = ""
    join_url: Url | None = None
    cancelled: bool = False
    cancelled_reason: str = ""
    moved_to: Day | None = None
    start: WallTime | None = None
    end: WallTime | None = None
    extra: bool = False
    notify_topic: bool = False
    sequence: Annotated[int, Field(ge=0)] | None = None


class Reminders(Section):
    # Earliest first, each once.
    leads: Annotated[tuple[LeadTime, ...], Field(min_length=1), AfterValidator(_leads)] = (
        Lead(7, "d"),
        Lead(1, "d"),
        Lead(1, "h"),
    )
    late_cutoff: Duration = timedelta(0)
    sweep_interval: Duration = timedelta(minutes=5)
    notice_delay: Duration = timedelta(minutes=10)
    calendar_alarm: Duration | None = timedelta(minutes=15)
    # How reminders and updates carry the calendar entry (README, "Calendar entries"):
    # an invitation every client applies in place, or a publication without RSVP buttons
    # that Outlook and Gmail do not update.
    calendar_method: Literal["request", "publish"] = "request"
    unsubscribe_url: Url | None = None
    unsubscribe_mailto: Email | None = None


class Paths(Section):
    registrants: Path = Path("registrants.csv")
    suppression: Path = Path("suppression.txt")
    templates: Path = Path("templates")
    state: Path = Path("state")


class Columns(Section):
    email: list[str] = [
        "Courriel",
        "E-mail",
        "Email",
        "Adresse e-mail",
        "Adresse électronique",
        "Adresse mail",
        "Mail",
        "Adresse de messagerie",
    ]
    first_name: list[str] = ["Prénom", "First name"]
    last_name: list[str] = ["Nom", "Nom de famille", "Last name"]
    role: list[str] = ["Fonction", "Mandat", "Qualité", "Job title"]
    organisation: list[str] = [
        "Collectivité",
        "Commune",
        "Structure",
        "Organisme",
        "Intercommunalité",
        "Organisation",
        "Organization",
    ]
    sessions: list[str] = ["Séances", "Séance", "Dates", "Sessions"]
    join_url: list[str] = ["Lien Zoom", "Lien personnel", "Lien de connexion", "Join URL"]
    language: list[str] = ["Langue", "Language"]
    registered_at: list[str] = [
        "Horodateur",
        "Date de soumission",
        "Heure de soumission",
        "Date d'inscription",
        "Date de la commande",
        "Timestamp",
        "Submitted at",
        "Completion time",
        "Heure de fin",
        "Date submitted",
        "Submit date",
        "Registration time",
        "Order date",
    ]


def _share(value: object) -> object:
    """50% or 0.5: the same share."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"{value!r} is not a share: write 50% or 0.5") from None
    return value


class RegistrantsFormat(Section):
    encoding: Literal["auto", "utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1"] = "auto"
    delimiter: Literal["auto", ",", ";", "\t"] = "auto"
    sheet: str | None = None
    header_row: int | None = Field(default=None, ge=1)
    all_sessions: bool = False
    # A registrant whose sessions cannot be read, or an export whose sessions column is
    # not recognised: "skip" serves nobody from it until it reads right, "all" serves
    # every session (and says so).
    unknown_sessions: Literal["skip", "all"] = "skip"
    columns: Columns = Columns()
    # A reload that removes more than this share of the registrants is held back:
    # an export cut short (or only its header row) must not silence the service.
    max_drop: Annotated[float, BeforeValidator(_share), Field(ge=0, le=1)] = 0.5


def _no_plaintext_off_host(security: str, info: ValidationInfo, what: str, peer: str) -> str:
    host = info.data.get("host")
    if host and security == "none" and not (_is_loopback(host) or info.data.get("allow_insecure")):
        raise ValueError(
            f"security = 'none' would send {what} in clear to {host}; use 'starttls' or "
            f"'tls', or set allow_insecure = true if this {peer} is trusted"
        )
    return security


class Smtp(Section):
    host: str | None = None
    port: Annotated[int, Field(gt=0, lt=65536)] | None = None
    # Before security: the check of security reads it.
    allow_insecure: bool = False
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    # Environment only (REMINDER_SMTP__PASSWORD); load_config refuses it in the file.
    password: SecretStr | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    timeout: Annotated[float, Field(gt=0)] = 60.0
    connections: Annotated[int, Field(ge=1, le=64)] = 4
    max_per_second: Annotated[float, Field(gt=0)] | None = None
    max_per_minute: Annotated[int, Field(gt=0)] | None = None
    attempts: Annotated[int, Field(ge=1, le=20)] = 4
    retry_base: Annotated[float, Field(ge=0)] = 1.0

    @property
    def effective_port(self) -> int:
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]

    @property
    def host_is_loopback(self) -> bool:
        return self.host is None or _is_loopback(self.host)

    @field_validator("security")
    @classmethod
    def _no_plaintext_off_host(cls, security: str, info: ValidationInfo) -> str:
        return _no_plaintext_off_host(security, info, "mail and password", "relay")


class Sender(Section):
    """Who the mails come from: read by the composer, whatever transport sends them."""

    address: Email = DEFAULT_SENDER
    name: str | None = None  # the From display name; organizer.name when unset
    reply_to: Email | None = None

    @property
    def domain(self) -> str:
        """Names what this tool mints: Message-IDs, calendar UIDs, the List-Id."""
        return self.address.rpartition("@")[2]


# Keys of [smtp] that moved to [sender]: still read, with a warning naming the new key.
MOVED_TO_SENDER = {"sender": "address", "sender_name": "name", "reply_to": "reply_to"}


class Bounces(Section):
    """Where bounce reports arrive: an IMAP folder, or a local Maildir."""

    host: str | None = None
    port: Annotated[int, Field(gt=0, lt=65536)] | None = None
    allow_insecure: bool = False
    security: Literal["tls", "starttls", "none"] = "tls"
    user: str | None = None
    # Environment only (REMINDER_BOUNCES__PASSWORD); load_config refuses it in the file.
    password: SecretStr | None = None
    password_file: Path | None = None
    folder: str = "INBOX"
    maildir: Path | None = None
    ca_file: Path | None = None
    interval: Duration = timedelta(minutes=15)
    timeout: Annotated[float, Field(gt=0)] = 30.0
    # Environment only (REMINDER_BOUNCES__KEY): marks every Message-ID (core.message_ids).
    key: SecretStr | None = None
    key_file: Path | None = None

    @property
    def configured(self) -> bool:
        return bool(self.host or self.maildir)

    @property
    def effective_port(self) -> int:
        return self.port or {"starttls": 143, "tls": 993, "none": 143}[self.security]

    @field_validator("security")
    @classmethod
    def _no_plaintext_off_host(cls, security: str, info: ValidationInfo) -> str:
        return _no_plaintext_off_host(security, info, "the IMAP password", "host")

    @field_validator("maildir")
    @classmethod
    def _one_source(cls, maildir: Path | None, info: ValidationInfo) -> Path | None:
        if maildir is not None and info.data.get("host"):
            raise ValueError("set either bounces.host (IMAP) or bounces.maildir, not both")
        return maildir


def _listen(value: str) -> str:
    host, colon, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(
            f"{value!r} is not HOST:PORT; the default is '127.0.0.1:8025' (port 0: any free port)"
        )
    return f"{host}:{int(port)}"


ListenText = Annotated[str, AfterValidator(_listen)]


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address or network, e.g. '127.0.0.1' or '10.0.0.0/8'"
        ) from None


ProxyNetwork = Annotated[str, AfterValidator(_network)]


class Http(Section):
    """The HTTP face: health, metrics, one-click unsubscribe and the staff status page."""

    enabled: bool = True
    listen: ListenText = "127.0.0.1:8025"
    public_url: Url | None = None
    # Environment only (REMINDER_HTTP__SECRET); load_config refuses it in the file.
    secret: SecretStr | None = None
    secret_file: Path | None = None
    staff_user: str | None = None
    # Environment only (REMINDER_HTTP__STAFF_PASSWORD), like the secret.
    staff_password: SecretStr | None = None
    staff_password_file: Path | None = None
    # The reverse proxies whose X-Forwarded-For names the client (addresses or networks).
    trusted_proxies: list[ProxyNetwork] = []

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def on_loopback(self) -> bool:
        return _is_loopback(self.host)

    @field_validator("public_url")
    @classmethod
    def _https(cls, url: str | None) -> str | None:
        if url is None:
            return None
        host = re.sub(r"^https?://([^/:]+|\[[^\]]+\]).*$", r"\1", url).strip("[]")
        if not url.startswith("https://") and not _is_loopback(host):
            raise ValueError(
                "registrants reach this address from their mail: it must start with https:// "
                "(RFC 8058 one-click unsubscribe requires HTTPS)"
            )
        return url.rstrip("/")

    @property
    def signed_links(self) -> str | None:
        """The public address the mails' signed links start with (one-click unsubscribe,
        decline a session, the page of one's sessions), when the secret is set too."""
        return self.public_url if self.public_url and self.secret else None


class LedgerSettings(Section):
    # Empty: the SQLite file state/ledger.sqlite. A postgresql:// URL: a ledger that
    # several workers share. Its password comes from the environment or a file only.
    url: str = ""
    password: SecretStr | None = None
    password_file: Path | None = None
    lease: Duration = timedelta(seconds=30)

    @field_validator("url")
    @classmethod
    def _postgresql_url(cls, url: str) -> str:
        if url and not re.fullmatch(r"postgres(ql)?://\S+", url):
            # Not shown back: a connection string in another form may hold the password.
            raise ValueError(
                "write postgresql://USER@HOST/DATABASE (its password in "
                "REMINDER_LEDGER__PASSWORD or REMINDER_LEDGER__PASSWORD_FILE), or nothing "
                "for the SQLite file state/ledger.sqlite"
            )
        return url

    @field_validator("lease")
    @classmethod
    def _some_lease(cls, lease: timedelta) -> timedelta:
        if lease <= timedelta(0):
            raise ValueError("a lease must be more than zero, e.g. '30s'")
        return lease


class Config(BaseModel):
    """Everything staff configure; `load_config` is the way to build one, with the
    environment's overrides (REMINDER_SMTP__HOST ...) read by pydantic-settings."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    cycle: Cycle
    organizer: Organizer
    contact: Contact
    schedule: Schedule = Schedule()
    semesters: Annotated[list[Semester], Field(min_length=1)]
    sessions: list[SessionEntry] = []
    reminders: Reminders = Reminders()
    paths: Paths = Paths()
    registrants: RegistrantsFormat = RegistrantsFormat()
    sender: Sender = Sender()
    smtp: Smtp = Smtp()
    bounces: Bounces = Bounces()
    http: Http = Http()
    ledger: LedgerSettings = LedgerSettings()

    # Where the file's keys are, for messages: set by `load_config` and nothing else.
    _origin: Origin = PrivateAttr(default_factory=Origin)
    # What still works but should change (a key that moved): set by `load_config`.
    _warnings: tuple[Problem, ...] = PrivateAttr(default=())

    @property
    def origin(self) -> Origin:
        return self._origin

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return self._warnings

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.cycle.timezone)

    @property
    def ledger_file(self) -> Path:
        """The SQLite ledger, when no PostgreSQL URL is set."""
        return self.paths.state / "ledger.sqlite"


def config_path(cli_value: str | os.PathLike[str] | None = None) -> Path:
    """--config beats REMINDER_CONFIG beats ./config.toml."""
    return Path(cli_value or os.environ.get(f"{ENV_PREFIX}CONFIG") or "config.toml")


def load_config(path: Path) -> Config:
    """Read, validate and return the config at `path`, or raise ConfigError with every problem."""
    name = str(path)
    if odd := not_regular(path):
        raise ConfigError([Problem(name, odd)])
    try:
        # utf-8-sig: Notepad and Excel-minded editors save a byte-order mark first.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            [Problem(name, f"no such file; pass --config PATH or set {ENV_PREFIX}CONFIG")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(name, f"cannot be read: {exc}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        reason = re.sub(r"\s*\(at line.*\)", "", str(exc))
        raise ConfigError(
            [
                Problem(
                    name,
                    f"not valid TOML: {reason}",
                    line=int(found.group(1)) if found else None,
                    column=int(found.group(2)) if found else None,
                )
            ]
        ) from None

    origin = Origin(path, key_lines(text))
    problems: list[Problem] = []
    for section, key in ENV_ONLY:
        table = data.get(section)
        if isinstance(table, dict) and key in table:
            del table[key]
            env = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
            problems.append(
                origin.problem(
                    f"a {'password' if 'password' in key else 'secret'} must not be written in "
                    "config.toml (anyone who reads the file or "
                    f"its history would have it): remove the line and set {env}, or "
                    f"{env}_FILE naming a file only the service can read",
                    (section, key),
                )
            )
    moved: list[Problem] = []
    written_at: dict[KeyPath, KeyPath] = {}
    try:
        # Environment first: an ops override beats the file staff edit.
        merged = with_overrides(Config, ENV_PREFIX, data)
        problems += _url_password(origin, data, merged)
        moved, written_at = _moved_sender_keys(merged, origin)
        problems += [p for p in moved if p.severity == "error"]
        config = Config(**merged)
    except ValidationError as exc:
        for error in exc.errors():
            # A bad value of a moved key is shown where it is written (smtp.sender).
            at: KeyPath = tuple(error["loc"])
            problems.append(_problem(origin, {**error, "loc": written_at.get(at, at)}))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    config = _resolved(config, path.parent)
    config._origin = origin
    config._warnings = tuple(moved)
    _check_sender(config)
    for section, key in ENV_ONLY:
        config = _with_secret_file(config, section, key)
    return config


def holds_password(url: str) -> bool:
    """Whether a database URL carries a password, as user:password@ or ?password=."""
    parts = urlsplit(url)
    return parts.password is not None or "password" in parse_qs(parts.query)


def _url_password(origin: Origin, data: dict[str, Any], merged: dict[str, Any]) -> list[Problem]:
    """One rule wherever the ledger's URL is written: it never carries a password, which
    would show in `ps`, shell histories and every copy of the file or unit."""
    ledger = merged.get("ledger")
    if not isinstance(ledger, dict):
        return []
    url = ledger.get("url")
    if not isinstance(url, str) or not holds_password(url):
        return []
    written = data.get("ledger")
    in_file = isinstance(written, dict) and written.get("url") == url
    ledger["url"] = ""  # validated without it: the other problems are still reported
    fix = (
        "write postgresql://USER@HOST/DATABASE and set REMINDER_LEDGER__PASSWORD or "
        "REMINDER_LEDGER__PASSWORD_FILE"
    )
    if in_file:
        return [origin.problem(f"ledger.url holds a password: {fix}", ("ledger", "url"))]
    return [
        Problem(
            f"environment variable {ENV_PREFIX}LEDGER__URL",
            f"the URL holds a password: {fix}",
            key="ledger.url",
        )
    ]


def _moved_sender_keys(
    data: dict[str, Any], origin: Origin
) -> tuple[list[Problem], dict[KeyPath, KeyPath]]:
    """Move smtp.sender, smtp.sender_name and smtp.reply_to to [sender] in `data`, as the
    service reads them: a warning for each, naming its new key (an error when both are
    set), and where each moved key was written."""
    smtp, sender = data.get("smtp"), data.get("sender", {})
    if not isinstance(smtp, dict) or not isinstance(sender, dict):
        return [], {}
    found: list[Problem] = []
    written_at: dict[KeyPath, KeyPath] = {}
    for old, new in MOVED_TO_SENDER.items():
        if old not in smtp:
            continue
        value = smtp.pop(old)
        env = f"{ENV_PREFIX}SMTP__{old.upper()}"
        source, instead = (
            (f"environment variable {env}", f"{ENV_PREFIX}SENDER__{new.upper()}")
            if env in os.environ
            else ("", f"`{new} = ...` under [sender]")
        )
        if new in sender:
            message = f"sender.{new} is set too: keep only sender.{new}"
            severity = "error"
        else:
            sender[new] = value
            written_at["sender", new] = ("smtp", old)
            message = (
                "deprecated: the sender's identity moved to its own section; write "
                f"{instead} instead (read as sender.{new} meanwhile)"
            )
            severity = "warning"
        if source:
            found.append(Problem(source, message, key=f"smtp.{old}", severity=severity))
        else:
            found.append(origin.problem(message, ("smtp", old), severity=severity))
    if found:
        data["sender"] = sender
    return found, written_at


def _check_sender(config: Config) -> None:
    """A real server needs a real From address; the outbox makes do with the default."""
    if config.smtp.host and config.sender.address == DEFAULT_SENDER:
        raise ConfigError(
            [
                config.origin.problem(
                    "set sender.address to the address the mails come from",
                    ("sender", "address"),
                )
            ]
        )


def _resolved(config: Config, folder: Path) -> Config:
    """`config` with every file it names made absolute: relative ones are read from the
    config file's folder, whatever the working directory of the command or service."""

    def absolute(section: BaseModel, *names: str) -> dict[str, Path]:
        found = {name: getattr(section, name) for name in names}
        return {
            name: path if path.is_absolute() else folder / path
            for name, path in found.items()
            if path is not None
        }

    def update(section: str, *names: str) -> dict[str, BaseModel]:
        table = getattr(config, section)
        return {section: table.model_copy(update=absolute(table, *names))}

    return config.model_copy(
        update={
            **update("paths", "registrants", "suppression", "templates", "state"),
            **update("smtp", "password_file", "ca_file"),
            **update("bounces", "password_file", "maildir", "ca_file", "key_file"),
            **update("http", "secret_file", "staff_password_file"),
            **update("ledger", "password_file"),
        }
    )


# Secrets read from the environment (or a file it names), never from config.toml.
ENV_ONLY = (
    ("smtp", "password"),
    ("bounces", "password"),
    ("http", "secret"),
    ("http", "staff_password"),
    ("ledger", "password"),
    ("bounces", "key"),
)


def _with_secret_file(config: Config, section: str, key: str) -> Config:
    """Fill `section.key` from the file named by `section.key_file` when it is not set.

    A file this process cannot read leaves the secret unset: only what uses it fails,
    with the reason (inputs.secrets), so that a command needing no secret runs anyway.
    """
    table = getattr(config, section)
    file = getattr(table, f"{key}_file")
    if file is None or getattr(table, key) is not None:
        return config
    try:
        secret = file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return config
    updated = table.model_copy(update={key: SecretStr(secret)})
    loaded = config.model_copy(update={section: updated})
    loaded._origin = config._origin
    return loaded


def _problem(origin: Origin, error: Any) -> Problem:
    loc: KeyPath = tuple(error["loc"])
    env = _env_name(loc)
    if env in os.environ:
        return Problem(f"environment variable {env}", _message(error, loc), key=dotted(loc))
    return origin.problem(_message(error, loc), loc)


def _message(error: Any, loc: tuple[Any, ...]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = list(_model_at(loc[:-1]).model_fields)
        near = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(valid)}"
        return f"unknown key {loc[-1]!r}{hint}"
    if kind == "missing":
        return "this key is required"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind.startswith(("value_error", "assertion_error")):
        return message
    given = error.get("input")
    return f"{message} (found {given!r})" if not isinstance(given, dict | list) else message


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel]:
    model: type[BaseModel] = Config
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        inner = getattr(annotation, "__args__", (annotation,))
        model = next(arg for arg in inner if isinstance(arg, type) and issubclass(arg, BaseModel))
    return model


def _env_name(loc: tuple[Any, ...]) -> str:
    return ENV_PREFIX + "__".join(str(part).upper() for part in loc if not isinstance(part, int))
