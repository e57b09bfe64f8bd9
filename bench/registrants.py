"""Loading a 100,000-row registration export: CSV as Excel writes it in a French locale
(target: under 2 s), the same answers as an XLSX workbook (target: under 5 s), and a
Microsoft Forms workbook of 12 columns (target: under 5 s).

.venv/bin/python bench/registrants.py [--rows N] [--runs R] [--format csv|xlsx|ods|msforms|all]
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
import time
import zipfile
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

from common import sample_project, summary

from reminder.inputs.config import load_config
from reminder.inputs.registrants import load_roster
from reminder.inputs.schedule import load_sessions

FIRST = ["Évelyne", "Karim", "Sophie", "Jean-François", "Aïcha", "Béatrice", "Thibault", "Zoé"]
LAST = ["Dubois", "Lefebvre", "Noyé", "Lemaire", "Cœurderoy", "Da Silva", "Hénin", "Mbaye"]
DOMAINS = ["example.org", "example.fr", "ville-exemple.fr", "agglo-exemple.fr", "example.com"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--format", choices=["csv", "xlsx", "ods", "msforms", "all"], default="all")
    args = parser.parse_args()
    config_path = sample_project()
    rng = random.Random(2023)
    text = io.StringIO()
    # What Excel writes for "CSV (séparateur : point-virgule)" in a French locale.
    writer = csv.writer(text, delimiter=";", lineterminator="\r\n")
    writer.writerow(
        [
            "Horodateur",
            "Nom",
            "Prénom",
            "Courriel",
            "Fonction",
            "Collectivité",
            "Séances",
            "Lien Zoom",
        ]
    )
    for n in range(args.rows):
        sessions = rng.choice(["toutes", "01/03/2023; 05/04/2023", "", "1er mars 2023"])
        writer.writerow(
            [
                f"2023-02-{1 + n % 28:02d} 10:00:00",
                rng.choice(LAST),
                rng.choice(FIRST),
                f"elu.{n}@{rng.choice(DOMAINS)}",
                "Maire adjoint",
                f"Commune n°{n}",
                sessions,
                "",
            ]
        )
    folder = config_path.parent
    formats = ["csv", "xlsx", "msforms"] if args.format == "all" else [args.format]
    for kind in formats:
        export = folder / f"registrants.{'xlsx' if kind == 'msforms' else kind}"
        if kind == "csv":
            export.write_bytes(text.getvalue().encode("cp1252"))
            label = "cp1252, ';'"
        elif kind == "msforms":
            _write_excel_like(export, _microsoft_forms(args.rows, rng))
            label = "Microsoft Forms, 12 columns, 3 of dates"
        else:
            rows = list(csv.reader(io.StringIO(text.getvalue()), delimiter=";"))
            _write_workbook(export, rows)
            label = "typed dates"
        edited = config_path.read_text(encoding="utf-8")
        edited = edited.replace('registrants = "registrants.csv"', f'registrants = "{export.name}"')
        config_path.write_text(edited, encoding="utf-8")
        config = load_config(config_path)
        sessions, _ = load_sessions(config)
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            roster = load_roster(config, sessions)
            times.append(time.perf_counter() - started)
            assert len(roster.registrants) == args.rows and not roster.problems, roster.problems[:3]
        size = export.stat().st_size / 1e6
        print(summary(f"load {args.rows:,} rows {kind} ({size:.1f} MB, {label})", times, "s"))
        config_path.write_text(
            edited.replace(f'registrants = "{export.name}"', 'registrants = "registrants.csv"'),
            encoding="utf-8",
        )


# The options of the sessions question, as Microsoft Forms writes them, each ending in ";".
OPTIONS = [
    "Mercredi 1er mars 2023 – Mixité sociale dans l'habitat;",
    "Mercredi 5 avril 2023 – Mixité scolaire;",
    "Mercredi 3 mai 2023 – Transitions et quartiers;",
    "Mercredi 7 juin 2023 – Enjeux éducatifs;",
]


def _microsoft_forms(count: int, rng: random.Random) -> list[list[object]]:
    """An anonymous Microsoft Forms export: its own six columns (ID, start and completion
    times, "anonymous" address, empty name, no modification time), then six questions."""
    rows: list[list[object]] = [
        [
            "ID",
            "Heure de début",
            "Heure de fin",
            "Adresse de messagerie",
            "Nom",
            "Heure de la dernière modification",
            "Nom2",
            "Prénom",
            "Adresse e-mail",
            "Fonction",
            "Collectivité",
            "Séances",
        ]
    ]
    for n in range(count):
        done = datetime(2023, 2, 1 + n % 28, 9, n % 60, n * 7 % 60)  # noqa: DTZ001 - a cell
        began = done.replace(second=0)
        chosen = "".join(rng.sample(OPTIONS, rng.randint(1, 3)))
        rows.append(
            [
                n + 1,
                began,
                done,
                "anonymous",
                None,
                None,
                rng.choice(LAST),
                rng.choice(FIRST),
                f"elu.{n}@{rng.choice(DOMAINS)}",
                "Maire adjoint",
                f"Commune n°{n}",
                chosen,
            ]
        )
    return rows


def _write_workbook(path: Path, rows: list[list[str]]) -> None:
    """The same answers as a form tool's workbook, the timestamp a typed date cell."""
    typed: list[list[object]] = [list(rows[0])]
    typed += [[datetime.fromisoformat(row[0]), *row[1:]] for row in rows[1:]]
    if path.suffix == ".ods":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.support.sheets import write_ods

        write_ods(path, {"Réponses": typed})
        return
    _write_excel_like(path, typed)


