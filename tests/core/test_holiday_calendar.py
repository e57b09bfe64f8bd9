"""The configured country's holidays, read without the registry of every country."""

import json
import subprocess
import sys
from datetime import date

import holidays
import pytest

from reminder.core.holiday_calendar import public_holidays

# (country, subdivision, language): FR and its aliases, subdivisions, other countries, a
# country whose rules import another's (American Samoa, the United States), and errors.
CASES = [
    ("FR", None, "fr"),
    ("FRA", None, "fr"),
    ("France", None, "en_US"),
    ("FR", "57", "fr"),  # Moselle: Good Friday and St Stephen's Day
    ("FR", "GP", "fr"),
    ("DE", "BY", "de"),
    ("DE", None, "fr"),
    ("BE", None, "fr"),
    ("US", "CA", None),
    ("AS", None, None),
    ("XX", None, "fr"),
    ("fr", None, "fr"),
    ("FR", "ZZ", "fr"),
    ("DE", "XX", "de"),
]

PROBE = """
import json, sys
import holidays
from reminder.core.holiday_calendar import public_holidays

def answer(get, country, subdiv, language):
    try:
        found = get(country, subdiv=subdiv, years=[2023, 2024], language=language)
    except NotImplementedError as exc:
        return f"NotImplementedError: {exc}"
    return {day.isoformat(): name for day, name in dict(found).items()}

cases = json.loads(sys.argv[1])
ours = [answer(public_holidays, *case) for case in cases[:6]]
registry_loaded_early = "holidays.countries" in sys.modules
ours += [answer(public_holidays, *case) for case in cases[6:]]
theirs = [answer(holidays.country_holidays, *case) for case in cases]
print(json.dumps([registry_loaded_early, ours, theirs]))
"""


def test_the_fast_way_gives_the_packages_holidays_and_errors() -> None:
    output = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(CASES)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    registry_loaded_early, ours, theirs = json.loads(output)
    assert not registry_loaded_early  # France and Germany came without the other 248
    assert ours == theirs
    french = ours[0]
    assert french["2023-11-01"] == "Toussaint"
    assert french["2023-07-14"] == "Fête nationale"
    assert french["2024-05-08"] == "Fête de la Victoire"
    assert len(french) == 22
    assert "2023-04-07" in ours[3] and "2023-04-07" not in french  # Good Friday in Moselle
    assert ours[10] == "NotImplementedError: Country XX not available"
    assert ours[12].startswith("NotImplementedError: ")


@pytest.mark.parametrize(("country", "subdiv", "language"), CASES)
def test_with_every_country_loaded_the_answer_is_the_same(
    country: str, subdiv: str | None, language: str | None
) -> None:
    def answer(get: object) -> object:
        try:
            return dict(get(country, subdiv=subdiv, years=[2023], language=language))  # type: ignore[operator]
        except NotImplementedError as exc:
            return str(exc)

    holidays.country_holidays("US")  # the registry of every country is loaded now
    assert answer(public_holidays) == answer(holidays.country_holidays)


def test_a_session_on_toussaint_is_marked_with_the_french_name() -> None:
    found = public_holidays("FR", subdiv=None, years=[2023], language="fr")
    assert found[date(2023, 11, 1)] == "Toussaint"
