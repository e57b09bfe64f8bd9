"""One reading of the inputs: what reports need is read at once, templates on first use."""

import pytest

from reminder.core.errors import TemplateError
from reminder.service.snapshot import load_snapshot
from tests.support.project import Project


def test_reports_load_without_reading_the_templates(project: Project) -> None:
    (project.root / "templates" / "reminder.subject.txt").write_text("{{ sesion.topic }}\n")
    snapshot = load_snapshot(project.config, compose=False)
    assert len(snapshot.sessions) == 9 and len(snapshot.roster.registrants) == 22
    with pytest.raises(TemplateError, match="unknown variable 'sesion'"):
        snapshot.composer  # noqa: B018 - the templates are read on first use
    with pytest.raises(TemplateError, match="unknown variable 'sesion'"):
        load_snapshot(project.config)  # composing, they are read and checked at once


def test_the_composer_is_made_once_and_renders_every_reminder(project: Project) -> None:
    snapshot = load_snapshot(project.config, compose=False)
    assert snapshot.composer is snapshot.composer
    assert snapshot.templates is snapshot.composer.templates
