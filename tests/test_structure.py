"""The layering a reader relies on: the pure core imports no schema, file format or network."""

import subprocess
import sys

import pytest

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
    "reminder.mail.messages",
    "reminder.mail.transport",
    "reminder.inputs.templating",
    "jinja2",
    "icalendar",
    "aiosmtplib",
)


def test_reports_import_no_composing_or_sending_code() -> None:
    """`reminder plan` answers fast because its modules never reach the sending side."""
    modules = (
        "reminder.service.snapshot, reminder.report, reminder.service.pending, reminder.commands"
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
