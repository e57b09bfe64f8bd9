"""Dates, times and delays in the reader's language, through Babel ("mercredi 1er mars 2023")."""

from __future__ import annotations

from datetime import datetime, timedelta

from .model import Lead

_NUMBERS_FR = {1: "une", 2: "deux", 3: "trois"}
# French, the language of the cycles, is written from CLDR's names as Babel gives them
# (tests/test_wording.py compares the two day by day): loading Babel and its locale data
# took longer than the rest of `reminder plan`. Any other language goes to Babel.
_WEEKDAYS_FR = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
_MONTHS_FR = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


def long_date(moment: datetime, language: str, *, year: bool = True) -> str:
    """'mercredi 1er mars 2023': French writes the first of the month as an ordinal."""
    if language == "fr":
        # Babel's "EEEE d MMMM y", with "1er" for the first.
        day = "1er" if moment.day == 1 else str(moment.day)
        words = f"{_WEEKDAYS_FR[moment.weekday()]} {day} {_MONTHS_FR[moment.month - 1]}"
        return f"{words} {moment.year}" if year else words
    from babel.dates import format_date

    return format_date(moment.date(), "full" if year else "EEEE d MMMM", locale=language)


def time_of_day(moment: datetime, language: str) -> str:
    """'17h00' in French; the locale's short time elsewhere.

    Babel reads a naive datetime as UTC, so it is given the wall time alone, already
    converted to the session's zone by the caller: the server's zone never shows.
    """
    if language == "fr":
        return f"{moment.hour}h{moment.minute:02d}"  # Babel's "H'h'mm"
    from babel.dates import format_time

    return format_time(moment.time(), "short", locale=language)


def date_at_time(moment: datetime, language: str) -> str:
    """'mercredi 1er mars 2023 à 17h00'; the locale's own joining elsewhere
    ('Wednesday, March 1, 2023, 5:00 PM')."""
    day, hour = long_date(moment, language), time_of_day(moment, language)
    if language == "fr":
        return f"{day} à {hour}"
    from babel.dates import get_datetime_format

    return str(get_datetime_format("long", locale=language)).replace("'", "").format(hour, day)


def time_range(start: datetime, end: datetime, language: str) -> str:
    return f"{time_of_day(start, language)} – {time_of_day(end, language)}"


def lead_words(lead: Lead, language: str) -> str:
    """What a lead means to the reader when sent on time: 'dans 7 jours', 'demain'."""
    if language != "fr":
        from babel.dates import format_timedelta

        return format_timedelta(lead.delta, add_direction=True, locale=language)
    if lead.unit == "d" and lead.amount == 1:
        return "demain"
    if lead.unit == "d" and lead.amount == 2:
        return "après-demain"
    unit = {"s": "seconde", "m": "minute", "h": "heure", "d": "jour", "w": "semaine"}[lead.unit]
    count = (
        "une"
        if lead.amount == 1 and unit in ("seconde", "minute", "heure", "semaine")
        else ("un" if lead.amount == 1 else str(lead.amount))
    )
    return f"dans {count} {unit}{'s' if lead.amount > 1 else ''}"


def relative_day(now: datetime, start: datetime, language: str) -> str:
    """When the session is, seen from the moment the mail is written ('demain').

    Computed from the real send time, so a reminder that goes out late never says
    'demain' on the day itself.
    """
    local_now = now.astimezone(start.tzinfo)
    delta = start - local_now
    days = (start.date() - local_now.date()).days
    if language != "fr":
        from babel.dates import format_timedelta

        return format_timedelta(delta, add_direction=True, locale=language)
    minutes = round(delta.total_seconds() / 60)
    if minutes <= 0:
        return "maintenant"
    if minutes < 50:
        return f"dans {minutes} minute{'s' if minutes > 1 else ''}"
    if minutes <= 70:
        return "dans une heure"
    if delta < timedelta(hours=3, minutes=30):
        hours = round(minutes / 60)
        return f"dans {_NUMBERS_FR.get(hours, str(hours))} heures"
    if days == 0:
        return "aujourd'hui"
    if days == 1:
        return "demain"
    if days == 2:
        return "après-demain"
    if days % 7 == 0:
        weeks = days // 7
        return f"dans {_NUMBERS_FR.get(weeks, str(weeks))} semaine{'s' if weeks > 1 else ''}"
    return f"dans {days} jours"
