"""One worker's cycle for tests and benchmarks: a single session, its leads, a local SMTP server."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def write_cycle(
    folder: Path,
    *,
    port: int,
    start: datetime,
    registrants: int,
    end: str = "23:59",
    leads: tuple[str, ...] = ("1h",),
    connections: int = 4,
    http_port: int = 0,
    cycle_id: str = "bench",
    topic: str = "",
    reminders: str = "",
    smtp: str = "",
    ledger: str = "",
    templates: bool = False,
) -> Path:
    """Write config.toml and an export of `registrants` people (elu0@example.org…) in
    `folder`; with `templates`, a copy of the sample's too. Returns the config's path."""
    config = folder / "config.toml"
    config.write_text(
        f'''
[cycle]
id = "{cycle_id}"
title = "Cycle de mesure"
join_url = "https://zoom.us/j/1"
[organizer]
name = "IREV"
[contact]
name = "Morgane Petit"
email = "m.petit@irev.fr"
[[semesters]]
name = "Lointain"
start = 2030-01-01
end = 2030-01-31
[[sessions]]
date = {start.date().isoformat()}
extra = true
start = "{start:%H:%M:%S}"
end = "{end}"
{f'topic = "{topic}"' if topic else ""}
[reminders]
leads = [{", ".join(f'"{lead}"' for lead in leads)}]
{reminders}
[sender]
address = "contact@irev.fr"
[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
connections = {connections}
{smtp}
[http]
# Any free port by default: other checkouts' workers and benchmarks run here too.
listen = "127.0.0.1:{http_port}"
[ledger]
{ledger}
''',
        encoding="utf-8",
    )
    lines = ["Nom;Prénom;Courriel;Séances"]
    lines += [f"Nom{n};Prénom{n};elu{n}@example.org;toutes" for n in range(registrants)]
    (folder / "registrants.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if templates:
        (folder / "suppression.txt").write_text("", encoding="utf-8")
        shutil.copytree(REPO / "templates", folder / "templates", dirs_exist_ok=True)
    return config
