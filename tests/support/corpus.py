"""Exports shaped as the form tools write them, one per tool and layout, each with the
sessions every (fictional) person in it must get, or the problem that keeps them out.

    .venv/bin/python -m tests.support.corpus FOLDER

writes every export into FOLDER, to try `reminder registrants` on by hand.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.support.sheets import Cell, write_ods, write_xlsx

PARIS = ZoneInfo("Europe/Paris")
MARCH, APRIL, MAY, JUNE = "2023-03-01", "2023-04-05", "2023-05-03", "2023-06-07"
# The options as a form shows them: the sample config's sessions, with their topics.
LABELS = {
    MARCH: "Mercredi 1er mars 2023 – Mixité sociale dans l'habitat",
    APRIL: "Mercredi 5 avril 2023 – Mixité scolaire",
    MAY: "Mercredi 3 mai 2023 – Transitions et quartiers",
    JUNE: "Mercredi 7 juin 2023 – Enjeux éducatifs",
}
SHORT = {MARCH: "01/03/2023", APRIL: "05/04/2023", MAY: "03/05/2023", JUNE: "07/06/2023"}
# An option some forms offer that is no session of the cycle.
VISIT = "Mercredi 15 mars 2023 – Visite de quartier"


@dataclass(frozen=True)
class Person:
    first: str
    last: str
    email: str
    role: str
    organisation: str
    sessions: tuple[str, ...]
    at: datetime  # when they registered, in Paris

    @property
    def display(self) -> str:
        """As Microsoft Forms shows a signed-in respondent."""
        return f"{self.first} {self.last}"


def _at(hour: int, minute: int) -> datetime:
    return datetime(2023, 2, 3, hour, minute, 44, tzinfo=PARIS)


PEOPLE = (
    Person(
        "Évelyne",
        "Dubois",
        "evelyne.dubois@example.org",
        "Maire",
        "Commune de Hénin-Beaumont",
        (MARCH, APRIL),
        _at(9, 12),
    ),
    Person(
        "Karim",
        "Lefebvre",
        "karim.lefebvre@example.org",
        "Adjoint à la politique de la ville",
        "Ville de Roubaix",
        (JUNE,),
        _at(10, 40),
    ),
    Person(
        "Sophie",
        "Martin",
        "sophie.martin@example.org",
        "Conseillère communautaire",
        "Métropole Européenne de Lille",
        (MARCH, MAY, JUNE),
        _at(14, 5),
    ),
    Person(
        "Aïcha",
        "Benali",
        "aicha.benali@example.org",
        "Adjointe au maire",
        "Commune de Lens",
        (APRIL,),
        _at(17, 30),
    ),
)
EVERY = "every session"


@dataclass(frozen=True)
class Skipped:
    """Someone not served, with the row of the problem that says why."""

    row: int
    why: str


Expected = frozenset[str] | str | Skipped  # sessions, EVERY, or skipped


@dataclass(frozen=True)
class Export:
    """One export as a tool writes it, and what reading it must give."""

    name: str
    tool: str
    write: Callable[[Path], None]
    expected: dict[str, Expected]
    settings: tuple[str, ...] = ()  # lines for [registrants]
    columns: dict[str, str] = field(default_factory=dict)  # field -> header it is read from
    registered: dict[str, datetime] = field(default_factory=dict)
    last_names: dict[str, str] = field(default_factory=dict)
    error: str = ""  # the whole export is refused, with this in the message
    notes: tuple[str, ...] = ()  # what the mapping report must note


def chose(people: Sequence[Person] = PEOPLE) -> dict[str, Expected]:
    return {p.email: frozenset(p.sessions) for p in people}


def _text(path: Path, rows: Sequence[Sequence[object]], delimiter: str, encoding: str) -> None:
    out = io.StringIO()
    quoting = csv.QUOTE_ALL if delimiter == "," else csv.QUOTE_MINIMAL
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n", quoting=quoting)
    writer.writerows(rows)
    if encoding == "utf-16-be-bom":  # Python's utf-16 writes the machine's byte order
        path.write_bytes(("\ufeff" + out.getvalue()).encode("utf-16-be"))
    else:
        path.write_bytes(out.getvalue().encode(encoding))


def _stamp(moment: datetime) -> datetime:
    """A spreadsheet's date cell: wall-clock time, no zone."""
    return moment.replace(tzinfo=None)


