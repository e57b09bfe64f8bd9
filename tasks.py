#!/usr/bin/env python3
"""The project's one task runner; needs nothing but Python 3.11.

    python3 tasks.py demo         set up, then run the whole 2023 cycle into a local folder
    python3 tasks.py test         set up, then lint, type-check and run the tests
    python3 tasks.py run          set up, then run the service on ./config.toml
    python3 tasks.py lint         ruff (format and check) and mypy
    python3 tasks.py bench        the benchmarks of README "Performance"
    python3 tasks.py screenshots  render the sample mail to PNG (needs Debian's chromium)
    python3 tasks.py install      only set up .venv (editable, with the development tools)
    python3 tasks.py install --prod   set up .venv for a server: the package only, not editable

Every task creates .venv when it is missing and reinstalls when pyproject.toml changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"


def run(*command: str | Path) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    status = subprocess.call([str(part) for part in command], cwd=ROOT)
    if status:
        sys.exit(status)


def install(prod: bool = False) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs before any install
        sys.exit(f"reminder needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    stamp = VENV / ".installed"
    mode = "prod" if prod else "dev"
    wanted = mode + ":" + hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"+ creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    run(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    if prod:
        # A copy of the package, not a link to this checkout, and no test or lint tools.
        run(BIN / "python", "-m", "pip", "install", "--quiet", "--no-cache-dir", ".")
    else:
        run(BIN / "python", "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    stamp.write_text(wanted)


def lint() -> None:
    run(BIN / "ruff", "format", "--check", ".")
    run(BIN / "ruff", "check", ".")
    run(BIN / "mypy")


def test() -> None:
    lint()
    run(BIN / "python", "-m", "pytest", *sys.argv[2:])


def demo() -> None:
    run(BIN / "reminder", "--config", "config.toml", "simulate")


def serve() -> None:
    run(BIN / "reminder", "--config", "config.toml", "run")


def bench() -> None:
    for script in (
        "registrants.py",
        "compose.py",
        "plan.py",
        "notices.py",
        "transport.py",
        "worker.py",
        "kill9.py",
        "http_load.py",
        # Needs PostgreSQL on 127.0.0.1:5432 (database test), like the tests.
        "cluster.py",
    ):
        run(BIN / "python", ROOT / "bench" / script)


# Headless, and without the background traffic a closed network would refuse.
CHROMIUM = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
WIDTHS = {"phone": (390, 1700), "desktop": (1024, 1500)}


def render_screenshots(html: Path, out: Path, chromium: str = "chromium") -> list[Path]:
    """PNGs of an HTML mail at phone and desktop width, as registrants will see it."""
    shots = []
    for name, (width, height) in WIDTHS.items():
        target = out / f"{html.stem}-{name}.png"
        subprocess.run(
            [
                chromium,
                *CHROMIUM,
                f"--user-data-dir={out / '.chromium'}",
                f"--window-size={width},{height}",
                f"--screenshot={target}",
                html.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        shots.append(target)
    return shots


def screenshots() -> None:
    out = ROOT / "screenshots"
    run(
        BIN / "reminder",
        "--config",
        "config.toml",
        "preview",
        "--session",
        "2023-03-01",
        "--lead",
        "1d",
        "--out",
        out,
    )
    for shot in render_screenshots(out / "reminder-2023-03-01-1d.html", out):
        print(f"wrote {shot}")


TASKS = {
    "install": lambda: None,
    "lint": lint,
    "test": test,
    "demo": demo,
    "run": serve,
    "bench": bench,
    "screenshots": screenshots,
}


def main() -> None:
    task = sys.argv[1] if len(sys.argv) > 1 else ""
    if task not in TASKS:
        sys.exit(__doc__)
    os.environ.pop("VIRTUAL_ENV", None)
    install(prod=task == "install" and "--prod" in sys.argv[2:])
    TASKS[task]()


if __name__ == "__main__":
    main()
