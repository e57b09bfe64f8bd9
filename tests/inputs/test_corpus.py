"""Every export of the corpus (one per form tool and layout, tests/support/corpus.py):
each person with exactly the sessions they chose, or a named problem; nobody on every
session unless the config says so; the mapping report naming the column of each field."""

from __future__ import annotations

import pytest

from reminder.commands.checking import registrants
from reminder.core.errors import RegistrantsError
from reminder.core.model import Roster
from reminder.inputs.config import load_config
from reminder.inputs.registrants import load_roster
from reminder.inputs.schedule import load_sessions
from tests.support.corpus import CORPUS, EVERY, Export, Skipped
from tests.support.project import Project


def prepared(project: Project, export: Export) -> None:
    export.write(project.root / export.name)
    project.edit('registrants = "registrants.csv"', f'registrants = "{export.name}"')
    for setting in export.settings:
        project.edit('delimiter = "auto"', f'delimiter = "auto"\n{setting}')


def load(project: Project) -> Roster:
    config = load_config(project.config)
    sessions, _ = load_sessions(config)
    return load_roster(config, sessions)


@pytest.mark.parametrize("export", CORPUS, ids=lambda export: export.name)
def test_each_person_gets_exactly_the_sessions_they_chose(project: Project, export: Export) -> None:
    prepared(project, export)
    if export.error:
        with pytest.raises(RegistrantsError, match=export.error) as refused:
            load(project)
        assert export.name in str(refused.value)
        return
    roster = load(project)
    served = {r.email: EVERY if r.sessions is None else r.sessions for r in roster.registrants}
    assert served == {
        email: sessions
        for email, sessions in export.expected.items()
        if not isinstance(sessions, Skipped)
    }
    skipped = {e.row: e.why for e in export.expected.values() if isinstance(e, Skipped)}
    assert {p.row for p in roster.problems} == set(skipped)
    for problem in roster.problems:
        assert problem.row is not None and skipped[problem.row] in problem.message
        assert problem.message.endswith("; skipped")
    assert roster.mapping is not None
    for field, header in export.columns.items():
        assert roster.mapping.column(field) == header, field
    for note in export.notes:
        assert any(note in said for said in roster.mapping.notes), (note, roster.mapping.notes)
    for email, moment in export.registered.items():
        found = roster.find(email)
        assert found is not None and found.registered_at == moment, email
    for email, last_name in export.last_names.items():
        found = roster.find(email)
        assert found is not None and found.last_name == last_name, email


@pytest.mark.parametrize("export", CORPUS, ids=lambda export: export.name)
def test_the_registrants_command_lists_each_person_and_the_columns(
    project: Project, export: Export
) -> None:
    prepared(project, export)
    if export.error:
        return
    shown = registrants(project.config, show_addresses=True).out
    lines = shown.splitlines()
    for email, sessions in export.expected.items():
        mine = [line for line in lines if line.startswith(email)]
        if isinstance(sessions, Skipped):
            assert not mine
            assert f": row {sessions.row}" in shown
            continue
        [line] = mine
        assert line.rstrip().endswith("all" if sessions == EVERY else " ".join(sorted(sessions)))
    assert "columns (" in shown and "  email" in shown