def google_forms(path: Path) -> None:
    header = [
        "Horodateur",
        "Adresse e-mail",
        "Nom",
        "Prénom",
        "Fonction / mandat",
        "Collectivité ou structure",
        "À quelle(s) séance(s) souhaitez-vous participer ?",
    ]
    rows = [
        [
            f"{p.at:%d/%m/%Y %H:%M:%S}",
            p.email,
            p.last,
            p.first,
            p.role,
            p.organisation,
            ", ".join(LABELS[s] for s in p.sessions),
        ]
        for p in PEOPLE
    ]
    _text(path, [header, *rows], ",", "utf-8")


def google_forms_grid(path: Path) -> None:
    question = "À quelles séances participerez-vous ?"
    header: list[Cell] = ["Horodateur", "Adresse e-mail", "Nom", "Prénom", "Fonction"]
    header += [f"{question} [{label}]" for label in LABELS.values()]
    rows: list[list[Cell]] = [header]
    for p in PEOPLE:
        ticks = ["Je participe" if s in p.sessions else None for s in LABELS]
        rows.append([_stamp(p.at), p.email, p.last, p.first, p.role, *ticks])
    write_xlsx(path, {"Réponses au formulaire 1": rows})


def _microsoft_forms(internal: bool, english: bool) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        if english:
            own = ["ID", "Start time", "Completion time", "Email", "Name", "Last modified time"]
            asked = ["Last name", "First name", "Job title", "Organization", "Sessions"]
        else:
            own = [
                "ID",
                "Heure de début",
                "Heure de fin",
                "Adresse de messagerie",
                "Nom",
                "Heure de la dernière modification",
            ]
            asked = ["Nom2", "Prénom", "Fonction", "Collectivité", "Séances"]
            if not internal:
                asked.insert(2, "Adresse e-mail")
        rows: list[list[Cell]] = [[*own, *asked]]
        for n, p in enumerate(PEOPLE, 1):
            begun = _stamp(p.at - timedelta(minutes=3))
            mine: list[Cell] = [n, begun, _stamp(p.at)]
            mine += [p.email, p.display] if internal else ["anonymous", None]
            answers: list[Cell] = [p.last, p.first, p.role, p.organisation]
            if not internal:
                answers.insert(2, p.email)
            # Microsoft Forms ends each chosen option with ";".
            sessions = "".join(f"{LABELS[s]};" for s in p.sessions)
            rows.append([*mine, None, *answers, sessions])
        write_xlsx(path, {"Form1": rows})

    return write


def _framaforms_rows(mark: Callable[[bool], str]) -> tuple[list[str], list[list[str]]]:
    """Framaforms' columns before the options, and each person's row with their ticks."""
    header = [
        "Numéro de série",
        "SID",
        "Heure de soumission",
        "Brouillon",
        "Adresse IP",
        "UID",
        "Nom d'utilisateur",
        "Nom",
        "Prénom",
        "Courriel",
        "Fonction / mandat",
        "Collectivité ou structure",
    ]
    rows = [
        [
            str(n),
            str(100 + n),
            f"{p.at:%d/%m/%Y - %H:%M}",
            "0",
            f"192.0.2.{10 + n}",
            "0",
            "",
            p.last,
            p.first,
            p.email,
            p.role,
            p.organisation,
            *(mark(s in p.sessions) for s in LABELS),
        ]
        for n, p in enumerate(PEOPLE, 1)
    ]
    return header, rows


def framaforms_unicode(path: Path) -> None:
    """The "delimited text" download: UTF-16 with a BOM, tabs, the question's title over
    its first option column and the options' labels in the row under the header."""
    header, rows = _framaforms_rows(lambda ticked: "X" if ticked else "")
    question = ["À quelles séances participerez-vous ?", "", "", ""]
    title = ["Inscription au cycle élus 2023 — Préparer la nouvelle contractualisation"]
    labels = [""] * len(header) + list(LABELS.values())
    _text(path, [title, [*header, *question], labels, *rows], "\t", "utf-16")


