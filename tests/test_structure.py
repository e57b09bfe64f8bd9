"""The layering a reader relies on: the pure core imports no schema, file format or network."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.project import Project

# What planning must never pull in: validation, file formats, databases, sockets.
IMPURE = ("pydantic", "pydantic_settings", "csv", "sqlite3", "socket", "ssl", "aiosmtplib")


@pytest.mark.parametrize(
    "module", ["reminder.core.model", "reminder.core.plan", "reminder.core.wording"]
)
def test_the_pure_core_imports_nothing_of_io(module: str) -> None:
    probe = (
        f"import sys, {module}; "
        f"print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in {IMPURE!r})))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert found == [], f"{module} imports {found}"


# What a report needs none of: templates, MIME, calendars, SMTP and the sending loop.
SENDING = (
    "reminder.service.composing",
    "reminder.service.delivery",
    "reminder.service.dispatcher",
    "reminder.mail.messages",
    "reminder.mail.transport",
    "reminder.mail.transports",
    "reminder.mail.smtp",
    "reminder.inputs.templating",
    "jinja2",
    "icalendar",
    "aiosmtplib",
)


def test_reports_import_no_composing_or_sending_code() -> None:
    """`reminder plan` answers fast because its modules never reach the sending side."""
    modules = (
        "reminder.service.snapshot, reminder.commands.printing, reminder.service.lookahead, "
        "reminder.commands.checking"
    )
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, {modules}; "
            f"print(' '.join(sorted(m for m in sys.modules if m in {SENDING!r})))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert found == []


# What `reminder plan` has no use for on the sample (a French cycle, plain addresses, a
# CSV export, no REMINDER_* override): other countries' holidays, the full address validator,
# pydantic-settings and the asyncio it loads, Babel (French is written without it),
# spreadsheets, sending.
NOT_FOR_PLAN = (
    *SENDING,
    "holidays.countries",
    "holidays.countries.germany",
    "email_validator",
    "babel",
    "pydantic_settings",
    "asyncio",
    "xml.etree.ElementTree",
    "jinja2",
)


PLAN_PROBE = """
import contextlib, io, sys
from reminder.cli import main

shown = io.StringIO()
with contextlib.redirect_stdout(shown):
    status = main(["--config", sys.argv[1], "plan"])
print(status, "mercredi 1er mars 2023" in shown.getvalue())
print(*sorted(m for m in sys.modules if m in sys.argv[2:]))
"""


def test_plan_on_the_sample_imports_only_what_it_uses(project: Project) -> None:
    found = subprocess.run(
        [sys.executable, "-c", PLAN_PROBE, str(project.config), *NOT_FOR_PLAN],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert found == ["0 True", ""]


@pytest.mark.parametrize("module", ["worker", "dispatcher", "delivery"])
def test_the_service_names_no_transport(module: str) -> None:
    """A new transport (an HTTP mail API) is a class in reminder/mail, its section of the
    config and one entry in mail/transports.py: the worker and the send path ask its
    capabilities, never which it is."""
    source = (Path(__file__).parent.parent / "reminder" / "service" / f"{module}.py").read_text()
    named = re.findall(r"(?i)\bsmtp\b|\boutbox\b|smtp_transaction", source)
    assert named == []
