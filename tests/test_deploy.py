"""The systemd units stay valid and sandboxed: ops install them as they are."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ANALYZE = shutil.which("systemd-analyze")
UNITS = {"reminder.service": "reminder.service", "reminder@.service": "reminder@elus-2023.service"}

pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def _installed(unit: str, name: str, folder: Path) -> Path:
    # verify also checks that ExecStart exists, which only holds on a real installation.
    text = (DEPLOY / unit).read_text().replace("/srv/reminder/.venv/bin/reminder", "/bin/true")
    target = folder / name
    target.write_text(text)
    return target


@pytest.mark.parametrize(("unit", "name"), UNITS.items())
def test_unit_verifies(unit: str, name: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(ANALYZE), "verify", str(_installed(unit, name, tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize(("unit", "name"), UNITS.items())
def test_unit_is_in_the_ok_band_of_systemd_security(unit: str, name: str, tmp_path: Path) -> None:
    installed = _installed(unit, name, tmp_path)
    result = subprocess.run(
        # The threshold is in tenths: 25 is the 2.5 that ends systemd's "OK" band.
        [str(ANALYZE), "security", "--offline=true", "--threshold=25", str(installed)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-400:]
    assert "OK" in result.stdout.splitlines()[-1]


def test_ledger_is_not_world_readable() -> None:
    for unit in UNITS:
        assert "UMask=0027" in (DEPLOY / unit).read_text()
