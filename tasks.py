#!/usr/bin/env python3
"""The project's one task runner; needs nothing but Python 3.11.

    python3 tasks.py demo         set up, then run the whole 2023 cycle into a local folder
    python3 tasks.py test         set up, then lint, type-check and run the tests
    python3 tasks.py run          set up, then run the service on ./config.toml
    python3 tasks.py lint         ruff (format and check) and mypy
    python3 tasks.py bench        the benchmarks of README "Performance"
    python3 tasks.py screenshots  render the sample mail to PNG (needs Debian's chromium)
    python3 tasks.py wheel        build dist/reminder-*.whl (with the sample cycle `init` copies)
    python3 tasks.py install      only set up .venv (editable, with the development tools)
    python3 tasks.py install --prod   set up .venv for a server: the package only, not editable
    python3 tasks.py lock         pin every dependency, with hashes, after pyproject.toml changed

Every task creates .venv when it is missing and reinstalls when the lock file changed.
Installs take exact versions with their hashes from requirements.lock (the service) or
requirements-dev.lock (the service, the tests and the linters).
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
LOCKS = {"prod": ROOT / "requirements.lock", "dev": ROOT / "requirements-dev.lock"}
PIP_TOOLS = "pip-tools==7.6.2"


def run(*command: str | Path) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    status = subprocess.call([str(part) for part in command], cwd=ROOT)
    if status:
        sys.exit(status)


def install(prod: bool = False) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs before any install
        sys.exit(f"reminder needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    mode = "prod" if prod else "dev"
    lock = LOCKS[mode]
    stamp = VENV / ".installed"
    digest = hashlib.sha256(lock.read_bytes() + (ROOT / "pyproject.toml").read_bytes())
    wanted = f"{mode}:{digest.hexdigest()}"
    if stamp.exists() and stamp.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"+ creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    pip = (BIN / "python", "-m", "pip", "install", "--quiet")
    run(*pip, "--require-hashes", "--no-deps", "-r", lock)
    # The lock holds the build backend too, so building our own package fetches nothing.
    if prod:
        # A copy of the package, not a link to this checkout, and no test or lint tools.
        run(*pip, "--no-deps", "--no-build-isolation", "--no-cache-dir", ".")
    else:
        run(*pip, "--no-deps", "--no-build-isolation", "-e", ".")
    stamp.write_text(wanted)


def lock() -> None:
    """Pin the dependencies of pyproject.toml, with hashes, into the two lock files."""
    tools = ROOT / "build" / "pip-tools"
    # Only the package index counts: local wheel folders or mirrors configured on this
    # machine must not leak their files' hashes into the lock.
    os.environ.pop("PIP_FIND_LINKS", None)
    os.environ.pop("PIP_EXTRA_INDEX_URL", None)
    os.environ["PIP_CONFIG_FILE"] = os.devnull
    if not (tools / "bin" / "pip-compile").exists():
        venv.create(tools, with_pip=True)
        run(tools / "bin" / "python", "-m", "pip", "install", "--quiet", PIP_TOOLS)
    for mode, target in LOCKS.items():
        run(
            tools / "bin" / "pip-compile",
            "--quiet",
            "--generate-hashes",
            "--allow-unsafe",  # pins setuptools, the build backend
            "--strip-extras",
            "--no-emit-index-url",
            "--no-emit-find-links",
            *(["--extra", "dev"] if mode == "dev" else []),
            "--output-file",
            target.name,
            "pyproject.toml",
            "build-requirements.txt",
        )


def lint() -> None:
    run(BIN / "ruff", "format", "--check", ".")
    run(BIN / "ruff", "check", ".")
    run(BIN / "mypy")


def test() -> None:
    lint()
    # Four workers by default (pass -n 0 to run in one process, e.g. with a debugger).
    run(BIN / "python", "-m", "pytest", "-n", "4", *sys.argv[2:])


def wheel() -> None:
    # The build backend comes from the lock, like everything else: nothing is fetched.
    run(BIN / "python", "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", ROOT / "dist", ".")  # fmt: skip
    print(*sorted((ROOT / "dist").glob("reminder-*.whl")), sep="\n")


def demo() -> None:
    run(BIN / "reminder", "--config", "config.toml", "simulate")


def serve() -> None:
    run(BIN / "reminder", "--config", "config.toml", "run")


def bench() -> None:
    for script in (
        "registrants.py",
        "compose.py",
        # SQLite and PostgreSQL (on 127.0.0.1:5432, database test, like the tests) side by side.
        "plan.py --ledger postgresql://root@127.0.0.1:5432/test",
        "notices.py",
        # The transport alone, with a SQLite and with a PostgreSQL ledger, side by side.
        "transport.py",
        "worker.py",
        "kill9.py",
        "http_load.py",
        "startup.py",
        "scale.py",
        # Needs PostgreSQL on 127.0.0.1:5432 (database test), like the tests.
        "cluster.py",
        # 20 minutes each: one worker on SQLite, then three on a private PostgreSQL.
        "soak.py",
        "soak.py --workers 3",
    ):
        name, *options = script.split()
        run(BIN / "python", ROOT / "bench" / name, *options)


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
    "lock": lock,
    "lint": lint,
    "test": test,
    "demo": demo,
    "run": serve,
    "bench": bench,
    "screenshots": screenshots,
    "wheel": wheel,
}


def main() -> None:
    task = sys.argv[1] if len(sys.argv) > 1 else ""
    if task not in TASKS:
        sys.exit(__doc__)
    os.environ.pop("VIRTUAL_ENV", None)
    if task == "lock":
        lock()
        return
    install(prod=task == "install" and "--prod" in sys.argv[2:])
    TASKS[task]()


if __name__ == "__main__":
    main()
