"""A mail filled from a stencil reads, part for part, as the mail the templates render in
full: the same headers byte for byte, the same decoded bodies (only where the
quoted-printable lines are cut may differ)."""

from __future__ import annotations

import email
from datetime import timedelta

import pytest

from reminder.core.model import Registrant
from reminder.mail.messages import Composer
from reminder.service.snapshot import Snapshot
from tests.support.mail import HOSTILE, slot_of
from tests.support.project import Project

SECRET = "s" * 64

PEOPLE = [
    Registrant("anne.martin@example.org", "Anne", "Martin", "Maire", "Commune de Lens"),
    Registrant("jp-darcy+elus@ville-exemple.fr", "Jean-Pierre", "D'Arcy", "Maire-adjoint", ""),
    Registrant("zoe@example.fr", "Zoé", "Lefèvre-Cœurderoy", "", "Ville d'Évry-Courcouronnes"),
    Registrant("e.ndiaye@example.org", "Élodie", "N’Diaye", "Conseillère", "Paris 13e"),
    Registrant("marie@example.org", "Marie José", "Da Silva", "Première adjointe", "CA Béthune"),
    Registrant("sans.nom@example.org"),
    Registrant("prenom@example.org", "Prénom"),
    Registrant("UPPER.Case@Example.ORG", "Jean", "Dupont"),
    # Not plain: rendered in full, and must read the same as before stencils.
    Registrant("x@example.org", "Jean", "Dupont (né Martin)"),
    Registrant("y@example.org", "Jean  Pierre", "Martin"),
    Registrant("z@example.org", "Jean.", "-Martin"),
    Registrant("w@example.org", "Ça", "va !"),
    Registrant("v@example.org", "Anne", "Martin", organisation="« Lens »"),
    *(Registrant(f"h{n}@example.org", name, "Martin") for n, name in enumerate(HOSTILE)),
]
# One shape (every field given), the simplest first: the stencil is checked against
# the first registrant of its shape, and must hold for the others too.
ONE_SHAPE = [
    Registrant("anne@example.org", "Anne", "Martin", "Maire", "Lens"),
    Registrant("mj@example.org", "Marie José", "Martin-Dupont", "Maire-adjointe", "Ville d'Arras"),
    Registrant("jl@example.org", "Jean-Luc", "N'Diaye", "Conseiller délégué", "Béthune"),
]


def both(snapshot: Snapshot) -> tuple[Composer, Composer]:
    """A composer as the worker has it (stencils), and one rendering every mail in full.

    New ones each time: a composer stamps a session's calendar entry when it first
    makes it, and a batch is composed at one moment.
    """
    config, sessions, templates = snapshot.config, snapshot.sessions, snapshot.templates
    return (
        Composer(config, sessions, templates),
        Composer(config, sessions, templates, stencils=False),
    )


def read(data: bytes) -> list[tuple[list[tuple[str, str]], bytes | None]]:
    """What a mail client reads: each part's headers as written, and its decoded body;
    and every line of the encoded bodies within 76 characters (RFC 2045)."""
    message = email.message_from_bytes(data)
    for part in message.walk():
        if not part.is_multipart():
            assert all(len(line) <= 76 for line in part.get_payload().splitlines()), part
    return [(part.items(), part.get_payload(decode=True)) for part in message.walk()]


def assert_same_mails(snapshot: Snapshot, people: list[Registrant] = PEOPLE) -> None:
    for day, lead in (("2023-03-01", "7d"), ("2023-03-01", "1d"), ("2023-04-05", "1h")):
        slot = slot_of(snapshot, day, lead)
        for now in (slot.due_at, slot.due_at + timedelta(hours=5)):  # on time, and late
            stencilled, full = both(snapshot)
            for person in people:
                fast = stencilled.compose(slot, person, now)
                slow = full.compose(slot, person, now)
                assert read(fast.data) == read(slow.data), (day, lead, now, person)
                assert (fast.subject, fast.text, fast.html) == (slow.subject, slow.text, slow.html)


def test_the_sample_templates_give_the_same_mails(project: Project) -> None:
    assert_same_mails(project.snapshot())


