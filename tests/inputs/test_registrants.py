"""The registration export: real-world encodings and layouts, and every bad-row kind."""

import random
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from reminder.core.errors import RegistrantsError
from reminder.core.model import Roster
from reminder.inputs.config import load_config
from reminder.inputs.registrants import load_roster, masked
from reminder.inputs.schedule import load_sessions
from tests.support.project import DATA, Project, person
from tests.support.sheets import write_xlsx


def load(project: Project, fixture: str | None = None) -> Roster:
    if fixture:
        shutil.copy(DATA / fixture, project.root / "registrants.csv")
    config = load_config(project.config)
    sessions, _ = load_sessions(config)
    return load_roster(config, sessions)


def by_email(roster: Roster) -> dict[str, object]:
    return {r.email: r for r in roster.registrants}


def test_excel_french_export_in_windows_1252(project: Project) -> None:
    roster = load(project, "excel-fr.csv")
    assert roster.problems == ()
    people = {r.last_name: r for r in roster.registrants}
    assert people["Dubois"].first_name == "Évelyne"
    assert people["Dubois"].organisation == "Commune de Hénin-Beaumont"
    assert people["Dubois"].sessions is None  # "toutes"
    assert people["Noyé"].email == "G.Noye@example.fr"  # domain lower-cased, local part kept
    assert people["Noyé"].sessions == {"2023-03-01", "2023-04-05"}
    assert people["Lefèvre"].sessions is None  # empty cell: every session
    assert people["Cœur"].sessions == {"2023-03-01"}  # "1er mars 2023"


def test_utf8_with_bom_and_personal_join_link(project: Project) -> None:
    roster = load(project, "utf8-bom.csv")
    assert roster.problems == ()
    awa = roster.find("AWA.MBAYE@example.org")
    assert awa is not None and awa.join_url == "https://zoom.us/w/123?tk=awa"
    assert awa.organisation == "Commune d'Avion"
    eric = roster.find("eric.durand@example.org")
    assert eric is not None and eric.first_name == "Éric" and eric.sessions == {"2023-06-07"}


def test_online_form_export_with_timestamps_and_labelled_choices(project: Project) -> None:
    roster = load(project, "online-form.csv")
    assert roster.problems == ()
    marie = roster.find("marie.leroy@example.org")
    assert marie is not None and marie.sessions == {"2023-03-01", "2023-04-05"}
    assert marie.registered_at == datetime(2023, 2, 3, 9, 12, 44, tzinfo=ZoneInfo("Europe/Paris"))
    paul = roster.find("paul.henry@example.fr")
    assert paul is not None and paul.sessions is None  # "Toutes les séances"
    ines = roster.find("ines.roux@example.org")
    assert ines is not None and ines.sessions == {"2023-06-07"}  # year from the cycle


def test_who_attends_which_session(project: Project) -> None:
    roster = load(project, "excel-fr.csv")
    sessions, _ = load_sessions(load_config(project.config))
    march, april, may = sessions[:3]
    assert len(roster.attending(march)) == 4
    assert len(roster.attending(april)) == 3
    assert {r.last_name for r in roster.attending(may)} == {"Dubois", "Lefèvre"}


@pytest.mark.parametrize(
    ("fixture", "message", "row", "column"),
    [
        ("bad-missing-address.csv", "no e-mail address; skipped", 2, "Courriel"),
        (
            "bad-invalid-address.csv",
            "'anne.petit@@example.org' is not a valid e-mail address",
            2,
            "Courriel",
        ),
        (
            "bad-invalid-address.csv",
            "'lea.roy@example' is not a valid e-mail address",
            3,
            "Courriel",
        ),
        (
            "bad-unknown-session.csv",
            "05/04/2032 is not a session of the cycle (sessions: 01/03/2023",
            2,
            "Séances",
        ),
        ("bad-broken-row.csv", "has 8 cells where the header has 6", 2, None),
    ],
)
def test_each_bad_row_kind_is_reported_and_the_good_rows_survive(
    project: Project, fixture: str, message: str, row: int, column: str | None
) -> None:
    roster = load(project, fixture)
    matching = [p for p in roster.problems if message in p.message]
    assert matching, [str(p) for p in roster.problems]
    problem = matching[0]
    assert (problem.row, problem.key, problem.severity) == (
        row,
        column,
        "warning",
    )  # skipped, the others served
    assert str(problem).startswith(f"{project.root / 'registrants.csv'}: row {row}")
    assert roster.find("luc.grand@example.org") is not None


