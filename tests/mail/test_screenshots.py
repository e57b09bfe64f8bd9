"""The sample mail as a person sees it: rendered by headless Chromium at phone and desktop width."""

import shutil
from pathlib import Path

import pytest

from reminder.cli import main
from tasks import render_screenshots  # the code behind `python3 tasks.py screenshots`
from tests.support.mail import png_size
from tests.support.project import Project

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.chromium,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed"),
]


def test_the_sample_reminder_renders_at_phone_and_desktop_width(
    project: Project, tmp_path: Path
) -> None:
    assert (
        main(
            [
                "--config",
                str(project.config),
                "preview",
                "--session",
                "2023-03-01",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    html = tmp_path / "reminder-2023-03-01-7d.html"
    phone, desktop = render_screenshots(html, tmp_path, chromium=str(CHROMIUM))
    assert png_size(phone) == (390, 1700)
    assert png_size(desktop) == (1024, 1500)
    assert phone.stat().st_size > 20_000  # a rendered mail, not a blank page
