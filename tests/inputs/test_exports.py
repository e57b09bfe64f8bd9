"""Exports shaped like those of real form tools, and spreadsheets: the right people on the
right sessions, and a mapping report staff can read."""

from __future__ import annotations

import io
import re
import shutil
import warnings
import zipfile
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from reminder.core.errors import RegistrantsError
from reminder.core.model import Roster
from reminder.inputs.config import Columns, load_config
from reminder.inputs.registrants import load_roster
from reminder.inputs.schedule import load_sessions
from tests.support.project import DATA, Project
from tests.support.sheets import write_ods, write_xlsx

PARIS = ZoneInfo("Europe/Paris")
EXPORTS = DATA / "exports"
# Spreadsheet cells hold wall-clock times without a zone: the cycle's zone applies.
CELL_3_FEB = datetime(2023, 2, 3, 9, 12, 44)  # noqa: DTZ001
CELL_4_FEB = datetime(2023, 2, 4, 10, 0)  # noqa: DTZ001


def use(project: Project, name: str, *settings: str) -> Path:
    """Point the sample config at this export (copied in), with extra [registrants] keys."""
    target = project.root / name
    if (EXPORTS / name).exists():
        shutil.copy(EXPORTS / name, target)
    project.edit('registrants = "registrants.csv"', f'registrants = "{name}"')
    for setting in settings:
        project.edit('delimiter = "auto"', f'delimiter = "auto"\n{setting}')
    return target


def load(project: Project) -> Roster:
    config = load_config(project.config)
    sessions, _ = load_sessions(config)
    return load_roster(config, sessions)


def attending(roster: Roster) -> dict[str, set[str] | str]:
    return {r.email: "all" if r.sessions is None else set(r.sessions) for r in roster.registrants}


def test_google_forms_questions_as_headers_and_english_timestamps(project: Project) -> None:
    use(project, "google-forms.csv")
    roster = load(project)
    assert roster.problems == ()
    assert attending(roster) == {
        "marie.leroy@example.org": {"2023-03-01", "2023-04-05"},
        "paul.henry@example.org": {"2023-05-03"},
        "ines.garnier@example.org": {"2023-03-01", "2023-05-03", "2023-06-07"},
    }
    marie = roster.find("marie.leroy@example.org")
    assert marie is not None
    assert (marie.role, marie.organisation) == ("Maire", "Commune de Liévin")
    assert marie.registered_at == datetime(
        2023, 2, 3, 9, 12, 44, tzinfo=timezone(timedelta(hours=1))
    )
    paul = roster.find("paul.henry@example.org")
    assert paul is not None and paul.registered_at == datetime(2023, 2, 4, 17, 30, tzinfo=UTC)
    assert roster.mapping is not None
    assert roster.mapping.column("sessions") == "À quelle(s) séance(s) souhaitez-vous participer ?"
    assert roster.mapping.column("role") == "Fonction / mandat"
    assert roster.mapping.column("organisation") == "Collectivité ou structure"
    assert roster.mapping.ignored == ()


def test_microsoft_forms_xlsx_skips_its_anonymous_columns(project: Project) -> None:
    use(project, "microsoft-forms.xlsx")
    roster = load(project)
    assert roster.problems == ()
    assert attending(roster) == {
        "nadia.roux@example.org": {"2023-03-01", "2023-04-05"},
        "thomas.petit@example.org": {"2023-06-07"},
    }
    nadia = roster.find("nadia.roux@example.org")
    assert nadia is not None and nadia.last_name == "Roux"
    # Typed date cells read as dates: the completion time, in the cycle's zone.
    assert nadia.registered_at == datetime(2023, 2, 3, 9, 12, 44, tzinfo=PARIS)
    assert roster.mapping is not None
    assert roster.mapping.column("email") == "Adresse e-mail"
    assert "'Email' also names email but holds only 'anonymous'" in roster.mapping.notes[0]
    assert set(roster.mapping.ignored) == {
        "ID",
        "Start time",
        "Email",
        "Name",
        "Last modified time",
    }
    assert roster.mapping.sheet == "Form1"