def test_duplicates_are_merged_with_a_warning_naming_both_rows(project: Project) -> None:
    roster = load(project, "bad-duplicate.csv")
    assert len(roster.registrants) == 2
    anne = roster.find("anne.petit@example.org")
    assert anne is not None and anne.sessions == {"2023-03-01", "2023-04-05"}
    [warning] = roster.problems
    assert warning.severity == "warning"
    assert "row 4 repeats the address of row 2 (a***@example.org)" in warning.message


@pytest.mark.parametrize(
    "cell", ["toutes sauf le 05/04/2023", "Tout, excepté mercredi 5 avril", "all except 2023-04-05"]
)
def test_a_cell_that_excepts_a_session_is_reported_never_read_as_that_session(
    project: Project, cell: str
) -> None:
    """The date in "toutes sauf le 05/04" is the one session they will miss: read as
    their only session, they would be mailed for it and for none of the others."""
    project.registrants([person(1, cell), person(2, "01/03/2023")])
    roster = load(project)
    assert roster.find("alex1@example.org") is None
    [problem] = roster.problems
    assert (problem.row, problem.key) == (2, "Séances")
    assert "excepts" in problem.message and "list the sessions they attend" in problem.message
    assert roster.find("alex2@example.org") is not None


def test_an_export_without_an_email_column_is_an_error(project: Project) -> None:
    with pytest.raises(RegistrantsError, match="no e-mail column: the header has Nom, Prénom, Tél"):
        load(project, "bad-no-email-column.csv")


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_no_export_yet_is_a_warning_and_serves_nobody(project: Project, state: str) -> None:
    export = project.root / "registrants.csv"
    if state == "missing":
        export.unlink()
    else:
        shutil.copy(DATA / "bad-empty.csv", export)
    roster = load(project)
    assert roster.registrants == ()
    [warning] = roster.problems
    assert warning.severity == "warning"
    assert "no registrants yet" in warning.message and "paths.registrants" in warning.message


def test_the_suppression_list_removes_people(project: Project) -> None:
    (project.root / "suppression.txt").write_text(
        "# asked to stop on 2023-03-02\nEvelyne.Dubois@Example.org\n\n"
        "  k.lefebvre@example.org # by phone\n"
    )
    roster = load(project)
    assert roster.find("evelyne.dubois@example.org") is None
    assert roster.find("k.lefebvre@example.org") is None
    assert roster.suppressed == ("evelyne.dubois@example.org", "k.lefebvre@example.org")


def test_a_missing_suppression_list_is_an_error(project: Project) -> None:
    (project.root / "suppression.txt").unlink()
    with pytest.raises(RegistrantsError, match="people who asked to stop would be"):
        load(project)


def test_the_sample_export_is_clean(project: Project) -> None:
    roster = load(project)
    assert roster.problems == ()
    assert len(roster.registrants) == 22
    assert all(r.email.endswith(("@example.org", "@example.fr")) for r in roster.registrants)


def test_addresses_are_masked_in_summaries() -> None:
    assert masked("m.petit@irev.fr") == "m***@irev.fr"
    assert masked("x@example.org") == "x***@example.org"


def test_columns_can_be_renamed_in_the_config(project: Project, tmp_path: Path) -> None:
    (project.root / "registrants.csv").write_text(
        "Mél\tNom\tSéances\nanne@example.org\tPetit\ttoutes\n"
    )
    project.edit('email = [\n    "Courriel"', 'email = [\n    "Mél", "Courriel"')
    roster = load(project)
    assert [r.email for r in roster.registrants] == ["anne@example.org"]