def test_the_same_mails_with_one_click_unsubscribe_links(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.edit("#   public_url = ", "public_url = ")
    monkeypatch.setenv("REMINDER_HTTP__SECRET", SECRET)
    snapshot = project.snapshot()
    assert snapshot.config.http.signed_links
    assert_same_mails(snapshot)


def test_the_same_mails_with_an_address_in_the_unsubscribe_link(project: Project) -> None:
    project.edit(
        'unsubscribe_mailto = "contact@irev.fr"',
        'unsubscribe_mailto = "contact@irev.fr"'
        '\nunsubscribe_url = "https://www.irev.fr/desinscription?email={email}"',
    )
    assert_same_mails(project.snapshot())


def test_a_personal_join_link_is_rendered_in_full(project: Project) -> None:
    snapshot = project.snapshot()
    own = Registrant("anne@example.org", "Anne", "Martin", join_url="https://zoom.us/j/99?pwd=a")
    assert_same_mails(snapshot, [own, PEOPLE[0], own])


@pytest.mark.parametrize(
    ("template", "old", "new"),
    [
        # Templates that do more with a value than print it.
        ("reminder.txt", "Bonjour{{", "Bonjour {{ registrant.name|upper }}{{"),
        ("reminder.txt", "Bonjour{{", "{{ registrant.first_name[:1] }}. Bonjour{{"),
        (
            "reminder.txt",
            "Bonjour{{",
            "{% if registrant.name|length > 12 %}Madame, Monsieur,{% endif %}Bonjour{{",
        ),
        ("reminder.txt", "Bonjour{{", "{{ registrant.last_name == 'Martin' }} Bonjour{{"),
        ("reminder.subject.txt", "Rappel", "{{ registrant.name|truncate(9, True, '') }} Rappel"),
        # Places where French typography reads a value with what surrounds it.
        ("reminder.txt", "Bonjour{{", "({{ registrant.name }}) Bonjour{{"),
        ("reminder.txt", "Bonjour{{", "({{ registrant.first_name }}) Bonjour{{"),
        ("layout.html", "Bonjour{{", "({{ registrant.first_name }}) Bonjour{{"),
        ("reminder.txt", "Bonjour{{", "{{ registrant.name }} : Bonjour{{"),
        ("reminder.txt", "Bonjour{{", "{{ registrant.name }}-Lens Bonjour{{"),
        ("reminder.txt", "Bonjour{{", "l'{{ registrant.organisation }}'s Bonjour{{"),
        ("reminder.txt", "Pour ne plus", "{{ unsubscribe.url }}! Pour ne plus"),
        ("layout.html", "Bonjour{{", "<em>({{ registrant.name }})</em> Bonjour{{"),
        ("layout.html", "Bonjour{{", '<img alt="{{ registrant.name }}" src="x"> Bonjour{{'),
        # A style the CSS inliner puts on the span typography wraps a compound name in.
        ("layout.html", ".old {", "span { color: #000000; }\n  .old {"),
    ],
)
def test_templates_that_use_values_otherwise_give_the_same_mails(
    project: Project, template: str, old: str, new: str
) -> None:
    path = project.root / "templates" / template
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    assert_same_mails(project.snapshot(), ONE_SHAPE + PEOPLE)


def test_a_template_that_fails_only_on_the_markers_still_renders(project: Project) -> None:
    """A template that fails for nine-letter first names, as long as the marker."""
    path = project.root / "templates" / "reminder.txt"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace(
            "Bonjour{{",
            "{% if registrant.first_name|length == 9 %}{{ cycle.no_such_key }}{% endif %}Bonjour{{",
        ),
        encoding="utf-8",
    )
    short = [Registrant("anne@example.org", "Anne", "Martin"), Registrant("z@example.org", "Zoé")]
    assert_same_mails(project.snapshot(), short)


def test_most_mails_of_a_batch_come_from_a_stencil(project: Project) -> None:
    """What makes it fast: one full rendering per shape, not one per registrant."""
    snapshot = project.snapshot()
    slot = slot_of(snapshot, "2023-03-01", "1d")
    calls = 0
    render = snapshot.templates.render

    def counted(*args: object, **kwargs: object) -> str:
        nonlocal calls
        calls += 1
        return render(*args, **kwargs)  # type: ignore[arg-type]

    snapshot.templates.render = counted  # type: ignore[method-assign]
    for n in range(300):
        person = Registrant(f"elu{n}@example.org", f"Prénom{n}", f"Nom-{n}", "Maire", f"Ville {n}")
        snapshot.composer.compose(slot, person, slot.due_at)
    # The stencil (3 parts), then the first registrant and two probes in full (3 each).
    assert calls <= 12