def _write_excel_like(path: Path, rows: list[list[object]]) -> None:
    """An XLSX as Excel and Microsoft Forms write one: shared strings and a <dimension>.

    openpyxl 3.1 writes inline strings and no dimension, which a reader must scan the
    whole sheet for: slower to read than anything staff will download.
    """
    strings: dict[str, int] = {}
    epoch = datetime(1899, 12, 30)  # noqa: DTZ001 - Excel's serial dates have no zone
    out = []
    for number, row in enumerate(rows, start=1):
        cells = []
        for column, value in enumerate(row):
            ref = f"{'ABCDEFGHIJKLMNOPQRSTUVWXYZ'[column]}{number}"
            if isinstance(value, datetime):
                serial = (value - epoch).total_seconds() / 86400
                cells.append(f'<c r="{ref}" s="1"><v>{serial!r}</v></c>')
            elif isinstance(value, int):
                cells.append(f'<c r="{ref}"><v>{value}</v></c>')
            elif value:
                index = strings.setdefault(str(value), len(strings))
                cells.append(f'<c r="{ref}" t="s"><v>{index}</v></c>')
        out.append(f'<row r="{number}">{"".join(cells)}</row>')
    last = f"{'ABCDEFGHIJKLMNOPQRSTUVWXYZ'[max(len(r) for r in rows) - 1]}{len(rows)}"
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    package = "http://schemas.openxmlformats.org/package/2006"
    shared = "".join(f"<si><t>{escape(text)}</t></si>" for text in strings)
    parts = {
        "[Content_Types].xml": (
            f'<Types xmlns="{package}/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.'
            'openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.'
            'openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
            '<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.spreadsheetml.styles+xml"/></Types>'
        ),
        "_rels/.rels": (
            f'<Relationships xmlns="{package}/relationships"><Relationship Id="rId1" '
            f'Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            f'<workbook xmlns="{main}" xmlns:r="{rel}"><sheets><sheet name="Réponses" '
            'sheetId="1" r:id="rId1"/></sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            f'<Relationships xmlns="{package}/relationships">'
            f'<Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{rel}/sharedStrings" Target="sharedStrings.xml"/>'
            f'<Relationship Id="rId3" Type="{rel}/styles" Target="styles.xml"/></Relationships>'
        ),
        "xl/styles.xml": (
            f'<styleSheet xmlns="{main}"><numFmts count="1"><numFmt numFmtId="164" '
            'formatCode="dd/mm/yyyy hh:mm:ss"/></numFmts><fonts count="1"><font/></fonts>'
            '<fills count="1"><fill><patternFill patternType="none"/></fill></fills>'
            '<borders count="1"><border/></borders>'
            '<cellStyleXfs count="1"><xf/></cellStyleXfs><cellXfs count="2"><xf/>'
            '<xf numFmtId="164" applyNumberFormat="1"/></cellXfs>'
            '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
            "</styleSheet>"
        ),
        "xl/sharedStrings.xml": (
            f'<sst xmlns="{main}" count="{len(strings)}" uniqueCount="{len(strings)}">'
            f"{shared}</sst>"
        ),
        "xl/worksheets/sheet1.xml": (
            f'<worksheet xmlns="{main}"><dimension ref="A1:{last}"/><sheetData>'
            f"{''.join(out)}</sheetData></worksheet>"
        ),
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, '<?xml version="1.0" encoding="UTF-8"?>' + text)


if __name__ == "__main__":
    main()