def test_the_loader_builds_registrants_field_by_field_in_order() -> None:
    """The loader passes a registrant's fields by position: their order is pinned here."""
    from dataclasses import fields

    from reminder.core.model import Registrant

    assert [f.name for f in fields(Registrant) if f.init] == [
        "email",
        "first_name",
        "last_name",
        "role",
        "organisation",
        "join_url",
        "sessions",
        "language",
        "registered_at",
        "row",
    ]


def test_attendance_keeps_the_export_order_across_groups(project: Project) -> None:
    """Who attends a session is the union of the groups naming it, in the export's order."""
    from reminder.core.model import Registrant

    sessions, _ = load_sessions(load_config(project.config))
    march, april, may = sessions[:3]
    named = [None, frozenset({march.id}), frozenset({march.id, april.id}), frozenset({april.id})]
    people = tuple(
        Registrant(f"p{n}@example.org", sessions=named[n * 7 % 4], row=n) for n in range(40)
    )
    roster = Roster("export.csv", people)
    for session in (march, april, may):
        expected = tuple(r for r in people if r.attends(session))
        assert roster.count(session) == len(expected)
        assert roster.attending(session) == expected
        assert roster.count(session) == len(expected)  # once listed, from the list
    assert Roster("empty.csv", ()).attending(march) == ()
    only_named = Roster("named.csv", people[1:2])
    assert only_named.attending(may) == () and only_named.count(may) == 0


def test_cells_are_tidied_to_one_line_with_single_spaces(project: Project) -> None:
    (project.root / "registrants.csv").write_text(
        "Courriel;Prénom;Nom;Fonction;Séances\n"
        "a@example.org;  Jean\u00a0 Paul\t;Le\u2028Roy;Maire;toutes\n"
        'b@example.org;"Anne\nMarie";Roy ;Maire;toutes\n'
        "c@example.org;Léa;Roy;Maire  adjointe;toutes\n",
        encoding="utf-8",
    )
    people = by_email(load(project))
    assert [(p.first_name, p.last_name, p.role) for p in people.values()] == [  # type: ignore[attr-defined]
        ("Jean Paul", "Le Roy", "Maire"),
        ("Anne Marie", "Roy", "Maire"),
        ("Léa", "Roy", "Maire adjointe"),
    ]


def tricky_rows(count: int, seed: int) -> list[list[str]]:
    """Rows of every kind a block may hold, plain ones mostly, the others sprinkled."""
    rng = random.Random(seed)  # noqa: S311 - reproducible shapes of rows, not secrets
    rows = [
        ["Horodateur", "Courriel", "Prénom", "Nom", "Fonction", "Séances", "Langue", "Lien Zoom"]
    ]
    emails: list[str] = []
    for n in range(count):
        # In the last block, a second domain: a block with a domain not validated yet.
        email = f"elu.{n}@ville-{rng.randrange(1 + n // (16 * 1_024))}.fr"
        first, last, role, sessions = rng.choice(["Léa", "Jean"]), f"Nom{n % 97}", "Maire", ""
        stamp, language, link = f"2023-02-{1 + n % 28:02d} 10:00:00", "", ""
        # One kind of odd row in each block of 1,024 rows, after a first block without
        # any (which validates the first domain): each kind alone in a block.
        kind = n // 1_024 - 1
        match kind if rng.randrange(25) == 0 or (kind == 1 and rng.randrange(3) == 0) else -1:
            case 0:
                local, _, domain = email.partition("@")
                email = f"{local.upper()}@{domain}"  # plain, on a known domain: folded
            case 1 if n > 10:
                email = rng.choice(emails)  # a repeat, of this block or an earlier one
            case 2:
                email = "pas une adresse"
            case 3:
                sessions = "31/12/2023"
            case 4:
                stamp = "hier soir"
            case 5:
                first = "  Jean\u00a0 Paul "
            case 6:
                last = "Le\nRoy"
            case 7:
                link = rng.choice(["https://zoom.us/w/1", "pas un lien"])
            case 8:
                language = rng.choice(["FR", "en-GB", " de "])
            case 9:
                sessions = rng.choice(["01/03/2023; 05/04/2023", "toutes", "1er mars"])
            case 10:
                rows.append([])  # instead of this row: the blocks stay aligned
                continue
            case 11:
                stamp = ""
            case 12:
                email = f" <{email}> "
            case 13:
                role = "Maire;adjoint"  # unquoted: one cell too many
            case 14:
                email = email.upper()
        rows.append([stamp, email, first, last, role, sessions, language, link])
        emails.append(email)
    return rows


