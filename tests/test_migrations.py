from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from databases import Database

from tests.support import make_settings, on_database
from widget_server import migrations, tables
from widget_server.cli import main
from widget_server.settings import Settings

T = TypeVar("T")
NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)

# (nullable, part of the primary key, type family) for each column of each table.
Schema = dict[str, dict[str, tuple[bool, bool, str]]]


def run(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    return on_database(settings, work, migrate=False)  # the tests here migrate themselves


def _family(declared: str) -> str:
    declared = declared.lower()
    for needle, family in (
        ("timestamp", "timestamp"),
        ("datetime", "timestamp"),
        ("date", "date"),
        ("int", "integer"),
        ("double", "float"),
        ("real", "float"),
        ("float", "float"),
        ("blob", "binary"),
        ("bytea", "binary"),
        ("bool", "boolean"),
        ("text", "text"),
        ("char", "text"),
    ):
        if needle in declared:
            return family
    return declared


def _expected_family(column: sa.Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, tables.UTCDateTime):
        return "timestamp"
    for sa_type, family in (
        (sa.Boolean, "boolean"),
        (sa.Integer, "integer"),
        (sa.Float, "float"),
        (sa.Date, "date"),
        (sa.LargeBinary, "binary"),
        (sa.String, "text"),
    ):
        if isinstance(kind, sa_type):
            return family
    return type(kind).__name__.lower()


def expected_schema() -> Schema:
    return {
        table.name: {c.name: (c.nullable or False, c.primary_key, _expected_family(c)) for c in table.columns}
        for table in tables.metadata.sorted_tables
    }


async def database_schema(database: Database) -> Schema:
    schema: Schema = {}
    if migrations.dialect_of(database) == "sqlite":
        names = await database.fetch_all(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 7) <> 'sqlite_'"
        )
        for name in (r._mapping["name"] for r in names):
            info = await database.fetch_all(f"PRAGMA table_info('{name}')")
            schema[name] = {
                row._mapping["name"]: (
                    not row._mapping["notnull"],
                    row._mapping["pk"] > 0,
                    _family(row._mapping["type"]),
                )
                for row in info
            }
    else:
        keys = {
            (r._mapping["table_name"], r._mapping["column_name"])
            for r in await database.fetch_all(
                "SELECT k.table_name, k.column_name FROM information_schema.table_constraints c "
                "JOIN information_schema.key_column_usage k ON k.constraint_name = c.constraint_name "
                "AND k.table_schema = c.table_schema "
                "WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = current_schema()"
            )
        }
        for r in await database.fetch_all(
            "SELECT table_name, column_name, is_nullable, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema()"
        ):
            table, column = r._mapping["table_name"], r._mapping["column_name"]
            schema.setdefault(table, {})[column] = (
                r._mapping["is_nullable"] == "YES",
                (table, column) in keys,
                _family(r._mapping["data_type"]),
            )
    return schema


def comparable(schema: Schema) -> Schema:
    # SQLite lets a TEXT primary key hold NULL; what matters there is that it is the key.
    return {
        table: {name: (nullable and not pk, pk, family) for name, (nullable, pk, family) in columns.items()}
        for table, columns in schema.items()
    }


async def fill_version_1(database: Database) -> None:
    await database.execute(
        tables.formations.insert().values(
            cle_ministere_educatif="CME-1",
            title="CAP Cuisine",
            city="Tours",
            postcode="37000",
            address="1 rue Nationale",
            cfa_siret="44306184100047",
            cfa_name="CFA Val de Loire",
            cfa_address="1 rue Nationale, 37000 Tours",
            cfa_phone="+33261911234",
            contact_email="rdv@cfa.example",
            updated_at=NOW,
        )
    )
    await database.execute(
        tables.offers.insert().values(
            offer_id="OFF-1",
            title="Commis de cuisine (H/F)",
            siret="73282932000074",
            company_name="Hôtel des Tanneurs",
            address="6 rue Colbert",
            city="Tours",
            postcode="37000",
            contact_email="direction@hotel.example",
            status="active",
            posted_on=dt.date(2026, 10, 1),
            application_count=4,
            updated_at=NOW,
        )
    )
    await database.execute(
        tables.companies.insert().values(
            siret="73282932000074",
            name="Hôtel des Tanneurs",
            address="6 rue Colbert",
            city="Tours",
            postcode="37000",
            naf_code="5510Z",
            hiring_score=0.77,
            contact_email="direction@hotel.example",
            updated_at=NOW,
        )
    )
    await database.execute(tables.contacts.insert().values(email="rdv@cfa.example", bounced_at=NOW))


