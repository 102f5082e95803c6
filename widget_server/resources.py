"""Objects shared by the whole process: the database and the page templates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from databases import Database
from starlette.templating import Jinja2Templates

from .database import ServiceDatabase, writer_lock
from .local_time import date_fr, datetime_fr, short_datetime_fr
from .settings import Settings

PAGES_DIR = Path(__file__).parent / "templates"


def create_database(settings: Settings) -> Database:
    """The database of the service: connections reused, statements compiled once
    (see database.py). A request takes a connection for one query or one
    transaction at a time, never while its body is still arriving."""
    url = settings.database_url
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Writers wait for each other instead of failing with "database is locked".
        return ServiceDatabase(url, timeout=30)
    return ServiceDatabase(url, min_size=1, max_size=10)


def create_templates(settings: Settings) -> Jinja2Templates:
    templates = Jinja2Templates(directory=PAGES_DIR)
    templates.env.globals["public_url"] = settings.public_url
    templates.env.globals["operator_name"] = settings.operator_name
    # Times a person reads are in Paris time (local_time.py), never UTC.
    templates.env.filters["date_fr"] = date_fr
    templates.env.filters["datetime_fr"] = datetime_fr
    templates.env.filters["short_datetime_fr"] = short_datetime_fr
    return templates


async def prepare_sqlite(database: Database) -> None:
    """WAL lets readers go on while one writer writes; the setting sticks to the file."""
    if database.url.dialect == "sqlite" and database.url.database not in ("", ":memory:"):
        await database.execute("PRAGMA journal_mode=WAL")


@asynccontextmanager
async def write_transaction(database: Database) -> AsyncIterator[None]:
    """A transaction that holds the write lock from its first statement.

    SQLite has one writer at a time. Its plain BEGIN starts as a reader, and a
    transaction that reads, then writes after another connection committed fails
    at once with "database is locked"; a no-op write first makes it wait its turn.
    Writers of this process also queue on an asyncio lock: first come, first
    served, instead of SQLite's busy handler sleeping and retrying.
    """
    if database.url.dialect != "sqlite":
        async with database.transaction():
            yield
        return
    async with writer_lock(database), database.transaction():
        await database.execute("UPDATE schema_migrations SET version = version WHERE 0")
        yield