@pytest.mark.parametrize(("kind", "seed"), [("csv", 0), ("csv", 1), ("csv", 2), ("xlsx", 0)])
def test_blocks_read_as_the_rows_one_by_one_read(
    project: Project, monkeypatch: pytest.MonkeyPatch, seed: int, kind: str
) -> None:
    """The column-wise reading of plain blocks gives the registrants, rows and problems
    that reading every row on its own gives."""
    from reminder.inputs import registrants

    rows = tricky_rows(17 * 1_024, seed)
    if kind == "csv":
        lines = [
            ";".join(cells)
            if "\n" not in ";".join(cells)
            else ";".join(f'"{c}"' if "\n" in c else c for c in cells)
            for cells in rows
        ]
        (project.root / "registrants.csv").write_text("\r\n".join(lines) + "\r\n", "cp1252")
    else:
        write_xlsx(project.root / "registrants.xlsx", {"Réponses": rows})
        edited = project.config.read_text(encoding="utf-8")
        project.config.write_text(
            edited.replace('registrants = "registrants.csv"', 'registrants = "registrants.xlsx"'),
            encoding="utf-8",
        )
    plain_block = registrants._Reader._plain_block
    plain = []

    def counted(*arguments: Any) -> Any:
        made = plain_block(*arguments)
        plain.append(made is not None)
        return made

    monkeypatch.setattr(registrants._Reader, "_plain_block", counted)
    by_blocks = load(project)
    assert 2 <= sum(plain) < len(plain)  # both ways were taken
    monkeypatch.setattr(registrants._Reader, "_plain_block", lambda *_: None)
    by_rows = load(project)
    assert by_blocks.registrants == by_rows.registrants
    assert [r.key for r in by_blocks.registrants] == [r.key for r in by_rows.registrants]
    assert [r.row for r in by_blocks.registrants] == [r.row for r in by_rows.registrants]
    assert by_blocks.problems == by_rows.problems
    assert len(by_blocks.registrants) > 15_000 and len(by_blocks.problems) > 100


def test_the_index_by_key_is_made_only_when_asked(project: Project) -> None:
    roster = load(project)
    assert "by_key" not in roster.__dict__  # a million registrants: 40 MB not held idle
    first = roster.registrants[0]
    assert roster.find(first.email.upper()) == first
    assert roster.by_key[first.key] is first


def test_a_column_that_shares_no_kept_text_is_looked_up_again_later(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reminder.inputs import cells as cells_module

    monkeypatch.setattr(cells_module, "KEPT_TEXTS", 3)
    config = load_config(project.config)
    sessions, _ = load_sessions(config)
    cells = cells_module.Cells(sessions, config.zone)
    maire = "".join(["Mai", "re"])  # a string of its own, equal to the kept one
    assert cells.kept(("Maire", "Adjoint"), "role") == ["Maire", "Adjoint"]
    kept = cells.texts["Maire"]
    # Full: a block of unique names matches nothing kept, so the next blocks are not
    # looked up; their texts are the same, only not shared.
    assert cells.kept(("Nom1", "Nom2"), "role") == ["Nom1", "Nom2"]
    for _ in range(15):
        assert list(cells.kept((maire, "Nom3"), "role")) == ["Maire", "Nom3"]
    # Then it looks again, and shares again.
    again = cells.kept((maire, "Nom4"), "role")
    assert again == ["Maire", "Nom4"] and again[0] is kept
    assert cells.kept((" Maire  ", "Nom5"), "role") == ["Maire", "Nom5"]  # tidied as ever