def test_a_version_1_database_is_upgraded_in_place_without_losing_rows(settings: Settings) -> None:
    async def work(database: Database) -> None:
        assert await migrations.migrate(database, target=1) == [1]
        await fill_version_1(database)
        # The columns of version 1: later migrations may add columns, never lose rows.
        directory = (tables.formations, tables.offers, tables.companies, tables.contacts)
        columns = {
            t.name: [c for c in t.c if c.name not in ("closed_reason", "closed_at")] for t in directory
        }
        before = {t.name: await database.fetch_all(sa.select(*columns[t.name])) for t in directory}
        applied = await migrations.migrate(database)
        assert applied == [m.version for m in migrations.MIGRATIONS if m.version > 1]
        assert await migrations.applied_versions(database) == {m.version for m in migrations.MIGRATIONS}
        for table in directory:
            after = await database.fetch_all(sa.select(*columns[table.name]))
            assert [dict(r._mapping) for r in after] == [dict(r._mapping) for r in before[table.name]]
        [offer] = await database.fetch_all(tables.offers.select())
        assert offer._mapping["application_count"] == 4
        assert offer._mapping["updated_at"] == NOW

    run(settings, work)


def test_the_migrated_schema_is_exactly_tables_py(settings: Settings) -> None:
    async def work(database: Database) -> Schema:
        await migrations.migrate(database)
        return await database_schema(database)

    actual = comparable(run(settings, work))
    expected = comparable(expected_schema())
    assert sorted(actual) == sorted(expected)
    for table in expected:
        assert actual[table] == expected[table], table


def test_migrate_is_idempotent(settings: Settings) -> None:
    async def work(database: Database) -> tuple[list[int], list[int], int]:
        first = await migrations.migrate(database)
        second = await migrations.migrate(database)
        count = await database.fetch_val(sa.select(sa.func.count()).select_from(tables.schema_migrations))
        return first, second, count

    first, second, count = run(settings, work)
    assert first == [m.version for m in migrations.MIGRATIONS]
    assert second == []
    assert count == len(migrations.MIGRATIONS)


def test_migrate_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SECRET_KEY", "test-secret-key")
    assert main(["migrate"]) == 0
    assert f"Applied migrations: {[m.version for m in migrations.MIGRATIONS]}" in capsys.readouterr().out
    assert main(["migrate"]) == 0
    assert "already up to date" in capsys.readouterr().out
    assert run(settings, migrations.applied_versions) == {m.version for m in migrations.MIGRATIONS}


def test_version_6_keys_quotas_by_identity_and_renames_sent(settings: Settings) -> None:
    """Existing requests get their case-folded email and caller origin; `sent`
    becomes `delivered` where the recruiter's email went, `received` elsewhere."""

    async def work(database: Database) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        await migrations.migrate(database, target=5)
        requests = tables.contact_requests
        common = {
            "kind": "candidature",
            "target_kind": "offer",
            "target_ref": "O-1",
            "caller": "mon-site",
            "first_name": "Léa",
            "last_name": "Moreau",
            "phone": "+33612345678",
            "contact_email": "rh@example.org",
            "created_at": NOW,
            "updated_at": NOW,
        }
        for request_id, email, status in (
            ("delivered", "Lea@Example.org", "sent"),
            ("waiting", "lea@example.org", "sent"),
            ("answered", "LEA@EXAMPLE.ORG", "answered"),
        ):
            await database.execute(
                requests.insert().values(id=request_id, email=email, status=status, **common)
            )
        await database.execute(
            tables.outbox.insert().values(
                request_id="delivered",
                template="candidature_pro",
                recipient="rh@example.org",
                message_id="<1@x>",
                raw=b"",
                attach_cv=True,
                status="sent",
                attempts=1,
                next_attempt_at=NOW,
                created_at=NOW,
            )
        )
        keys = tables.idempotency_keys
        for key, request_id in (("form:abc", "waiting"), ("partner-1", "answered")):
            await database.execute(
                keys.insert().values(
                    caller="mon-site", key=key, fingerprint="f", request_id=request_id, created_at=NOW
                )
            )
        await migrations.migrate(database)
        rows = await database.fetch_all(
            sa.select(requests.c.id, requests.c.status, requests.c.email_key, requests.c.caller_origin)
        )
        idempotency = await database.fetch_all(sa.select(keys.c.key, keys.c.caller))
        return [dict(r._mapping) for r in rows], [dict(r._mapping) for r in idempotency]

    rows, idempotency = run(settings, work)
    assert sorted(rows, key=lambda r: r["id"]) == [
        {"id": "answered", "status": "answered", "email_key": "lea@example.org", "caller_origin": "key"},
        {"id": "delivered", "status": "delivered", "email_key": "lea@example.org", "caller_origin": "key"},
        {"id": "waiting", "status": "received", "email_key": "lea@example.org", "caller_origin": "form"},
    ]
    assert sorted(idempotency, key=lambda r: r["key"]) == [
        {"key": "form:abc", "caller": "form:mon-site"},
        {"key": "partner-1", "caller": "key:mon-site"},
    ]
