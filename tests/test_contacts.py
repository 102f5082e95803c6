"""The one way to record what the service knows about a directory contact."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from databases import Database

from tests.support import make_settings
from widget_server import contacts, migrations, tables
from widget_server.resources import create_database

EARLY = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
LATE = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)


def run(tmp_path: Path, work: Callable[[Database], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        database = create_database(make_settings(tmp_path))
        await database.connect()
        try:
            await migrations.migrate(database)
            return await work(database)
        finally:
            await database.disconnect()

    return asyncio.run(go())


def test_a_mark_without_overwrite_never_moves_a_recorded_date(tmp_path: Path) -> None:
    async def work(database: Database) -> list[tuple[Any, ...]]:
        email = "rh@example.org"
        await contacts.mark(database, email, {"company_opt_out_at": EARLY})
        await contacts.mark(database, email, {"company_opt_out_at": LATE}, overwrite=False)
        await contacts.mark(database, email, {"bounced_at": LATE, "bounce_reason": "550"}, overwrite=False)
        [first] = await database.fetch_all(tables.contacts.select())
        await contacts.mark(database, email, {"bounced_at": EARLY, "bounce_reason": "551"})
        [second] = await database.fetch_all(tables.contacts.select())
        return [
            (first._mapping["company_opt_out_at"], first._mapping["bounced_at"]),
            (second._mapping["bounced_at"], second._mapping["bounce_reason"]),
        ]

    assert run(tmp_path, work) == [(EARLY, LATE), (EARLY, "551")]


@pytest.mark.parametrize("column", ["email", "company_opt_out_at = NULL, email", "nope"])
def test_only_contact_marks_reach_the_sql_text(tmp_path: Path, column: str) -> None:
    async def work(database: Database) -> list[Any]:
        with pytest.raises(ValueError, match="not a contact mark"):
            await contacts.mark(database, "rh@example.org", {column: EARLY})
        with pytest.raises(ValueError, match="not a contact mark"):
            await contacts.clear(database, "rh@example.org", column)
        return list(await database.fetch_all(tables.contacts.select()))

    assert run(tmp_path, work) == []