def framaforms_drupal(path: Path) -> None:
    """Drupal's three header rows: sections, the question's title, then the fields with
    the options' labels."""
    header, rows = _framaforms_rows(lambda ticked: "X" if ticked else "")
    width = len(header)
    sections = ["Détails de la soumission", *[""] * 6, "Vos coordonnées", *[""] * 4]
    sections += ["Votre participation", "", "", ""]
    titles = [""] * width + ["À quelles séances participerez-vous ?", "", "", ""]
    _text(path, [sections, titles, [*header, *LABELS.values()], *rows], ",", "utf-8")


def _limesurvey(english: bool) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        if english:
            own = ["Response ID", "Date submitted", "Last page", "Start language", "Seed"]
            own += ["Date started", "Date last action"]
            asked = ["Email address", "Last name", "First name", "Job title", "Organization"]
            question, yes, no = "Which sessions will you attend?", "Yes", "No"
        else:
            own = ["ID de la réponse", "Date de soumission", "Dernière page", "Langue de départ"]
            own += ["Tête de série", "Date de lancement", "Date de la dernière action"]
            asked = ["Courriel", "Nom", "Prénom", "Fonction", "Collectivité"]
            question, yes, no = "À quelles séances participerez-vous ?", "Oui", ""
        header = [*own, *asked, *(f"{question} [{label}]" for label in LABELS.values())]
        rows = []
        for n, p in enumerate(PEOPLE, 1):
            at = f"{p.at:%Y-%m-%d %H:%M:%S}"
            begun = f"{p.at - timedelta(minutes=4):%Y-%m-%d %H:%M:%S}"
            mine = [str(n), at, "2", "fr", str(4711 + n), begun, at]
            ticks = [yes if s in p.sessions else no for s in LABELS]
            rows.append([*mine, p.email, p.last, p.first, p.role, p.organisation, *ticks])
        _text(path, [header, *rows], ",", "utf-8")

    return write


def typeform(path: Path) -> None:
    """One column per choice, headed by the choice and holding it when chosen; times in UTC."""
    header = ["#", "Quelle est votre adresse e-mail ?", "Quel est votre prénom ?"]
    header += ["Quel est votre nom ?", *LABELS.values(), VISIT]
    header += ["Start Date (UTC)", "Submit Date (UTC)", "Network ID"]
    rows = []
    for n, p in enumerate(PEOPLE):
        chosen = [LABELS[s] if s in p.sessions else "" for s in LABELS]
        utc = p.at.astimezone(UTC)
        begun = utc - timedelta(minutes=2)
        times = [f"{begun:%Y-%m-%d %H:%M:%S}", f"{utc:%Y-%m-%d %H:%M:%S}"]
        rows.append([f"t{n}x9q", p.email, p.first, p.last, *chosen, "", *times, "3f2a9c"])
    _text(path, [header, *rows], ",", "utf-8")


def _excel(delimiter: str, encoding: str) -> Callable[[Path], None]:
    """A list kept by hand in Excel, saved as text: dates typed in one cell."""

    def write(path: Path) -> None:
        header = ["Nom", "Prénom", "Courriel", "Fonction", "Collectivité", "Séances"]
        rows = [
            [
                p.last,
                p.first,
                p.email,
                p.role,
                p.organisation,
                "; ".join(SHORT[s] for s in p.sessions),
            ]
            for p in PEOPLE
        ]
        rows.append(["Noyé", "Gaël", "gael.noye@example.org", "Maire", "Commune d'Avion", "toutes"])
        _text(path, [header, *rows], delimiter, encoding)

    return write


def _excel_expected() -> dict[str, Expected]:
    return {**chose(), "gael.noye@example.org": EVERY}


def ticks_one_zero(path: Path) -> None:
    header = ["Courriel", "Nom", "Prénom", *(f"Séance du {SHORT[s]}" for s in LABELS)]
    rows = [
        [p.email, p.last, p.first, *("1" if s in p.sessions else "0" for s in LABELS)]
        for p in PEOPLE
    ]
    _text(path, [header, *rows], ";", "utf-8-sig")


def ticks_yes_no_ods(path: Path) -> None:
    # Labels without the year, as staff write them: the cycle's session on that day.
    short = {MARCH: "1er mars", APRIL: "5 avril", MAY: "3 mai", JUNE: "7 juin"}
    header: list[Cell] = ["Horodateur", "Courriel", "Nom", "Prénom"]
    header += [f"Mercredi {short[s]}" for s in LABELS]
    rows: list[list[Cell]] = [header]
    for p in PEOPLE:
        ticks: list[Cell] = ["Oui" if s in p.sessions else "Non" for s in LABELS]
        rows.append([_stamp(p.at), p.email, p.last, p.first, *ticks])
    write_ods(path, {"Inscriptions": rows})


