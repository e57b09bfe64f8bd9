"""The wheel is a product: installed in a fresh venv, far from the checkout, it starts a cycle."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.support.project import REPO

# What a wheel is built from: the package and the sample cycle it carries.
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE")
SAMPLE = ("config.toml", "registrants.csv", "suppression.txt")

pytestmark = pytest.mark.timeout(180)


def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel built from a copy of the checkout; the
    dependencies are seen through a path file, so nothing is downloaded."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in (*SOURCES, *SAMPLE):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "templates", source / "templates")
    shutil.copytree(
        REPO / "reminder", source / "reminder", ignore=shutil.ignore_patterns("__pycache__")
    )
    built = run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", root / "dist", ".", cwd=source,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    wheel = next((root / "dist").glob("reminder-*.whl"))
    env = root / "venv"
    venv.create(env, with_pip=False)
    added = run(
        sys.executable, "-m", "pip", "--python", env / "bin" / "python", "install",
        "--no-deps", "--no-index", "-q", wheel, cwd=root,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(run(env / "bin" / "python", "-c", purelib, cwd=root).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env


def test_a_wheel_in_a_fresh_venv_starts_a_cycle_that_checks_and_simulates(
    installed: Path, tmp_path: Path
) -> None:
    reminder = installed / "bin" / "reminder"
    where = run(
        installed / "bin" / "python",
        "-c",
        "import reminder; print(reminder.__file__)",
        cwd=tmp_path,
    )
    assert str(installed) in where.stdout, where.stdout + where.stderr

    created = run(reminder, "init", "cycle-2027", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert "reminder --config cycle-2027/config.toml check" in created.stdout
    cycle = tmp_path / "cycle-2027"
    assert sorted(p.name for p in cycle.iterdir()) == sorted([*SAMPLE, "templates"])
    assert (cycle / "templates" / "reminder.html").is_file()

    checked = run(reminder, "--config", cycle / "config.toml", "check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    simulated = run(reminder, "--config", cycle / "config.toml", "simulate", cwd=tmp_path)
    assert simulated.returncode == 0, simulated.stderr
    assert list((cycle / "state" / "simulation" / "outbox" / "new").glob("*.eml"))

    again = run(reminder, "init", "cycle-2027", cwd=tmp_path)
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert (cycle / "state").is_dir()  # nothing of the existing cycle was touched
