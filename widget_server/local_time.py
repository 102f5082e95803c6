"""Times as the people reading them live them: candidates, recruiters and CFAs are
in France, so pages and emails show Europe/Paris time (stored times are UTC)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")
