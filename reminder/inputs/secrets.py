"""The secrets a config calls for, each checked where it is used.

Secrets come from the environment (REMINDER_SMTP__PASSWORD ...) or a file it names
(..._FILE), never from config.toml, which inputs.config refuses. A command reads only
the secrets it uses, so `plan` or `suppressed` run where the SMTP password cannot be
read; `check` lists every missing one as a warning naming what will not work; the
service refuses to start (or to reload) without any of them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import replace
from pathlib import Path

from ..core.errors import ConfigError, Problem, StateError
from .config import ENV_ONLY, ENV_PREFIX, Config

MIN_SECRET = 32  # characters: 128 bits and more of a random string
KEY_FILE = "message-id.key"
# Marks the Message-IDs of what records nothing (check, preview, send-test) before the
# service has made its key: they are never matched against a report.
_PASSING_KEY = secrets.token_hex(32).encode()
# What stops working without each secret, for the messages.
_WITHOUT = {
    ("smtp", "password"): "no mail can be sent: the SMTP server refuses the login",
    ("bounces", "password"): "bounce reports cannot be read",
    ("bounces", "key"): "Message-IDs cannot be marked with it",
    ("http", "secret"): "mails cannot carry the one-click unsubscribe link",
    ("http", "staff_password"): "the status page stays off",
    ("ledger", "password"): "the PostgreSQL ledger cannot be opened",
}


def _variable(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


def secret(config: Config, section: str, key: str) -> str | None:
    """The secret's value, None when this environment sets none; ConfigError naming the
    file when the file that should hold it cannot be read."""
    if problem := _unreadable(config, section, key):
        raise ConfigError([replace(problem, severity="error")])
    value = getattr(getattr(config, section), key)
    return None if value is None else str(value.get_secret_value())


def _unreadable(config: Config, section: str, key: str) -> Problem | None:
    """A problem when `section.key_file` is set but could not be read into the secret."""
    table = getattr(config, section)
    file: Path | None = getattr(table, f"{key}_file")
    if file is None or getattr(table, key) is not None:
        return None
    try:
        file.read_text(encoding="utf-8")  # again, for the reason: loading kept none
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    except UnicodeDecodeError:
        reason = "not UTF-8 text"
    else:
        return None  # readable since the config was loaded: the next load reads it
    variable = _variable(section, key)
    return config.origin.problem(
        f"the file {file} cannot be read ({reason}): {_WITHOUT[section, key]}; check "
        f"{variable}_FILE and the file's permissions for the user that runs the service",
        (section, f"{key}_file"),
        severity="warning",
    )


def secret_problems(config: Config) -> list[Problem]:
    """Every secret the config calls for that this environment lacks (warnings naming what
    will not work), and every secret too weak to use (errors)."""
    problems = [
        problem
        for section, key in ENV_ONLY
        if (problem := _unreadable(config, section, key)) is not None
    ]
    for section, name in (("http", "secret"), ("bounces", "key")):
        table = getattr(config, section)
        given = getattr(table, name)
        if given is not None and len(given.get_secret_value()) < MIN_SECRET:
            file = getattr(table, f"{name}_file")
            problems.append(
                Problem(
                    str(file) if file else f"environment variable {_variable(section, name)}",
                    f"{section}.{name} is {len(given.get_secret_value())} characters long; "
                    f"use at least {MIN_SECRET} random ones (e.g. `openssl rand -hex 32`)",
                    key=f"{section}.{name}",
                )
            )
    return problems + _missing(config)


def _missing(config: Config) -> list[Problem]:
    """The secrets the config's own settings call for, absent from this environment."""
    http, smtp, bounces = config.http, config.smtp, config.bounces
    found: list[tuple[str, tuple[str, str]]] = []
    if http.public_url and http.secret is None and http.secret_file is None:
        found.append(
            (
                "one-click unsubscribe links are signed: set REMINDER_HTTP__SECRET (or "
                f"REMINDER_HTTP__SECRET_FILE) to a random string of at least {MIN_SECRET} "
                f"characters, or remove http.public_url; without it, {_WITHOUT['http', 'secret']}",
                ("http", "public_url"),
            )
        )
    if http.staff_user is None and http.staff_password is not None:
        found.append(
            (
                "a staff password is set but no staff_user: set REMINDER_HTTP__STAFF_USER "
                f"(or neither); until then, {_WITHOUT['http', 'staff_password']}",
                ("http", "staff_user"),
            )
        )
    if http.staff_user and http.staff_password is None and http.staff_password_file is None:
        found.append(
            (
                "the status page needs both a staff user and a password: set "
                "REMINDER_HTTP__STAFF_PASSWORD (or neither); until then, "
                f"{_WITHOUT['http', 'staff_password']}",
                ("http", "staff_user"),
            )
        )
    if smtp.host and smtp.username and smtp.password is None and smtp.password_file is None:
        found.append(
            (
                "smtp.username is set but no password is in this environment: set "
                "REMINDER_SMTP__PASSWORD or REMINDER_SMTP__PASSWORD_FILE for the service; "
                f"without it, {_WITHOUT['smtp', 'password']}",
                ("smtp", "username"),
            )
        )
    if bounces.host and bounces.user and bounces.password is None and bounces.password_file is None:
        found.append(
            (
                "bounces.user is set but no password is in this environment: set "
                "REMINDER_BOUNCES__PASSWORD or REMINDER_BOUNCES__PASSWORD_FILE for the "
                f"service; without it, {_WITHOUT['bounces', 'password']}",
                ("bounces", "user"),
            )
        )
    return [config.origin.problem(text, at, severity="warning") for text, at in found]


def required(config: Config) -> None:
    """What the service checks before it serves a config: every secret it calls for."""
    if problems := secret_problems(config):
        raise ConfigError([replace(p, severity="error") for p in problems])


def message_key(config: Config, *, keep: bool = False) -> bytes:
    """The key that marks Message-IDs (core.message_ids).

    REMINDER_BOUNCES__KEY (or _FILE) when set. Otherwise the key kept in the state
    folder, which the service makes at its first start (`keep`) and keeps: mode 0600,
    never printed. A command that records nothing, run before that first start, marks
    with a key of its own process: its Message-IDs are never recorded, so never matched.
    """
    given = secret(config, "bounces", "key")
    if given is not None:
        return given.encode()
    path = config.paths.state / KEY_FILE
    if keep and not path.exists():
        _make_key(path)
    try:
        kept = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return _PASSING_KEY
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not the text this release writes"
        raise StateError(
            f"the Message-ID key {path} cannot be read ({reason}): give the service's user "
            "access to it, or remove it to have a new one made at the next start"
        ) from None
    if len(kept) < MIN_SECRET:
        raise StateError(
            f"the Message-ID key {path} is damaged (too short): remove it to have a new one "
            "made at the next start"
        )
    return kept.encode()


def _make_key(path: Path) -> None:
    """Write a new key at `path`, whole or not at all: another process starting at the
    same moment finds either no file or the complete one, never half of it."""
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(secrets.token_hex(32) + "\n")
        with contextlib.suppress(FileExistsError):  # another process's is as good
            os.link(draft, path)
    except OSError as exc:
        raise StateError(
            f"the state folder cannot be used: {exc.filename or path}: {exc.strerror}; give "
            "the service's user write access to paths.state (it keeps the Message-ID key "
            "there), or set REMINDER_BOUNCES__KEY"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            draft.unlink()
