"""config.toml: the sample loads, env overrides it, and every bad input gets a precise message."""

from datetime import time, timedelta
from pathlib import Path

import pytest

from reminder.core.errors import ConfigError
from reminder.inputs.config import config_path, load_config
from reminder.inputs.schedule import load_sessions
from reminder.inputs.secrets import required, secret, secret_problems
from tests.support.commands import cli
from tests.support.project import REPO, Project


def problems_of(project: Project) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_sessions(load_config(project.config))
    return [str(p) for p in caught.value.problems]


def line_of(project: Project, text: str) -> int:
    lines = project.config.read_text().splitlines()
    exact = [n for n, line in enumerate(lines, 1) if line.strip() == text.strip()]
    return exact[0] if exact else next(n for n, line in enumerate(lines, 1) if text in line)


def test_the_sample_config_encodes_the_event_page() -> None:
    config = load_config(REPO / "config.toml")
    assert config.cycle.title == "Préparer la nouvelle contractualisation"
    assert config.cycle.timezone == "Europe/Paris"
    assert "Hauts-de-France" in config.organizer.name and "Lille" in config.organizer.address
    assert config.contact.name == "Morgane Petit" and config.contact.email == "m.petit@irev.fr"
    assert config.schedule.rule == "FREQ=MONTHLY;BYDAY=+1WE"
    assert (config.schedule.start, config.schedule.end) == (time(17), time(19))
    assert [s.name for s in config.semesters] == ["Premier semestre 2023", "Second semestre 2023"]
    assert config.smtp.host is None  # a fresh install mails nobody
    assert config.smtp.password is None