def test_framaforms_title_block_above_the_header_is_found(project: Project) -> None:
    use(project, "framaforms.csv")
    roster = load(project)
    assert roster.problems == ()
    assert roster.mapping is not None and roster.mapping.header_row == 3
    assert attending(roster) == {
        "evelyne.dubois@example.org": {"2023-03-01"},
        "k.lefebvre@example.org": {"2023-04-05", "2023-06-07"},
        "sophie.martin@example.org": "all",
    }
    karim = roster.find("k.lefebvre@example.org")
    assert karim is not None and karim.registered_at == datetime(
        2023, 2, 3, 10, 40, 2, tzinfo=PARIS
    )
    assert karim.row == 5


def test_the_header_row_can_be_named(project: Project) -> None:
    target = use(project, "framaforms.csv", "header_row = 2")
    with pytest.raises(RegistrantsError, match="no e-mail column: the header has"):
        load(project)
    project.edit("header_row = 2", "header_row = 3")
    assert len(load(project).registrants) == 3
    assert target.exists()


def test_helloasso_email_payeur_and_participant_names(project: Project) -> None:
    use(project, "helloasso.csv")
    roster = load(project)
    assert roster.problems == ()
    assert attending(roster) == {
        "jf.noel@example.org": {"2023-03-01"},
        "agnes.bernard@example.org": {"2023-04-05", "2023-06-07"},
    }
    agnes = roster.find("agnes.bernard@example.org")
    assert agnes is not None and (agnes.first_name, agnes.last_name) == ("Agnès", "Bernard")
    assert agnes.registered_at == datetime(2023, 2, 4, 11, 20, tzinfo=PARIS)
    assert roster.mapping is not None and roster.mapping.column("email") == "Email payeur"


def test_eventbrite_email_and_a_custom_question(project: Project) -> None:
    use(project, "eventbrite.csv")
    roster = load(project)
    assert roster.problems == ()
    assert attending(roster) == {
        "claire.fontaine@example.org": {"2023-03-01", "2023-04-05"},
        "hugo.marchand@example.org": "all",
    }
    assert roster.mapping is not None and roster.mapping.column("sessions") == "Quelles séances ?"


def test_zoom_report_without_sessions_is_refused_until_the_config_says_what_it_means(
    project: Project,
) -> None:
    use(project, "zoom-registration.csv")
    with pytest.raises(RegistrantsError, match="no session column") as refused:
        load(project)
    message = str(refused.value)
    assert "zoom-registration.csv: row 7: error" in message
    assert "nobody is served from this export until its sessions read right" in message
    assert "registrants.all_sessions = true" in message


def test_unknown_sessions_all_serves_everyone_every_session_and_says_so(project: Project) -> None:
    use(project, "zoom-registration.csv")
    project.edit('unknown_sessions = "skip"', 'unknown_sessions = "all"')
    roster = load(project)
    [warning] = roster.problems
    assert warning.severity == "warning"
    assert warning.message.startswith("no session column (looked for Séances")
    assert 'EVERYONE ATTENDS EVERY SESSION, as registrants.unknown_sessions = "all"' in (
        warning.message
    )
    assert attending(roster) == {
        "lucie.moreau@example.org": "all",
        "omar.benali@example.org": "all",
    }
    lucie = roster.find("lucie.moreau@example.org")
    assert lucie is not None and lucie.join_url == "https://zoom.us/w/81234567890?tk=lucie"
    assert lucie.registered_at == datetime(2023, 2, 3, 9, 12, 44, tzinfo=PARIS)
    assert (lucie.role, lucie.organisation) == ("Maire", "Commune de Béthune")
    assert roster.mapping is not None and roster.mapping.header_row == 7
    assert roster.mapping.ignored == ("Approval Status",)


def test_all_sessions_true_says_it_is_intended(project: Project) -> None:
    use(project, "zoom-registration.csv", "all_sessions = true")
    assert load(project).problems == ()