def ticks_marks_xlsx(path: Path) -> None:
    """Tick marks, an option that is no session, and an answer that is neither."""
    header: list[Cell] = ["Courriel", "Nom", "Prénom", *LABELS.values(), VISIT]
    rows: list[list[Cell]] = [header]
    for p in PEOPLE:
        rows.append([p.email, p.last, p.first, *("✓" if s in p.sessions else None for s in LABELS)])
    rows.append(["lea.roux@example.org", "Roux", "Léa", "✓", None, None, None, "✓"])
    rows.append(["hugo.petit@example.org", "Petit", "Hugo", "Peut-être", None, "✓", None])
    write_xlsx(path, {"Feuil1": rows})


def _merged(kind: str) -> Callable[[Path], None]:
    """Staff merge a cell over the rows of people who share it: a "Séances" cell over
    Évelyne and Karim, a "Collectivité" cell over Sophie and Aïcha."""

    def write(path: Path) -> None:
        header: list[Cell] = ["Horodateur", "Courriel", "Nom", "Prénom", "Collectivité", "Séances"]
        rows: list[list[Cell]] = [header]
        for n, p in enumerate(PEOPLE):
            organisation = None if n == 3 else p.organisation
            sessions = None if n == 1 else "; ".join(SHORT[s] for s in p.sessions)
            rows.append([_stamp(p.at), p.email, p.last, p.first, organisation, sessions])
        merged = {"Inscriptions": ["F2:F3", "E4:E5"]}
        (write_xlsx if kind == "xlsx" else write_ods)(path, {"Inscriptions": rows}, merged)

    return write


def _merged_expected() -> dict[str, Expected]:
    found = chose()
    found["karim.lefebvre@example.org"] = frozenset(PEOPLE[0].sessions)
    return found


def zoom_report(path: Path) -> None:
    """Zoom's registration report: a report block above the header, no sessions asked."""
    rows = [
        ["Registration Report"],
        ["Topic", "ID", "Start Time"],
        ["Cycle élus 2023", "812 3456 7890", "Mar 1, 2023 05:00 PM"],
        [],
        ["First Name", "Last Name", "Email", "Registration Time", "Approval Status"],
        *([p.first, p.last, p.email, f"{p.at:%b %d, %Y %I:%M:%S %p}", "approved"] for p in PEOPLE),
    ]
    _text(path, rows, ",", "utf-8")


def _all(people: Sequence[Person] = PEOPLE) -> dict[str, Expected]:
    return {p.email: EVERY for p in people}


def _registered() -> dict[str, datetime]:
    return {p.email: p.at for p in PEOPLE}


def _last_names() -> dict[str, str]:
    return {p.email: p.last for p in PEOPLE}


