"""Loading a 100,000-row registration export (Excel, French locale). Target: under 2 s.

.venv/bin/python bench/registrants.py [--rows N] [--runs R]
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import time

from common import sample_project, summary

from reminder.config import load_config
from reminder.registrants import load_roster
from reminder.sessions import build_sessions

FIRST = ["Évelyne", "Karim", "Sophie", "Jean-François", "Aïcha", "Béatrice", "Thibault", "Zoé"]
LAST = ["Dubois", "Lefebvre", "Noyé", "Lemaire", "Cœurderoy", "Da Silva", "Hénin", "Mbaye"]
DOMAINS = ["example.org", "example.fr", "ville-exemple.fr", "agglo-exemple.fr", "example.com"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
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
    export = config_path.parent / "registrants.csv"
    export.write_bytes(text.getvalue().encode("cp1252"))
    config = load_config(config_path)
    sessions, _ = build_sessions(config)
    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        roster = load_roster(config, sessions)
        times.append(time.perf_counter() - started)
        assert len(roster.registrants) == args.rows and not roster.problems
    size = export.stat().st_size / 1e6
    print(summary(f"load {args.rows:,} rows ({size:.1f} MB, cp1252, ';')", times, "s"))


if __name__ == "__main__":
    main()