def test_paths_are_relative_to_the_config_folder(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMINDER_PATHS__SUPPRESSION", "/srv/x.txt")
    monkeypatch.chdir("/")
    config = load_config(project.config)
    assert config.paths.registrants == project.root / "registrants.csv"
    assert config.paths.templates.is_absolute()
    assert config.paths.suppression == Path("/srv/x.txt")


def test_environment_overrides_any_key(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMINDER_SMTP__HOST", "smtp.example.org")
    monkeypatch.setenv("REMINDER_SMTP__PORT", "465")
    monkeypatch.setenv("REMINDER_SMTP__SECURITY", "tls")
    monkeypatch.setenv("REMINDER_REMINDERS__LEADS", '["2d", "30m"]')
    monkeypatch.setenv("REMINDER_CYCLE__TITLE", "Autre titre")
    config = load_config(project.config)
    assert (config.smtp.host, config.smtp.effective_port, config.smtp.security) == (
        "smtp.example.org",
        465,
        "tls",
    )
    assert [str(lead) for lead in config.reminders.leads] == ["2d", "30m"]
    assert config.cycle.title == "Autre titre"
    assert config.cycle.id == "irev-elus-2023"  # the rest still comes from the file


def test_config_path_order(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_path(None) == Path("config.toml")
    monkeypatch.setenv("REMINDER_CONFIG", "/etc/reminder/config.toml")
    assert config_path(None) == Path("/etc/reminder/config.toml")
    assert config_path("other.toml") == Path("other.toml")


def test_password_from_environment_never_shows(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMINDER_SMTP__PASSWORD", "hunter2-secret")
    config = load_config(project.config)
    assert config.smtp.password is not None
    assert config.smtp.password.get_secret_value() == "hunter2-secret"
    assert "hunter2" not in repr(config) and "hunter2" not in str(config.model_dump())


def test_password_from_a_file(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = project.root / "smtp-password"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("REMINDER_SMTP__PASSWORD_FILE", str(secret))
    config = load_config(project.config)
    assert config.smtp.password is not None
    assert config.smtp.password.get_secret_value() == "from-a-file"


def test_an_unreadable_password_file_fails_only_what_uses_it(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMINDER_SMTP__PASSWORD_FILE", str(project.root / "nope"))
    config = load_config(project.config)  # `plan`, `suppressed`... need no SMTP password
    with pytest.raises(ConfigError, match="REMINDER_SMTP__PASSWORD_FILE") as caught:
        secret(config, "smtp", "password")
    assert "no mail can be sent" in str(caught.value)
    [problem] = secret_problems(config)
    assert problem.severity == "warning" and "No such file or directory" in problem.message


def test_env_override_with_a_bad_value_names_the_variable(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMINDER_SMTP__PORT", "lots")
    [problem] = problems_of(project)
    assert problem.startswith("environment variable REMINDER_SMTP__PORT: error: smtp.port:")


# The corpus of bad inputs: (what to change, what the message must say, the line it names).
BAD_INPUTS = [
    pytest.param(
        'title = "Préparer', 'title = "Préparer\n', "not valid TOML", "title =", id="malformed-toml"
    ),
    pytest.param(
        "[contact]\n",
        "[contact]\nrol = 'x'\n",
        "unknown key 'rol'; did you mean 'role'?",
        "rol =",
        id="unknown-key",
    ),
    pytest.param(
        "connections = 4",
        "connections = 'four'",
        "smtp.connections: Input should be a valid integer",
        "connections =",
        id="wrong-type",
    ),
    pytest.param(
        'timezone = "Europe/Paris"',
        'timezone = "Europe/Pariss"',
        "unknown timezone 'Europe/Pariss'",
        "timezone =",
        id="unknown-timezone",
    ),
    pytest.param(
        'leads = ["7d", "1d", "1h"]',
        'leads = ["7d", "1 jour", "1h"]',
        "'1 jour' is not a lead time",
        "leads =",
        id="bad-lead",
    ),
    pytest.param(
        "end = 2023-07-31",
        "end = 2023-02-01",
        "semester 'Premier semestre 2023' ends (2023-02-01) before it starts (2023-03-01)",
        "end = 2023-02-01",
        id="semester-ends-before-start",
    ),
    pytest.param(
        "date = 2023-04-05",
        "date = 2023-04-06",
        "2023-04-06 is not a session date of any semester",
        "date = 2023-04-06",
        id="entry-matches-no-session",
    ),
    pytest.param(
        "max_per_minute = 30",
        'max_per_minute = 30\npassword = "p4ss"',
        "a password must not be written in config.toml",
        "password =",
        id="password-in-file",
    ),
    pytest.param(
        'rule = "FREQ=MONTHLY;BYDAY=+1WE"',
        'rule = "FREQ=MONTHY;BYDAY=+1WE"',
        "is not an RFC 5545 RRULE",
        "rule =",
        id="bad-rule",
    ),
    pytest.param(
        'holidays = "warn"',
        'holidays = "sometimes"',
        "'warn', 'skip' or 'next-week'",
        "holidays =",
        id="bad-holiday-policy",
    ),
    pytest.param(
        'start = "17:00"', 'start = "25:00"', "schedule.start", 'start = "25:00"', id="bad-time"
    ),
    pytest.param(
        "[smtp]\n",
        '[smtp]\nhost = "smtp.example.org"\nsecurity = "none"\n',
        "would send mail and password in clear",
        'security = "none"',
        id="plaintext-smtp",
    ),
]


@pytest.mark.parametrize(("old", "new", "message", "located"), BAD_INPUTS)
def test_bad_input_gets_a_precise_message(
    project: Project, old: str, new: str, message: str, located: str
) -> None:
    project.edit(old, new)
    problems = problems_of(project)
    matching = [p for p in problems if message in p]
    assert matching, problems
    assert f"config.toml:{line_of(project, located)}" in matching[0]


def test_malformed_toml_names_line_and_column(project: Project) -> None:
    project.edit('title = "Préparer', 'title = "Préparer\n')
    with pytest.raises(ConfigError) as caught:
        load_config(project.config)
    [problem] = caught.value.problems
    assert (problem.line, problem.column) == (line_of(project, "title ="), 18)


def test_two_sessions_moved_onto_one_instant(project: Project) -> None:
    project.append("[[sessions]]\ndate = 2023-12-06\nmoved_to = 2023-10-04")
    [problem] = problems_of(project)
    assert "2023-10-04 and 2023-12-06 would both take place at 2023-10-04 17:00" in problem
    # At the entry that moved it, not at the first [[sessions]] of the file.
    last_entry = project.config.read_text().splitlines().count("[[sessions]]")
    lines = project.config.read_text().splitlines()
    header = [n for n, line in enumerate(lines, 1) if line == "[[sessions]]"][last_entry - 1]
    assert f"config.toml:{header}:" in problem


def test_a_session_ending_before_it_starts_is_reported_at_its_end_key(project: Project) -> None:
    project.append('[[sessions]]\ndate = 2023-12-06\nstart = "18:00"\nend = "17:30"')
    [problem] = problems_of(project)
    assert "ends (17:30) before it starts (18:00)" in problem
    end_line = line_of(project, 'end = "17:30"')
    assert f"config.toml:{end_line}:" in problem


def test_durations_are_parsed_once_into_values(project: Project) -> None:
    project.edit('sweep_interval = "5m"', 'sweep_interval = "2h"')
    config = load_config(project.config)
    assert config.reminders.sweep_interval == timedelta(hours=2)
    assert config.reminders.late_cutoff == timedelta(0)
    assert [str(lead) for lead in config.reminders.leads] == ["7d", "1d", "1h"]


def test_a_duration_written_as_a_number_says_to_quote_it(project: Project) -> None:
    project.edit('sweep_interval = "5m"', "sweep_interval = 5")
    with pytest.raises(ConfigError) as caught:
        load_config(project.config)
    [problem] = caught.value.problems
    assert "write it in quotes, e.g. '10m'" in str(problem)
    assert f"config.toml:{line_of(project, 'sweep_interval = 5')}:" in str(problem)


def test_every_problem_is_reported_at_once(project: Project) -> None:
    project.edit('timezone = "Europe/Paris"', 'timezone = "Mars/Olympus"')
    project.edit("connections = 4", "connections = 0")
    project.edit("max_per_minute = 30", 'max_per_minute = 30\npassword = "x"')
    problems = problems_of(project)
    assert len(problems) == 3


def test_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config PATH or set REMINDER_CONFIG"):
        load_config(tmp_path / "absent.toml")


def test_http_secrets_come_from_the_environment_or_a_file(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = project.root / "link-secret"
    secret.write_text("f" * 64 + "\n")
    monkeypatch.setenv("REMINDER_HTTP__SECRET_FILE", str(secret))
    monkeypatch.setenv("REMINDER_HTTP__STAFF_USER", "equipe")
    monkeypatch.setenv("REMINDER_HTTP__STAFF_PASSWORD", "cheval-agrafe")
    project.edit("#   public_url = ", "public_url = ")
    config = load_config(project.config)
    assert config.http.secret is not None
    assert config.http.secret.get_secret_value() == "f" * 64
    assert config.http.signed_links == "https://rappels.irev.fr"
    assert (config.http.host, config.http.port) == ("127.0.0.1", 0)
    assert "ffff" not in repr(config) and "cheval" not in str(config.model_dump())


@pytest.mark.parametrize(
    ("edit", "environment", "expected"),
    [
        pytest.param(
            ('listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\nsecret = "in-the-file"'),
            {},
            "a secret must not be written in config.toml",
            id="secret-in-file",
        ),
        pytest.param(
            ('listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\nstaff_password = "x"'),
            {},
            "REMINDER_HTTP__STAFF_PASSWORD",
            id="staff-password-in-file",
        ),
        pytest.param(
            ('listen = "127.0.0.1:0"', 'listen = "localhost"'),
            {},
            "is not HOST:PORT",
            id="listen-without-port",
        ),
        pytest.param(
            ('#   public_url = "https://', 'public_url = "http://'),
            {"REMINDER_HTTP__SECRET": "s" * 40},
            "must start with https://",
            id="public-url-in-clear",
        ),
    ],
)
def test_bad_http_settings_are_refused_with_what_to_do(
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    edit: tuple[str, str],
    environment: dict[str, str],
    expected: str,
) -> None:
    project.edit(*edit)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_config(project.config)
    message = str(caught.value)
    assert expected in message
    assert "in-the-file" not in message and "short" not in message.replace("shorter", "")


@pytest.mark.parametrize(
    ("edit", "environment", "expected", "severity"),
    [
        pytest.param(
            ("#   public_url = ", "public_url = "),
            {},
            "set REMINDER_HTTP__SECRET",
            "warning",
            id="public-url-without-secret",
        ),
        pytest.param(
            ("#   public_url = ", "public_url = "),
            {"REMINDER_HTTP__SECRET": "short"},
            "http.secret is 5 characters long; use at least 32 random",
            "error",
            id="short-secret",
        ),
        pytest.param(
            ('listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"'),
            {"REMINDER_BOUNCES__KEY": "short"},
            "bounces.key is 5 characters long",
            "error",
            id="short-message-id-key",
        ),
        pytest.param(
            ('listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"'),
            {"REMINDER_HTTP__STAFF_USER": "equipe"},
            "needs both a staff user and a password",
            "warning",
            id="staff-user-without-password",
        ),
        pytest.param(
            ('listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"'),
            {"REMINDER_HTTP__STAFF_PASSWORD": "cheval-agrafe"},
            "set REMINDER_HTTP__STAFF_USER",
            "warning",
            id="staff-password-without-user",
        ),
        pytest.param(
            ("[smtp]\n", '[smtp]\nhost = "smtp.example.org"\nusername = "cycle"\n'),
            {},
            "REMINDER_SMTP__PASSWORD",
            "warning",
            id="smtp-user-without-password",
        ),
    ],
)
def test_secrets_the_config_calls_for_are_checked_apart_from_loading(
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    edit: tuple[str, str],
    environment: dict[str, str],
    expected: str,
    severity: str,
) -> None:
    project.edit(*edit)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    config = load_config(project.config)  # what reads no secret works without them
    [problem] = secret_problems(config)
    assert expected in problem.message and problem.severity == severity
    assert "short" not in str(problem) and "cheval" not in str(problem)
    with pytest.raises(ConfigError) as caught:  # the service refuses to start
        required(config)
    assert expected in str(caught.value) and "error:" in str(caught.value)


def test_a_database_password_in_the_file_or_the_url_is_refused(project: Project) -> None:
    project.append('[ledger]\nurl = "postgresql://reminder:hunter2@db/reminder"\npassword = "x"')
    with pytest.raises(ConfigError) as caught:
        load_config(project.config)
    text = str(caught.value)
    assert "ledger.url holds a password" in text and "REMINDER_LEDGER__PASSWORD" in text
    assert "ledger.password" in text
    assert "hunter2" not in text


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://reminder:hunter2@db/reminder",
        "postgresql://reminder@db/reminder?password=hunter2",
        "postgres://:hunter2@db:5432/reminder",
    ],
)
def test_a_password_in_the_ledger_url_of_the_environment_is_refused_the_same(
    project: Project, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("REMINDER_LEDGER__URL", url)
    with pytest.raises(ConfigError) as caught:
        load_config(project.config)
    text = str(caught.value)
    assert text.startswith("environment variable REMINDER_LEDGER__URL: error: ledger.url:")
    assert "holds a password" in text and "REMINDER_LEDGER__PASSWORD_FILE" in text
    assert "hunter2" not in text


@pytest.mark.parametrize("in_environment", [True, False])
def test_a_ledger_url_in_another_form_is_refused_without_printing_it(
    project: Project, monkeypatch: pytest.MonkeyPatch, in_environment: bool
) -> None:
    """libpq's keyword form is no URL: refused like a bad URL, and not echoed, since
    it may hold the password."""
    conninfo = "host=db dbname=reminder password=hunter2"
    if in_environment:
        monkeypatch.setenv("REMINDER_LEDGER__URL", conninfo)
    else:
        project.append(f'[ledger]\nurl = "{conninfo}"')
    with pytest.raises(ConfigError) as caught:
        load_config(project.config)
    text = str(caught.value)
    assert "ledger.url" in text and "postgresql://USER@HOST/DATABASE" in text
    assert "hunter2" not in text


def test_the_ledger_url_and_password_come_from_the_environment(
    project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "db-password"
    secret.write_text("s3cret-db\n", encoding="utf-8")
    monkeypatch.setenv("REMINDER_LEDGER__URL", "postgresql://reminder@db:5432/reminder")
    monkeypatch.setenv("REMINDER_LEDGER__PASSWORD_FILE", str(secret))
    monkeypatch.setenv("REMINDER_LEDGER__LEASE", "45s")
    config = load_config(project.config)
    assert config.ledger.url == "postgresql://reminder@db:5432/reminder"
    assert config.ledger.password is not None
    assert config.ledger.password.get_secret_value() == "s3cret-db"
    assert config.ledger.lease.total_seconds() == 45
    assert "s3cret-db" not in repr(config)


def test_a_byte_order_mark_at_the_start_is_accepted_and_lines_still_match(
    project: Project,
) -> None:
    # Windows editors save UTF-8 with a BOM; tomllib alone calls it an invalid statement.
    text = project.config.read_text(encoding="utf-8")
    project.config.write_bytes(
        b"\xef\xbb\xbf" + text.replace('holidays = "warn"', 'holidays = "never"').encode()
    )
    with pytest.raises(ConfigError) as caught:
        load_config(project.config)
    [problem] = caught.value.problems
    assert problem.key == "schedule.holidays"
    assert problem.line == line_of(project, 'holidays = "never"')
    project.config.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_config(project.config).cycle.id == "irev-elus-2023"


SENDER_SECTION = (
    'address = "contact@irev.fr"\nname = "IREV – Cycle élus"\nreply_to = "m.petit@irev.fr"\n'
)


def as_before_the_sender_section(project: Project) -> None:
    """The sample as configs were written when the sender's keys sat in [smtp]."""
    project.edit(SENDER_SECTION, "")
    project.edit(
        "connections = 4",
        'sender = "contact@irev.fr"\nsender_name = "IREV – Cycle élus"\n'
        'reply_to = "m.petit@irev.fr"\nconnections = 4',
    )


def test_the_sender_keys_of_smtp_still_work_and_say_where_they_moved(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    as_before_the_sender_section(project)
    config = load_config(project.config)
    assert (config.sender.address, config.sender.name, config.sender.reply_to) == (
        "contact@irev.fr",
        "IREV – Cycle élus",
        "m.petit@irev.fr",
    )
    at = line_of(project, "sender_name =")
    assert f"config.toml:{at}: warning: smtp.sender_name: deprecated: the sender's identity " in (
        shown := "\n".join(str(w) for w in config.warnings)
    )
    assert "write `name = ...` under [sender] instead (read as sender.name meanwhile)" in shown
    assert len(config.warnings) == 3
    # `check` shows them and passes; the service logs them with the snapshot's problems.
    assert cli(project, "check") == 0
    printed = capsys.readouterr()
    assert "write `address = ...` under [sender] instead" in printed.err
    assert "4 warning(s)" in printed.out  # with the sample's holiday warning
    assert set(config.warnings) <= set(project.snapshot().problems)


def test_a_sender_key_of_smtp_from_the_environment_names_the_new_variable(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMINDER_SMTP__SENDER", "cycle@irev.fr")
    project.edit('address = "contact@irev.fr"\n', "")
    config = load_config(project.config)
    assert config.sender.address == "cycle@irev.fr"
    [warning] = [str(w) for w in config.warnings]
    assert warning.startswith("environment variable REMINDER_SMTP__SENDER: warning:")
    assert "write REMINDER_SENDER__ADDRESS instead" in warning


def test_a_sender_set_in_both_places_is_refused(project: Project) -> None:
    project.edit("connections = 4", 'sender = "other@irev.fr"\nconnections = 4')
    [problem] = problems_of(project)
    assert f"config.toml:{line_of(project, 'sender = ')}: error: smtp.sender:" in problem
    assert "keep only sender.address" in problem


def test_a_real_server_needs_a_real_sender(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.edit('address = "contact@irev.fr"\n', "")
    assert load_config(project.config).sender.address  # the outbox makes do with the default
    monkeypatch.setenv("REMINDER_SMTP__HOST", "smtp.example.org")
    [problem] = problems_of(project)
    assert "set sender.address to the address the mails come from" in problem


def test_a_bad_sender_under_its_old_key_is_reported_where_it_is_written(project: Project) -> None:
    as_before_the_sender_section(project)
    project.edit('sender = "contact@irev.fr"', 'sender = "contact at irev"')
    [problem] = problems_of(project)
    assert f"config.toml:{line_of(project, 'sender = ')}: error: smtp.sender:" in problem