CORPUS = (
    Export(
        "google-forms.csv",
        "Google Forms (CSV)",
        google_forms,
        chose(),
        columns={"sessions": "À quelle(s) séance(s) souhaitez-vous participer ?"},
        registered=_registered(),
    ),
    Export(
        "google-forms-grid.xlsx",
        "Google Forms, checkbox grid (XLSX)",
        google_forms_grid,
        chose(),
        columns={"sessions": "4 columns, one per option"},
        registered=_registered(),
    ),
    Export(
        "microsoft-forms-anonymous.xlsx",
        "Microsoft Forms, anonymous, French",
        _microsoft_forms(internal=False, english=False),
        chose(),
        columns={"email": "Adresse e-mail", "last_name": "Nom2", "registered_at": "Heure de fin"},
        registered=_registered(),
        last_names=_last_names(),
        notes=(
            "'Adresse de messagerie' also names email but holds only 'anonymous'",
            "'Nom' also names last_name but is empty; 'Nom2' is used",
        ),
    ),
    Export(
        "microsoft-forms-internal.xlsx",
        "Microsoft Forms, internal, French",
        _microsoft_forms(internal=True, english=False),
        chose(),
        columns={
            "email": "Adresse de messagerie",
            "last_name": "Nom2",
            "registered_at": "Heure de fin",
        },
        registered=_registered(),
        last_names=_last_names(),
    ),
    Export(
        "microsoft-forms-internal-en.xlsx",
        "Microsoft Forms, internal, English",
        _microsoft_forms(internal=True, english=True),
        chose(),
        columns={"email": "Email", "last_name": "Last name", "registered_at": "Completion time"},
        registered=_registered(),
        last_names=_last_names(),
    ),
    Export(
        "framaforms-texte.xls",
        "Framaforms, delimited text (UTF-16, tabs), option labels under the header",
        framaforms_unicode,
        chose(),
        columns={"sessions": "4 columns, one per option"},
        registered={p.email: p.at.replace(second=0) for p in PEOPLE},
    ),
    Export(
        "framaforms-drupal.csv",
        "Framaforms, CSV with Drupal's three header rows",
        framaforms_drupal,
        chose(),
        columns={"sessions": "4 columns, one per option"},
    ),
    Export(
        "limesurvey-fr.csv",
        "LimeSurvey, full headings and answers, French",
        _limesurvey(english=False),
        chose(),
        columns={"registered_at": "Date de soumission", "sessions": "4 columns, one per option"},
        registered=_registered(),
    ),
    Export(
        "limesurvey-en.csv",
        "LimeSurvey, full headings and answers, English",
        _limesurvey(english=True),
        chose(),
        columns={"email": "Email address", "registered_at": "Date submitted"},
        registered=_registered(),
    ),
    Export(
        "typeform.csv",
        "Typeform, a column per choice, times in UTC",
        typeform,
        chose(),
        columns={"sessions": "5 columns, one per option", "registered_at": "Submit Date (UTC)"},
        registered=_registered(),
        notes=("'Submit Date (UTC)' is read in UTC", "read as ticked: the option's own label"),
    ),
    Export(
        "excel-texte-unicode.txt",
        "Excel, Texte Unicode (UTF-16 LE with BOM, tabs)",
        _excel("\t", "utf-16"),
        _excel_expected(),
    ),
    Export(
        "utf16-be.csv",
        "Text in UTF-16 BE with BOM, ';'",
        _excel(";", "utf-16-be-bom"),
        _excel_expected(),
    ),
    Export(
        "excel-fr.csv", "Excel, CSV in Windows-1252, ';'", _excel(";", "cp1252"), _excel_expected()
    ),
    Export("utf8.csv", "CSV UTF-8 without BOM, ','", _excel(",", "utf-8"), _excel_expected()),
    Export("utf8-bom.csv", "CSV UTF-8 with BOM, ';'", _excel(";", "utf-8-sig"), _excel_expected()),
    Export("ticks-1-0.csv", "One column per option, 1 or 0", ticks_one_zero, chose()),
    Export(
        "ticks-oui-non.ods", "One column per option, Oui or Non (ODS)", ticks_yes_no_ods, chose()
    ),
    Export(
        "ticks-marks.xlsx",
        "One column per option, tick marks, an option that is no session",
        ticks_marks_xlsx,
        {
            **chose(),
            "lea.roux@example.org": Skipped(6, "15 mars 2023 is not a session of the cycle"),
            "hugo.petit@example.org": Skipped(7, "'Peut-être' under"),
        },
    ),
    Export(
        "merged.xlsx",
        "Cells merged by hand (XLSX)",
        _merged("xlsx"),
        _merged_expected(),
        notes=("merged cells F2:F3, E4:E5: each row they cover is read with their value",),
    ),
    Export(
        "merged.ods",
        "Cells merged by hand (ODS)",
        _merged("ods"),
        _merged_expected(),
        notes=("merged cells F2:F3, E4:E5: each row they cover is read with their value",),
    ),
    Export(
        "zoom-report.csv",
        "Zoom registration report, no sessions asked",
        zoom_report,
        {},
        error="no session column",
    ),
    Export(
        "zoom-report-all.csv",
        "Zoom registration report, all_sessions = true",
        zoom_report,
        _all(),
        settings=("all_sessions = true",),
        registered=_registered(),
    ),
)


def main(folder: str) -> None:
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    for export in CORPUS:
        export.write(target / export.name)
        print(f"{export.name}: {export.tool}")


if __name__ == "__main__":
    main(sys.argv[1])
