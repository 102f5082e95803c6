"""The database layer: connections taken only while a query or a transaction runs
(never while a request body is still arriving), reused on SQLite, statements
compiled once."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support import TEST_DATABASE_URL, make_settings
from widget_server import callers, migrations, tables
from widget_server import database as database_module
from widget_server.app import create_app
from widget_server.database import PooledSQLiteBackend, StatementCache, connections_in_use
from widget_server.resources import create_database, prepare_sqlite

BOUNDARY = "bench-boundary"


def _multipart(key: str) -> tuple[bytes, bytes]:
    fields = {
        "offer_id": "NOPE-1",
        "first_name": "Léa",
        "last_name": "Moreau",
        "email": "lea@example.org",
        "phone": "06 12 34 56 78",
    }
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    head = "".join(parts).encode()
    tail = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="cv"; filename="cv.pdf"\r\n'
        f"Content-Type: application/pdf\r\n\r\n%PDF-1.4\n%%EOF\n\r\n--{BOUNDARY}--\r\n"
    ).encode()
    return head, tail


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }


async def _call(app: Any, scope: dict[str, Any], receive: Any) -> int:
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


def test_no_connection_is_held_while_a_body_is_still_arriving(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    database = app.state.database

    async def scenario() -> tuple[int, int, int]:
        async with app.router.lifespan_context(app):
            key = await callers.create_key(database, "mon-site")
            head, tail = _multipart(key)
            waiting, release, done = asyncio.Event(), asyncio.Event(), asyncio.Event()
            messages = 0

            async def slow_receive() -> dict[str, Any]:
                nonlocal messages
                messages += 1
                if messages == 1:
                    return {"type": "http.request", "body": head, "more_body": True}
                if messages == 2:
                    # The client is slow: the rest of the body has not come yet.
                    waiting.set()
                    await release.wait()
                    return {"type": "http.request", "body": tail, "more_body": False}
                await done.wait()
                return {"type": "http.disconnect"}

            headers = [
                (b"authorization", f"Bearer {key}".encode()),
                (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
                (b"content-length", str(len(head) + len(tail)).encode()),
            ]
            upload = asyncio.create_task(
                _call(app, _scope("POST", "/api/v1/applications", headers), slow_receive)
            )
            await waiting.wait()
            held = connections_in_use(database)

            async def no_body() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            # Another request reaches the database meanwhile.
            health = await _call(app, _scope("GET", "/healthz", []), no_body)
            release.set()
            status = await upload
            done.set()
            return held, health, status

    held, health, status = asyncio.run(scenario())
    assert held == 0
    assert health == 200
    assert status < 500


@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="the SQLite pool")
def test_sqlite_connections_are_reused(tmp_path: Path) -> None:
    database = create_database(make_settings(tmp_path))

    async def scenario() -> int:
        await database.connect()
        try:
            for _ in range(5):
                await database.fetch_val("SELECT 1")
            async with database.transaction():
                await database.fetch_val("SELECT 2")
            backend = database._backend
            assert isinstance(backend, PooledSQLiteBackend)
            return backend.pool.opened
        finally:
            await database.disconnect()

    assert asyncio.run(scenario()) == 1


@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="the SQLite pool")
def test_a_connection_given_back_inside_a_transaction_is_closed(tmp_path: Path) -> None:
    database = create_database(make_settings(tmp_path))

    async def scenario() -> tuple[int, int]:
        await database.connect()
        try:
            backend = database._backend
            assert isinstance(backend, PooledSQLiteBackend)
            connection = await backend.pool.acquire()
            await connection.execute("BEGIN")
            await backend.pool.release(connection)
            idle = len(backend.pool.idle)
            await database.fetch_val("SELECT 1")
            return idle, backend.pool.opened
        finally:
            await database.disconnect()

    idle, opened = asyncio.run(scenario())
    assert idle == 0
    assert opened == 2


def test_a_statement_is_compiled_once_and_bound_each_time(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    database = create_database(settings)

    def offers_in(ids: list[str]) -> Any:
        return sa.select(tables.offers.c.offer_id).where(tables.offers.c.offer_id.in_(ids))

    async def scenario() -> tuple[list[list[str]], StatementCache]:
        await database.connect()
        try:
            await prepare_sqlite(database)
            await migrations.migrate(database)
            for n in range(3):
                await database.execute(
                    tables.offers.insert().values(
                        offer_id=f"O-{n}",
                        title="Vendeur",
                        siret="73282932000074",
                        company_name="Boulangerie",
                        address="1 rue",
                        city="Lyon",
                        postcode="69001",
                        status="active",
                        posted_on=sa.func.current_date(),
                        application_count=0,
                        updated_at=sa.func.current_timestamp(),
                    )
                )
            statements: StatementCache = database._backend.statements
            before = statements.misses
            found = [
                sorted(r._mapping["offer_id"] for r in await database.fetch_all(offers_in(ids)))
                for ids in (["O-0"], ["O-1", "O-2"], ["O-2", "O-0", "X"])
            ]
            assert statements.misses == before + 1
            return found, statements
        finally:
            await database.disconnect()

    found, statements = asyncio.run(scenario())
    assert found == [["O-0"], ["O-1", "O-2"], ["O-0", "O-2"]]
    assert statements.hits >= 2


# --- write transactions run as scripts (database.run_script) ---------------------


def _key_script(database: Any, key: str, *, fail: bool) -> Any:
    """Inserts an idempotency key, then raises (after its write) when `fail`."""
    statements = database_module.Prepared(
        tables.idempotency_keys.insert().values(
            caller=sa.bindparam("caller"),
            key=sa.bindparam("key"),
            fingerprint="f",
            request_id="r",
            created_at=sa.bindparam("created_at", type_=tables.UTCDateTime()),
        ),
        database_module.dialect(database),
    )
    args = statements.args({"caller": "c", "key": key, "created_at": dt.datetime.now(dt.UTC)})
    yield [(statements.sql, args, 0)]
    if fail:
        raise ValueError(key)
    return key


def test_scripts_that_queue_for_the_writer_share_a_commit_and_a_failing_one_stores_nothing(
    tmp_path: Path,
) -> None:
    database = create_database(make_settings(tmp_path))

    async def scenario() -> tuple[list[Any], list[str], int]:
        await database.connect()
        try:
            await prepare_sqlite(database)
            await migrations.migrate(database)
            sqlite = database.url.dialect == "sqlite"
            before = database_module._Batches.of(database).batches if sqlite else 0
            # The writer busy: the three scripts queue, then (SQLite) run in one transaction.
            async with database_module.writer_lock(database):
                runs = [
                    asyncio.ensure_future(
                        database_module.run_script(database, _key_script(database, key, fail=key == "b"))
                    )
                    for key in ("a", "b", "c")
                ]
                await asyncio.sleep(0.01)
            outcomes = await asyncio.gather(*runs, return_exceptions=True)
            keys = await database.fetch_all(sa.select(tables.idempotency_keys.c.key))
            batches = database_module._Batches.of(database).batches - before if sqlite else 1
            return (
                [o if isinstance(o, str) else repr(o) for o in outcomes],
                sorted(r._mapping["key"] for r in keys),
                batches,
            )
        finally:
            await database.disconnect()

    outcomes, keys, batches = asyncio.run(scenario())
    assert outcomes == ["a", "ValueError('b')", "c"]
    assert keys == ["a", "c"]  # b's own write rolled back, not the others'
    assert batches == 1


def test_a_statement_that_fails_in_a_batch_fails_only_its_script(tmp_path: Path) -> None:
    database = create_database(make_settings(tmp_path))

    async def scenario() -> tuple[list[str], list[str]]:
        await database.connect()
        try:
            await prepare_sqlite(database)
            await migrations.migrate(database)
            async with database_module.writer_lock(database):
                # The second "a" breaks the primary key: an error of the database itself.
                runs = [
                    asyncio.ensure_future(
                        database_module.run_script(database, _key_script(database, key, fail=False))
                    )
                    for key in ("a", "a", "c")
                ]
                await asyncio.sleep(0.01)
            outcomes = await asyncio.gather(*runs, return_exceptions=True)
            keys = await database.fetch_all(sa.select(tables.idempotency_keys.c.key))
            return [o if isinstance(o, str) else type(o).__name__ for o in outcomes], sorted(
                r._mapping["key"] for r in keys
            )
        finally:
            await database.disconnect()

    outcomes, keys = asyncio.run(scenario())
    assert outcomes[2] == "c"
    # One of the two "a" is refused by the database (which one: PostgreSQL runs them side by side).
    [refused] = [o for o in outcomes[:2] if o != "a"]
    assert refused.endswith("Error") and "a" in outcomes[:2]
    assert keys == ["a", "c"]