def test_ods_reads_typed_dates_and_a_named_sheet(project: Project) -> None:
    target = use(project, "inscriptions.ods", 'sheet = "Inscriptions"')
    write_ods(
        target,
        {
            "Notes": [["rien ici"]],
            "Inscriptions": [
                ["Horodateur", "Courriel", "Nom", "Séance"],
                [CELL_3_FEB, "anne@example.org", "Petit", date(2023, 4, 5)],
                [CELL_4_FEB, "bob@example.org", "Durand", date(2023, 3, 1)],
            ],
        },
    )
    roster = load(project)
    assert roster.problems == ()
    assert attending(roster) == {
        "anne@example.org": {"2023-04-05"},
        "bob@example.org": {"2023-03-01"},
    }
    anne = roster.find("anne@example.org")
    assert anne is not None and anne.registered_at == datetime(2023, 2, 3, 9, 12, 44, tzinfo=PARIS)
    assert roster.mapping is not None and roster.mapping.sheet == "Inscriptions"


def test_xlsx_first_sheet_by_default_and_an_unknown_sheet_is_named(project: Project) -> None:
    target = use(project, "inscriptions.xlsx")
    write_xlsx(
        target,
        {
            "Réponses": [["Courriel", "Séances"], ["anne@example.org", date(2023, 3, 1)]],
            "Autre": [["Courriel"], ["zed@example.org"]],
        },
    )
    assert attending(load(project)) == {"anne@example.org": {"2023-03-01"}}
    project.edit('delimiter = "auto"', 'delimiter = "auto"\nsheet = "Feuil1"')
    with pytest.raises(RegistrantsError, match=r"no sheet named 'Feuil1'.*'Réponses', 'Autre'"):
        load(project)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "old Excel workbook \\(.xls\\)"),
        (b"<html><body><table><tr><td>Courriel</td></tr></table>", "web page \\(HTML\\)"),
        (b"%PDF-1.7\n" + bytes(100), "PDF document"),
        (b"PK\x03\x04" + bytes(100), "damaged or truncated ZIP"),
        (b"Courriel\n\x00\x01\x02binary", "binary file"),
    ],
)
def test_an_unreadable_file_says_what_it_looks_like_and_what_to_do(
    project: Project, content: bytes, expected: str
) -> None:
    use(project, "export.xls").write_bytes(content)
    with pytest.raises(RegistrantsError, match=expected) as caught:
        load(project)
    assert "export.xls" in str(caught.value)


def test_a_real_xlsx_is_no_longer_refused_as_cp1252(project: Project) -> None:
    """It was: "is not cp1252 text (byte 62): save it as CSV UTF-8"."""
    shutil.copy(EXPORTS / "microsoft-forms.xlsx", project.root / "registrants.csv")
    assert len(load(project).registrants) == 2


def test_the_sample_config_lists_the_default_columns(project: Project) -> None:
    assert load_config(project.config).registrants.columns == Columns()


