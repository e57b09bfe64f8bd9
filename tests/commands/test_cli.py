"""The command line on the sample project: every command, its output and its exit status."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reminder import __version__
from reminder.cli import main
from reminder.core.mailing import DeliveryKey, DeliveryState
from reminder.storage.ledger import Claim, Ledger, Outcome
from tests.support.commands import cli
from tests.support.project import Project, person
from tests.support.smtp import Server


def test_check_on_the_sample_is_ok_with_the_toussaint_warning(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(project, "check") == 0
    printed = capsys.readouterr()
    warning = "warning: schedule.holidays: the session of 2023-11-01 falls on a public holiday"
    assert warning in printed.err  # problems on stderr, the verdict on stdout
    assert "OK: 9 sessions (0 cancelled), leads 7d, 1d, 1h; 22 registrants served" in printed.out
    assert "state folder writable; 1 warning(s)" in printed.out
    assert cli(project, "check", "--strict") == 1


def test_check_reports_every_kind_of_problem_at_once(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.edit('leads = ["7d", "1d", "1h"]', 'leads = ["7d", "1 jour"]')
    (project.root / "templates" / "reminder.subject.txt").write_text("{{ sesion.topic }}\n")
    assert cli(project, "check") == 1
    out = capsys.readouterr().err
    assert "'1 jour' is not a lead time" in out
    assert "reminder.subject.txt:1: error: unknown variable 'sesion'" in out
    assert "2 error(s)" in out


def test_check_reports_bad_registrant_rows_as_warnings_since_the_others_are_served(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    with (project.root / "registrants.csv").open("a", encoding="utf-8") as export:
        export.write("2023-02-01 10:00:00;Roy;Léa;lea.roy@;Maire;Lens;toutes;\r\n")
    assert cli(project, "check") == 0
    out = capsys.readouterr().err
    assert "registrants.csv: row 24, column Courriel: warning: 'lea.roy@' is not a valid" in out
    assert cli(project, "check", "--strict") == 1


def test_check_fails_on_a_state_folder_it_cannot_write(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    (project.root / "blocked").write_text("a file where the state folder should be")
    project.edit('state = "state"', 'state = "blocked/state"')
    assert cli(project, "check") == 1
    assert "blocked: error: paths.state: the state folder" not in (err := capsys.readouterr().err)
    assert "the state folder" in err and "blocked/state is not writable (Not a directory)" in err


def test_check_warns_of_an_export_with_nobody_and_a_past_extra_session(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.registrants([])
    project.append('[[sessions]]\ndate = 2023-06-14\nextra = true\ntopic = "Rattrapage"')
    assert cli(project, "check") == 0
    err = capsys.readouterr().err
    assert "registrants.csv: warning: no registrant would be served" in err
    assert "the extra session of 2023-06-14 is in the past" in err
    lines = project.config.read_text().splitlines()
    at = lines.index("date = 2023-06-14") + 1  # the entry's own line, not the first [[sessions]]
    assert f"config.toml:{at}: warning: sessions[" in err


def test_a_toml_error_does_not_invent_a_templates_error(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    (project.root / "templates").rename(project.root / "modeles")
    project.edit('templates = "templates"', 'templates = "modeles"\n[[[broken')
    assert cli(project, "check") == 1
    err = capsys.readouterr().err
    assert "not valid TOML" in err
    assert "templates" not in err.split("not valid TOML", 1)[1]


def test_plan_prints_the_event_page_calendar(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(project, "plan", "--to", "2023-07-31", "--now", "2023-01-15T09:00") == 0
    out = capsys.readouterr().out
    for day in (
        "mercredi 1er mars 2023",
        "mercredi 5 avril 2023",
        "mercredi 3 mai 2023",
        "mercredi 7 juin 2023",
        "mercredi 5 juillet 2023",
    ):
        assert f"{day}, 17h00 – 19h00  [upcoming" in out
    assert "septembre" not in out
    assert "reminder   7d  2023-02-22 17:00 CET  upcoming" in out


def test_plan_json_has_offsets_and_both_dst_changes(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(project, "plan", "--format", "json", "--now", "2023-03-10T12:00:00+01:00") == 0
    data = json.loads(capsys.readouterr().out)
    sessions = {s["id"]: s for s in data["sessions"]}
    march = sessions["2023-03-01"]
    assert march["start"] == "2023-03-01T17:00:00+01:00"
    assert "past" in march["status"] and march["registrants"] == 19
    april = {r["lead"]: r["due_at"] for r in sessions["2023-04-05"]["reminders"]}
    assert april == {
        "7d": "2023-03-29T17:00:00+02:00",
        "1d": "2023-04-04T17:00:00+02:00",
        "1h": "2023-04-05T16:00:00+02:00",
    }
    november = {r["lead"]: r["due_at"] for r in sessions["2023-11-01"]["reminders"]}
    assert november["7d"] == "2023-10-25T17:00:00+02:00"  # before the autumn change
    assert november["1d"] == "2023-10-31T17:00:00+01:00"  # after it: still 17:00
    assert sessions["2023-11-01"]["holiday"] == "Toussaint"
    assert "holiday" in sessions["2023-11-01"]["status"]


def test_registrants_masks_addresses_unless_asked(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(project, "registrants") == 0
    out = capsys.readouterr().out
    assert "e***@example.org" in out and "evelyne.dubois@example.org" not in out
    assert (
        "22 registrants served, 0 suppressed by the list file, 0 in the ledger, 0 problems" in out
    )
    assert (
        cli(
            project, "registrants", "--show-addresses", "--format", "csv", "--session", "2023-10-04"
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("email,first_name")
    assert any(line.startswith("bruno.lefevre@example.org,Bruno") for line in lines)
    assert len(lines) == 1 + 17


def test_registrants_json(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(project, "registrants", "--format", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["2023-03-01"] == 19 and len(data["registrants"]) == 22


def test_preview_writes_eml_html_ics_and_prints_the_text(
    project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "preview"
    assert (
        cli(
            project,
            "preview",
            "--session",
            "2023-03-01",
            "--lead",
            "1h",
            "--registrant",
            "S.Hamdani@example.fr",
            "--out",
            str(out),
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.startswith("Subject: Dans une heure, à 17h00\u00a0: Mixité sociale")
    assert "Bonjour Samira Hamdani," in printed and "https://zoom.us/w/00000000001" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "reminder-2023-03-01-1h.eml",
        "reminder-2023-03-01-1h.html",
        "reminder-2023-03-01-1h.ics",
    ]


def test_preview_of_an_unknown_session_lists_the_sessions(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(project, "preview", "--session", "2023-03-02") == 1
    assert "no session on 2023-03-02; the sessions are 2023-03-01, 2023-04-05" in (
        capsys.readouterr().err
    )


def test_a_bad_argument_says_how_to_write_it(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli(project, "preview", "--session", "1er mars")
    assert caught.value.code == 2
    assert "'1er mars' is not a date: write 2023-03-01 or 01/03/2023" in capsys.readouterr().err


@pytest.fixture
def smtp_env(smtp_server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """The test server, configured as ops would: through the environment."""
    monkeypatch.setenv("REMINDER_SMTP__HOST", "127.0.0.1")
    monkeypatch.setenv("REMINDER_SMTP__PORT", str(smtp_server.port))
    monkeypatch.setenv("REMINDER_SMTP__SECURITY", "none")
    return smtp_server


def test_send_test_mails_one_address_and_leaves_the_ledger_alone(
    project: Project, smtp_env: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    smtp_server = smtp_env
    assert cli(project, "send-test", "--to", "staff@example.org", "--session", "2023-03-01") == 0
    out = capsys.readouterr().out
    assert f"via SMTP 127.0.0.1:{smtp_server.port}" in out
    assert "sent: 250" in out
    assert smtp_server.handler.recipients() == ["staff@example.org"]
    assert not (project.root / "state" / "ledger.sqlite").exists()


def test_send_test_reports_a_refusal(
    project: Project, smtp_env: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    smtp_env.handler.rcpt_replies["staff@example.org"] = ["550 5.1.1 No such user"]
    assert cli(project, "send-test", "--to", "staff@example.org") == 1
    assert "failed: 550 5.1.1 No such user" in capsys.readouterr().out


def _ledger_with_a_failure(project: Project) -> None:
    now = datetime(2023, 2, 28, 16, tzinfo=UTC)
    with Ledger(project.root / "state" / "ledger.sqlite") as ledger:
        keys = [
            DeliveryKey("2023-03-01T17:00+01:00", "reminder", "1d", who)
            for who in ("ok@example.org", "gone@example.org")
        ]
        ledger.claim([Claim(k, f"<{i}@irev.fr>", now, now) for i, k in enumerate(keys)], now)
        ledger.record(
            [
                Outcome(keys[0], DeliveryState.SENT, "250 ok", now),
                Outcome(keys[1], DeliveryState.FAILED, "550 5.1.1 No such user", now),
            ],
            now,
        )


def test_history_shows_failures_and_exits_1(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    _ledger_with_a_failure(project)
    # A bounce of 2023 is not news today: exit 0, and 1 for a window that holds it.
    assert cli(project, "history", "--session", "2023-03-01") == 0
    capsys.readouterr()
    assert cli(project, "history", "--session", "2023-03-01", "--since", "2023-02-28") == 1
    out = capsys.readouterr().out
    assert "g***@example.org  failed" in out and "550 5.1.1 No such user" in out
    assert "1 failed, 1 sent" in out
    assert cli(project, "history", "--recipient", "ok@example.org", "--format", "json") == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["status"], row["recipient"]) == ("sent", "o***@example.org")


def test_status_shows_next_wakeups_counts_and_the_last_error(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    _ledger_with_a_failure(project)
    # A reminder failed for someone within the last 24 hours: monitoring hears of it.
    assert cli(project, "status", "--now", "2023-02-28T18:00", "--format", "json") == 1
    data = json.loads(capsys.readouterr().out)
    assert data["next_wakeups"][0]["at"] == "2023-03-01T16:00:00+01:00"
    assert data["next_wakeups"][0]["reminders"] == [
        {"session": "2023-03-01", "lead": "1h", "registrants": 19}
    ]
    march_1d = next(
        r for r in data["reminders"] if (r["session"], r["lead"]) == ("2023-03-01", "1d")
    )
    assert (march_1d["sent"], march_1d["failed"], march_1d["pending"]) == (1, 1, 17)
    assert data["last_error"]["reply"] == "550 5.1.1 No such user"
    assert cli(project, "status", "--now", "2023-02-28T18:00") == 1
    printed = capsys.readouterr()
    assert "last error:" in printed.out
    # The exit status names its reason, on stderr, as the README's exit table says.
    assert "exit 1: 2023-03-01 1d: 1 failed, 0 missed" in printed.err
    assert cli(project, "status", "--now", "2023-03-03T18:00", "--format", "json") == 0
    assert cli(project, "history", "--since", "2023-02-28") == 1
    assert "exit 1: 1 failed since 2023-02-2" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["status", "history"])
def test_without_a_ledger_status_and_history_say_what_creates_it(
    project: Project, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    assert cli(project, command) == 1
    assert "no ledger at" in (err := capsys.readouterr().err) and "`reminder run` creates it" in err


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["history"],
        ["plan"],
        ["check"],
        ["suppressed"],
        ["registrants"],
        ["ledger", "migrate"],
        ["run"],
    ],
)
def test_a_damaged_ledger_is_one_clear_line_from_every_command(
    project: Project, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    (project.root / "state").mkdir(exist_ok=True)
    (project.root / "state" / "ledger.sqlite").write_bytes(bytes(range(256)) * 32)
    assert cli(project, *command) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "state/ledger.sqlite is not a SQLite database (file is not a database)" in err
    assert "Restore it from a backup" in err


def test_an_export_that_is_a_named_pipe_is_refused_without_waiting(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    export = project.root / "registrants.csv"
    export.unlink()
    os.mkfifo(export)  # nobody writes: opening it would wait forever
    assert cli(project, "check") == 1
    assert "registrants.csv: error: is a named pipe (FIFO), not a regular file" in (
        capsys.readouterr().err
    )


def test_run_with_an_invalid_config_exits_1_with_the_problem(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.edit('timezone = "Europe/Paris"', 'timezone = "Paris"')
    assert cli(project, "run") == 1
    assert "unknown timezone 'Paris'" in capsys.readouterr().err


def test_simulate_runs_the_whole_cycle_into_a_folder(
    project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "simulation"
    assert cli(project, "simulate", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "2023-02-22 17:00  2023-03-01  7d    12          on time" in printed
    assert "2023-03-01 10:31  2023-03-01  1d    1           late" in printed
    assert "439 reminders sent (7 late" in printed and "2 superseded, 0 failed" in printed
    assert len(list((out / "outbox" / "new").iterdir())) == 439


def test_simulate_through_the_embedded_smtp_server(
    project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "simulation"
    assert (
        cli(
            project,
            "simulate",
            "--smtp",
            "--from",
            "2023-02-01",
            "--to",
            "2023-03-01",
            "--out",
            str(out),
        )
        == 0
    )
    assert "reminders sent" in capsys.readouterr().out
    assert len(list((out / "received").iterdir())) == 12 + 3 + 15 + 1 + 16


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_status:
        main(["--version"])
    assert exit_status.value.code == 0
    assert capsys.readouterr().out.strip() == f"reminder {__version__}"


def test_control_characters_from_an_export_never_reach_the_terminal_raw(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    mischief = {**person(0), "Nom": "Martin\x1b[31m\x07\u202eevil", "Fonction": "Maire\x9b2J"}
    project.registrants([mischief])
    for fmt in ("table", "json", "csv"):
        assert cli(project, "registrants", "--format", fmt) == 0
        out = capsys.readouterr().out
        assert not any(c in out for c in "\x1b\x07\u202e\x9b"), fmt
        assert "\\u001b" in out and "\\u202e" in out
    assert cli(project, "registrants", "--format", "json") == 0
    [shown] = json.loads(capsys.readouterr().out)["registrants"]
    assert shown["last_name"] == "Martin\x1b[31m\x07\u202eevil"  # JSON keeps the data


def test_a_closed_pipe_ends_quietly(project: Project) -> None:
    project.registrants([person(n) for n in range(3000)])  # more than a pipe holds
    process = subprocess.Popen(
        [sys.executable, "-m", "reminder", "registrants", "--config", str(project.config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()
    process.stdout.close()  # `| head -1`
    status = process.wait(30)
    error = process.stderr.read().decode()
    process.stderr.close()
    assert "Traceback" not in error and "BrokenPipeError" not in error
    assert status == 141


def test_send_test_validates_its_address_and_says_when_nothing_was_sent(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(project, "send-test", "--to", "pas une adresse") == 2
    assert "--to 'pas une adresse' is not an e-mail address" in capsys.readouterr().err
    assert cli(project, "send-test", "--to", "staff@example.org") == 0
    out = capsys.readouterr().out
    assert "written to the outbox, not sent" in out
    assert "sent:" not in out


def test_history_times_are_in_the_cycle_zone_or_utc(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    _ledger_with_a_failure(project)
    cli(project, "history", "--format", "json")
    assert json.loads(capsys.readouterr().out)[0]["updated_at"] == "2023-02-28T17:00:00+01:00"
    cli(project, "history", "--format", "json", "--utc")
    assert json.loads(capsys.readouterr().out)[0]["updated_at"] == "2023-02-28T16:00:00+00:00"


def test_suppress_unsuppress_and_suppressed_manage_the_ledger(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(project, "suppress", "K.Lefebvre@example.org", "--reason", "asked by phone") == 0
    assert "suppressed k***@example.org: never mailed again (asked by phone)" in (
        capsys.readouterr().out
    )
    assert cli(project, "suppress", "k.lefebvre@example.org") == 0
    assert "was already suppressed since" in capsys.readouterr().out
    (project.root / "suppression.txt").write_text("old.address@example.org\n")
    assert cli(project, "suppressed") == 0
    out = capsys.readouterr().out
    assert "k***@example.org" in out and "staff: asked by phone" in out
    assert "o***@example.org" in out and "k.lefebvre@example.org" not in out
    assert cli(project, "suppressed", "--show-addresses", "--format", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ledger"][0]["address"] == "k.lefebvre@example.org"
    assert data["list_file"] == ["old.address@example.org"]
    # check and registrants name who the ledger stops; the served count leaves them out.
    assert cli(project, "check") == 0
    out = capsys.readouterr().out
    assert "21 registrants served, 0 suppressed by the list file, 1 in the ledger" in out
    assert "k***@example.org" in out
    assert cli(project, "registrants") == 0
    assert "suppressed in the ledger (not mailed):" in capsys.readouterr().out
    assert cli(project, "unsuppress", "k.lefebvre@example.org") == 0
    assert "mailed again" in capsys.readouterr().out
    assert cli(project, "unsuppress", "old.address@example.org") == 1
    assert "remove its line there" in capsys.readouterr().err


def test_suppress_refuses_what_is_not_an_address(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli(project, "suppress", "not an address")
    assert caught.value.code == 2
    assert "is not an e-mail address" in capsys.readouterr().err


def test_check_and_registrants_show_the_column_mapping(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(project, "check") == 0
    out = capsys.readouterr().out
    assert "registrants.csv: columns (UTF-8 with BOM text, ';'-separated, header on row 1):" in out
    assert "email          <- 'Courriel' (exactly)" in out
    assert "ignored: none" in out
    assert cli(project, "registrants", "--format", "json") == 0
    columns = json.loads(capsys.readouterr().out)["columns"]
    assert columns["fields"]["sessions"] == "Séances"


def test_check_fails_on_a_sessions_column_it_cannot_read_unless_told_to_serve_all(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """It warned, exited 0, and the service then sent everyone every session."""
    (project.root / "registrants.csv").write_text(
        "Courriel;Nom;Séances;;\n"
        ";;Séance 1;Séance 2;Séance 3\n"
        "anne@example.org;Petit;X;;X\n"
        "bob@example.org;Durand;;X;\n",
        encoding="utf-8",
    )
    assert cli(project, "check") == 1
    err = capsys.readouterr().err
    assert "registrants.csv: row 1: error: the session column 'Séances' holds no session" in err
    assert "nobody is served from this export until its sessions read right" in err
    project.edit('unknown_sessions = "skip"', 'unknown_sessions = "all"')
    assert cli(project, "check") == 0
    shown = capsys.readouterr()
    assert "EVERYONE ATTENDS EVERY SESSION" in shown.err
    assert "2 registrants served" in shown.out


def test_check_and_registrants_show_which_column_is_which_session(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    (project.root / "registrants.csv").write_text(
        "Courriel;Nom;Séance du 01/03/2023;Séance du 05/04/2023\n"
        "anne@example.org;Petit;X;\n"
        "bob@example.org;Durand;;X\n",
        encoding="utf-8",
    )
    assert cli(project, "check") == 0
    out = capsys.readouterr().out
    assert "<- 2 columns, one per option (by the date each label names):" in out
    assert "'Séance du 01/03/2023' -> 2023-03-01" in out
    assert "note: read as ticked: 'X'" in out
    assert cli(project, "registrants", "--format", "json") == 0
    columns = json.loads(capsys.readouterr().out)["columns"]
    assert columns["options"] == {
        "Séance du 01/03/2023": "2023-03-01",
        "Séance du 05/04/2023": "2023-04-05",
    }


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_plan_and_check_work_before_the_form_has_any_answer(
    project: Project, capsys: pytest.CaptureFixture[str], state: str
) -> None:
    export = project.root / "registrants.csv"
    if state == "missing":
        export.unlink()
    else:
        export.write_bytes(b"")
    assert cli(project, "check") == 0
    shown = capsys.readouterr()
    assert "warning: no registrants yet" in shown.err  # problems go to stderr
    assert "0 registrants served" in shown.out
    assert cli(project, "plan", "--now", "2023-01-15T09:00") == 0
    assert "mercredi 1er mars 2023" in capsys.readouterr().out


def test_status_lists_the_ledgers_suppressions(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    _ledger_with_a_failure(project)
    with Ledger(project.root / "state" / "ledger.sqlite") as ledger:
        ledger.suppress(
            "evelyne.dubois@example.org",
            reason="the mailbox does not exist (refused at sending)",
            source="bounce",
            at=datetime(2023, 2, 28, 16, tzinfo=UTC),
            reply="550 5.1.1 No such user",
        )
    # The failure of the day is in status's window: it exits 1 for monitoring scripts.
    assert cli(project, "status", "--now", "2023-02-28T18:00") == 1
    out = capsys.readouterr().out
    assert "suppressed in the ledger: 1" in out
    assert "e***@example.org  2023-02-28 17:00+01:00  bounce: the mailbox does not exist" in out
    assert "(550 5.1.1 No such user)" in out


def test_ledger_migrate_copy_and_status_on_postgresql(
    project: Project,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Ledger(project.root / "state" / "ledger.sqlite", worker="old") as ledger:
        key = DeliveryKey("2023-03-01T17:00+01:00", "reminder", "1d", "alex0@example.org")
        now = datetime(2023, 2, 28, 16, tzinfo=UTC)
        ledger.claim([Claim(key, "<m@irev.fr>", now, now)], now)
        ledger.record([Outcome(key, DeliveryState.SENT, "250 ok", now)], now)
    assert cli(project, "ledger", "migrate") == 0
    assert "schema" in capsys.readouterr().out
    assert cli(project, "ledger", "copy", "--to", postgres_url) == 0
    assert "deliveries 1" in capsys.readouterr().out
    assert cli(project, "ledger", "copy", "--to", postgres_url) == 1
    assert "already holds 1 deliveries" in capsys.readouterr().err
    monkeypatch.setenv("REMINDER_LEDGER__URL", postgres_url)
    cli(project, "status", "--now", "2023-03-02T10:00")
    shown = capsys.readouterr().out
    assert "workers: none running" in shown
    cli(project, "history", "--session", "2023-03-01")
    assert "250 ok" in capsys.readouterr().out  # read from PostgreSQL, as copied


def test_commands_ask_only_for_the_secrets_they_use_and_run_for_all(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    # The README's install order: config.toml is written before the env file exists.
    project.edit("#   public_url = ", "public_url = ")
    project.edit("[smtp]\n", '[smtp]\nhost = "smtp.example.org"\nusername = "cycle"\n')
    project.append('[bounces]\nhost = "imap.example.org"\nuser = "bounces"')
    for command in ("plan", "registrants", "suppressed", "preview --session 2023-03-01"):
        assert cli(project, *command.split()) == 0, command
    capsys.readouterr()
    assert cli(project, "check") == 0
    err = capsys.readouterr().err
    for missing, consequence in (
        ("REMINDER_HTTP__SECRET", "mails cannot carry the one-click unsubscribe link"),
        ("REMINDER_SMTP__PASSWORD", "no mail can be sent"),
        ("REMINDER_BOUNCES__PASSWORD", "bounce reports cannot be read"),
    ):
        [line] = [line for line in err.splitlines() if f"set {missing} " in line]
        assert ": warning: " in line and consequence in line
    assert cli(project, "run") == 1  # the service refuses to start without them
    err = capsys.readouterr().err
    assert "cannot go on" in err and err.count(": error: ") == 3


def test_one_rule_for_a_password_in_the_ledger_url_wherever_it_is_written(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with_password = "postgresql://reminder:hunter2@127.0.0.1/test"
    with pytest.raises(SystemExit) as usage:
        cli(project, "ledger", "copy", "--to", with_password)
    assert usage.value.code == 2
    err = capsys.readouterr().err
    assert "the URL holds a password" in err and "REMINDER_LEDGER__PASSWORD" in err
    assert "hunter2" not in err
    monkeypatch.setenv("REMINDER_LEDGER__URL", with_password)
    assert cli(project, "status") == 1
    err = capsys.readouterr().err
    assert "environment variable REMINDER_LEDGER__URL" in err and "holds a password" in err
    assert "hunter2" not in err


def test_status_counts_no_miss_for_a_registrant_suppressed_in_the_ledger(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    # Everyone of 1 March got every reminder but one person who unsubscribed first:
    # nobody was missed, and a monitoring script must not be told otherwise.
    snapshot = project.snapshot()
    session = next(s for s in snapshot.sessions if s.id == "2023-03-01")
    people = [r.key for r in snapshot.roster.attending(session)]
    now = datetime(2023, 2, 20, 9, tzinfo=UTC)
    with Ledger(project.root / "state" / "ledger.sqlite") as ledger:
        ledger.suppress(people[0], reason="asked by phone", source="staff", at=now)
        for lead in ("7d", "1d", "1h"):
            keys = [DeliveryKey(session.appointment, "reminder", lead, who) for who in people[1:]]
            ledger.claim(
                [Claim(k, f"<{lead}.{i}@irev.fr>", now, now) for i, k in enumerate(keys)], now
            )
            ledger.record([Outcome(k, DeliveryState.SENT, "250 ok", now) for k in keys], now)
    assert cli(project, "status", "--now", "2023-03-01T20:00", "--format", "json") == 0
    data = json.loads(capsys.readouterr().out)
    march = [r for r in data["reminders"] if r["session"] == "2023-03-01"]
    assert [(r["registrants"], r["sent"], r["missed"]) for r in march] == [(18, 18, 0)] * 3


def test_send_test_takes_an_address_a_registrant_could_have_and_no_other(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    # A non-ASCII local part cannot be sent without SMTPUTF8, which exports never get
    # either: a usage error, not a UnicodeEncodeError traceback.
    assert cli(project, "send-test", "--to", "jéan@example.org") == 2
    assert "--to 'jéan@example.org' is not an e-mail address" in capsys.readouterr().err
    # An international domain is written as the ASCII form the registrants' are.
    assert cli(project, "send-test", "--to", "jean@exämple.org") == 0
    [mail] = (project.root / "state" / "outbox" / "new").iterdir()
    assert "<jean@xn--exmple-cua.org>" in mail.read_text()


def test_addresses_quoted_in_server_replies_are_masked_too(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime(2023, 2, 28, 16, tzinfo=UTC)
    reply = "550 5.1.1 <sophie.martin@example.fr>: Recipient address rejected: User unknown"
    key = DeliveryKey("2023-03-01T17:00+01:00", "reminder", "1d", "sophie.martin@example.fr")
    with Ledger(project.root / "state" / "ledger.sqlite") as ledger:
        ledger.claim([Claim(key, "<1@irev.fr>", now, now)], now)
        ledger.record([Outcome(key, DeliveryState.FAILED, reply, now)], now)
        ledger.suppress(key.recipient, reason="bounce", source="bounce", at=now, reply=reply)
    for command in (
        ("history", "--format", "json"),
        ("history",),
        ("status", "--now", "2023-02-28T18:00", "--format", "json"),
        ("status", "--now", "2023-02-28T18:00"),
        ("suppressed",),
        ("suppressed", "--format", "json"),
    ):
        cli(project, *command)
        out = capsys.readouterr().out
        assert "sophie.martin@" not in out, command
        assert "s***@example.fr" in out, command
    cli(project, "suppressed", "--show-addresses")
    assert "<sophie.martin@example.fr>: Recipient" in capsys.readouterr().out


def test_suppressing_an_international_domain_stops_that_registrant(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.registrants([{**person(0), "Courriel": "jean@exämple.org"}])
    assert cli(project, "suppress", "Jean@Exämple.org", "--reason", "asked by phone") == 0
    capsys.readouterr()
    assert cli(project, "registrants", "--format", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["address"] for s in data["suppressed_in_ledger"]] == ["j***@xn--exmple-cua.org"]
