"""Times as the people reading them live them: candidates, recruiters and CFAs are
in France, so pages, emails and the operator's command output show Europe/Paris
time (stored times are UTC). Every time a person reads goes through here."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")

_MONTHS = (
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


def in_paris(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: its time zone is unknown")
    return moment.astimezone(PARIS)


def date_fr(value: dt.date | dt.datetime) -> str:
    """`2 novembre 2026`: the day in Paris (a datetime at 23:30 UTC is the next day there)."""
    if isinstance(value, dt.datetime):
        value = in_paris(value)
    return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"


def datetime_fr(moment: dt.datetime) -> str:
    """`2 novembre 2026 à 10 h 05`, in Paris time."""
    local = in_paris(moment)
    return f"{date_fr(local)} à {local.hour} h {local.minute:02d}"


def short_datetime_fr(moment: dt.datetime) -> str:
    """`29/11/2026 à 01:55`, in Paris time: a status line on a page ("… le 29/11/2026 à 01:55")."""
    local = in_paris(moment)
    return f"{local:%d/%m/%Y} à {local:%H:%M}"


def iso_paris(moment: dt.datetime | None) -> str | None:
    """ISO 8601 with Paris's offset, for machine-readable output a person reads too."""
    return in_paris(moment).isoformat() if moment is not None else None