def test_a_workbook_with_a_damaged_sheet_is_named_not_a_crash(project: Project) -> None:
    source = EXPORTS / "microsoft-forms.xlsx"
    target = use(project, "damaged.xlsx")
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as damaged:
        for item in original.infolist():
            data = original.read(item)
            if item.filename.startswith("xl/worksheets/"):
                data = data[: len(data) // 2]  # cut in the middle, as an interrupted download
            damaged.writestr(item, data)
    with pytest.raises(RegistrantsError, match="looks like an Excel workbook but cannot be read"):
        load(project)


def test_an_xlsx_without_styles_loads_without_the_readers_raw_warning(project: Project) -> None:
    """openpyxl printed "Workbook contains no default style" on stderr for such files
    (here, with warnings as errors, the load failed)."""
    target = use(project, "sans-styles.xlsx")
    write_xlsx(target, {"Réponses": [["Courriel", "Séances"], ["anne@example.org", "toutes"]]})
    original = target.read_bytes()
    with zipfile.ZipFile(io.BytesIO(original)) as source, zipfile.ZipFile(target, "w") as bare:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "xl/styles.xml":
                continue
            if item.filename in ("[Content_Types].xml", "xl/_rels/workbook.xml.rels"):
                data = re.sub(rb"<[^<>]*styles[^<>]*/>", b"", data)
            bare.writestr(item, data)
    roster = load(project)
    assert roster.problems == ()
    assert attending(roster) == {"anne@example.org": "all"}


def test_a_readers_warning_becomes_one_line_naming_the_file(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import python_calamine

    target = use(project, "inscriptions.xlsx")
    write_xlsx(target, {"Réponses": [["Courriel", "Séances"], ["anne@example.org", "toutes"]]})
    opened = python_calamine.CalamineWorkbook.from_filelike

    def warning_twice(source: Any) -> Any:
        for _ in range(2):
            warnings.warn("Workbook contains no default style", UserWarning, stacklevel=1)
        return opened(source)

    monkeypatch.setattr(python_calamine.CalamineWorkbook, "from_filelike", warning_twice)
    [problem] = load(project).problems
    assert problem.source == str(target) and problem.severity == "warning"
    assert problem.message.startswith(
        "the spreadsheet reader warned: Workbook contains no default style;"
    )


def test_an_xlsx_gives_cached_formula_values_and_columns_left_of_its_first_cell(
    project: Project,
) -> None:
    """A sheet that starts in column B below a title, with formulas Excel has computed."""
    target = use(project, "calcul.xlsx")
    write_xlsx(target, {"Feuil1": [["x"], []]})
    sheet = (
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        '<dimension ref="B1:B1"/><sheetData>'
        '<row r="1"><c r="B1" t="inlineStr"><is><t>Liste des inscrits</t></is></c></row>'
        '<row r="3"><c r="B3" t="inlineStr"><is><t>Courriel</t></is></c>'
        '<c r="C3" t="inlineStr"><is><t>Séances</t></is></c></row>'
        '<row r="4"><c r="B4" t="str"><f>LOWER("ANNE@EXAMPLE.ORG")</f><v>anne@example.org</v></c>'
        '<c r="C4" t="str"><f>"01/03/2023"</f><v>01/03/2023</v></c></row>'
        "</sheetData></worksheet>"
    )
    original = target.read_bytes()
    with zipfile.ZipFile(io.BytesIO(original)) as source, zipfile.ZipFile(target, "w") as edited:
        for item in source.infolist():
            data = source.read(item)
            edited.writestr(item, sheet if item.filename == "xl/worksheets/sheet1.xml" else data)
    roster = load(project)
    assert roster.problems == ()
    assert attending(roster) == {"anne@example.org": {"2023-03-01"}}
    assert roster.mapping is not None and roster.mapping.header_row == 3
    [anne] = roster.registrants
    assert anne.row == 4


def test_utf16_text_is_recognised_by_its_bytes_with_or_without_its_mark(
    project: Project,
) -> None:
    text = "Courriel\tSéances\r\nanne@example.org\t01/03/2023\r\n"
    target = use(project, "export.xls")
    for raw in (
        text.encode("utf-16"),
        b"\xfe\xff" + text.encode("utf-16-be"),
        text.encode("utf-16-le"),
        text.encode("utf-16-be"),
    ):
        target.write_bytes(raw)
        roster = load(project)
        assert roster.problems == ()
        assert attending(roster) == {"anne@example.org": {"2023-03-01"}}
        assert roster.mapping is not None and roster.mapping.header_row == 1
    project.edit('encoding = "auto"', 'encoding = "utf-16"')
    target.write_bytes(text.encode("utf-16"))
    assert attending(load(project)) == {"anne@example.org": {"2023-03-01"}}


def test_empty_session_cells_are_every_session_and_the_report_says_which_rows(
    project: Project,
) -> None:
    target = use(project, "liste.csv")
    rows = ["Courriel;Séances", "a@example.org;01/03/2023", "b@example.org;", "c@example.org; "]
    target.write_text("\n".join(rows) + "\n", encoding="utf-8")
    roster = load(project)
    assert attending(roster)["b@example.org"] == "all"
    assert roster.mapping is not None
    assert "2 row(s) leave 'Séances' empty (rows 3, 4): they attend every session" in (
        roster.mapping.notes
    )


def test_unknown_sessions_all_serves_a_row_that_cannot_be_read_and_says_so(
    project: Project,
) -> None:
    target = use(project, "liste.csv")
    rows = ["Courriel;Séances", "a@example.org;01/03/2023", "b@example.org;15/03/2023"]
    target.write_text("\n".join(rows) + "\n", encoding="utf-8")
    [skipped] = load(project).problems
    assert skipped.message.startswith("15/03/2023 is not a session of the cycle")
    assert skipped.message.endswith("; skipped") and skipped.row == 3
    project.edit('unknown_sessions = "skip"', 'unknown_sessions = "all"')
    roster = load(project)
    assert attending(roster) == {"a@example.org": {"2023-03-01"}, "b@example.org": "all"}
    [served] = roster.problems
    assert served.message.endswith(
        'served every session, as registrants.unknown_sessions = "all" says'
    )


def test_a_sessions_column_of_timestamps_loses_to_the_question(project: Project) -> None:
    """LimeSurvey's "Date de lancement" begins with "Date", a name of the sessions column."""
    target = use(project, "limesurvey.csv")
    rows = [
        "Date de lancement,Courriel,À quelle séance participerez-vous ?",
        "2023-02-03 09:10:00,a@example.org,Mercredi 1er mars 2023",
    ]
    target.write_text("\n".join(rows) + "\n", encoding="utf-8")
    roster = load(project)
    assert roster.problems == ()
    assert attending(roster) == {"a@example.org": {"2023-03-01"}}
    assert roster.mapping is not None
    assert roster.mapping.column("sessions") == "À quelle séance participerez-vous ?"


def test_a_column_empty_in_every_row_never_wins_over_one_with_data(project: Project) -> None:
    """'Nom' matches exactly, 'Nom participant' only by its first words: the empty exact
    match took the last name from every row."""
    target = use(project, "liste.csv")
    rows = ["Courriel;Nom;Nom participant;Séances", "a@example.org;;Petit;toutes"]
    target.write_text("\n".join(rows) + "\n", encoding="utf-8")
    roster = load(project)
    [anne] = roster.registrants
    assert anne.last_name == "Petit"
    assert roster.mapping is not None
    assert "'Nom' also names last_name but is empty; 'Nom participant' is used" in (
        roster.mapping.notes
    )


def test_a_first_row_without_an_address_is_not_taken_for_option_labels(
    project: Project,
) -> None:
    target = use(project, "grille.csv")
    rows = [
        "Courriel;Séances [Mercredi 1er mars 2023];Séances [Mercredi 5 avril 2023]",
        ";Je participe;Je participe",
        "b@example.org;;Je participe",
    ]
    target.write_text("\n".join(rows) + "\n", encoding="utf-8")
    roster = load(project)
    assert attending(roster) == {"b@example.org": {"2023-04-05"}}
    [problem] = roster.problems
    assert problem.row == 2 and problem.message == "no e-mail address; skipped"
    assert roster.mapping is not None and roster.mapping.label_row is None


@pytest.mark.parametrize("write", [write_xlsx, write_ods], ids=["xlsx", "ods"])
def test_a_cell_merged_across_columns_is_read_once_not_in_each(
    project: Project, write: Any, tmp_path: Path
) -> None:
    """A full name merged over Prénom and Nom greeted "Jean Dupont Jean Dupont"."""
    target = use(project, f"inscriptions.{'xlsx' if write is write_xlsx else 'ods'}")
    rows = [
        ["Prénom", "Nom", "Courriel", "Séances"],
        ["Jean Dupont", None, "jean@example.org", "toutes"],
        ["Anne", "Martin", "anne@example.org", "toutes"],
    ]
    write(target, {"Inscriptions": rows}, {"Inscriptions": ["A2:B2"]})
    roster = load(project)
    jean = roster.find("jean@example.org")
    assert jean is not None
    assert (jean.first_name, jean.last_name) == ("Jean Dupont", "")
    assert attending(roster)["jean@example.org"] == attending(roster)["anne@example.org"]
