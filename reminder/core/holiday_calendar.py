"""A country's public holidays, loading only that country's rules from the holidays package.

`holidays.country_holidays("FR")` imports the package's `countries` registry, and with it
the rules of all 250 countries (about a third of what `reminder plan` took to start).
Here the configured country's module is read on its own; the answer is the same, and any
country, code or alias the registry does not list takes the package's own way, so its
errors read as before.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable
from datetime import date
from functools import cache
from pathlib import Path
from types import ModuleType

import holidays
from holidays.registry import COUNTRIES

__all__ = ["public_holidays"]


def public_holidays(
    country: str, *, subdiv: str | None, years: Iterable[int], language: str | None
) -> dict[date, str]:
    """The public holidays of `country` (ISO code, alias or class name) in `years`.

    Raises NotImplementedError, as `holidays.country_holidays` does, for an unknown country
    or subdivision.
    """
    module = _module_of(country)
    if module is None:
        calendar = holidays.country_holidays(country, subdiv=subdiv, years=years, language=language)
        return dict(calendar.items())
    # The arguments and the error of holidays.country_holidays, which calls the class so.
    rules = getattr(_country_rules(module), country, None)
    if rules is None:
        raise NotImplementedError(f"Country {country} not available")
    calendar = rules(
        years=years,
        subdiv=subdiv,
        expand=True,
        observed=True,
        prov=None,
        state=None,
        language=language,
        categories=None,
    )
    return dict(calendar.items())


def _module_of(country: str) -> str | None:
    """The module of the holidays package's countries that defines `country`, if listed."""
    for module, names in COUNTRIES.items():
        if country in names:
            return module
    return None


@cache
def _country_rules(module: str) -> ModuleType:
    name = f"holidays.countries.{module}"
    if "holidays.countries" in sys.modules:  # every country is loaded already
        return importlib.import_module(name)
    # The module alone, without its package's __init__ (which imports every country). It is
    # not entered in sys.modules: a country that imports another (American Samoa imports
    # the United States) then loads the package the ordinary way, without finding itself
    # half-initialised there.
    path = Path(holidays.__file__).parent / "countries" / f"{module}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - the package ships its sources
        return importlib.import_module(name)
    rules = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rules)
    return rules
