"""Directory import and eligibility throughput, each beside a baseline measured in
the same run. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_import.py [ROWS]
    .venv/bin/python bench/bench_import.py --scaling [sqlite] [postgresql]

Import: ROWS (default 100,000) generated offers in a CSV file, through
`directory.import_file` into a fresh SQLite file, then the same file again (every
row unchanged). Baseline: the same CSV read with `csv.reader` and inserted with
the stdlib driver's `executemany`, no checks, same batch size and one transaction
per batch, into another fresh SQLite file: the floor set by SQLite itself.

On PostgreSQL (`measure(rows, "postgresql")`, in `bench/run`): the same import
into a fresh database; baseline: the same CSV read with `csv.reader` and
inserted with asyncpg's `executemany` (a plain INSERT, the two date columns and
`updated_at` made `date`/`datetime` objects, which asyncpg requires, empty cells
NULL; no other check), same batches, one transaction each, into another fresh
database. The note adds asyncpg's COPY of the same rows into a third one: the
server's own floor, which no upsert reaches.

Eligibility: batches of 50 targets (40 offers, 5 companies, 5 formations) against
the imported directory, through `eligibility.check_many` and through the HTTP API
(TestClient). Baseline: the same 50 targets asked one by one with
`eligibility.check`, one query each - what a loader without batching would cost.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from databases import Database
from support import Row, database_url

from widget_server import cli, directory, eligibility
from widget_server.settings import load_settings
from widget_server.targets import Target, is_valid_siret

COMPANIES = 20_000
GOAL = 0.50
BATCH = 50
LOOP_SECONDS = 3.0
LOOP_MAX = 2_000
CITIES = [
    ("Lyon", "69003"),
    ("Nantes", "44000"),
    ("Bordeaux", "33000"),
    ("Lille", "59000"),
    ("Toulouse", "31000"),
    ("Rennes", "35000"),
    ("Strasbourg", "67000"),
    ("Caen", "14000"),
]
TITLES = [
    "Apprenti boulanger (H/F)",
    "Apprenti mécanicien automobile (H/F)",
    "Développeur web en alternance (H/F)",
    "Assistant comptable en alternance (H/F)",
    "Commis de cuisine en apprentissage (H/F)",
    "Apprenti électricien (H/F)",
]
HEADER = [
    "offer_id",
    "title",
    "siret",
    "company_name",
    "address",
    "postcode",
    "city",
    "status",
    "posted_on",
    "expires_on",
    "contact_email",
]


def siret(n: int) -> str:
    base = f"8{n:012d}"
    return next(base + str(d) for d in range(10) if is_valid_siret(base + str(d)))


def generate(path: Path, rows: int) -> list[str]:
    sirets = [siret(n) for n in range(COMPANIES)]
    ids = []
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for n in range(rows):
            company = n % COMPANIES
            city, postcode = CITIES[n % len(CITIES)]
            offer_id = f"B-{n:07d}"
            ids.append(offer_id)
            writer.writerow(
                [
                    offer_id,
                    TITLES[n % len(TITLES)],
                    sirets[company],
                    f"Entreprise {company}",
                    f"{n % 150 + 1} rue de la République",
                    postcode,
                    city,
                    "closed" if n % 20 == 0 else "active",
                    f"2026-{n % 12 + 1:02d}-{n % 28 + 1:02d}",
                    "" if n % 3 else "2027-06-30",
                    f"rh{company}@entreprise-{company}.example",
                ]
            )
    return ids


def timed(label: str, rows: int, seconds: float) -> float:
    rate = rows / seconds
    print(f"  {label:<46} {rows:>8,} rows in {seconds:6.2f} s  {rate:>10,.0f} rows/s")
    return rate


async def with_database(url: str, work: Callable[[Database], Awaitable[Any]]) -> Any:
    settings = load_settings({"DATABASE_URL": url, "SECRET_KEY": "bench"}, env_file=None)
    return await cli.with_database(settings, work)


def raw_executemany(csv_path: Path, db_path: Path) -> float:
    asyncio.run(with_database(f"sqlite+aiosqlite:///{db_path}", lambda db: asyncio.sleep(0)))
    connection = sqlite3.connect(db_path, isolation_level=None)
    sql = f"INSERT INTO offers ({', '.join(HEADER)}, updated_at) VALUES ({', '.join('?' for _ in HEADER)}, ?)"
    now = "2026-11-28 12:00:00.000000"
    start = time.perf_counter()
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        batch: list[list[str | None]] = []
        for cells in reader:
            batch.append([*(c or None for c in cells), now])
            if len(batch) == directory.BATCH_SIZE:
                connection.execute("BEGIN")
                connection.executemany(sql, batch)
                connection.execute("COMMIT")
                batch = []
        if batch:
            connection.execute("BEGIN")
            connection.executemany(sql, batch)
            connection.execute("COMMIT")
    elapsed = time.perf_counter() - start
    connection.close()
    return elapsed


async def loop(work: Callable[[], Awaitable[Any]]) -> tuple[int, float]:
    count, start = 0, time.perf_counter()
    while count < LOOP_MAX and time.perf_counter() - start < LOOP_SECONDS:
        await work()
        count += 1
    return count, time.perf_counter() - start


def report_loop(label: str, count: int, seconds: float) -> float:
    rate = count / seconds
    print(f"  {label:<46} {rate:>8,.0f} batches/s  {rate * BATCH:>10,.0f} targets/s")
    return rate


def bench_eligibility(url: str, offer_ids: list[str]) -> None:
    rng = random.Random(7)
    demo = directory.DEMO_DIR

    async def prepare(database: Database) -> list[list[Target]]:
        for kind in ("companies", "formations"):
            await directory.import_file(database, kind, demo / f"{kind}.csv")
        companies = [r[0] for r in csv.reader((demo / "companies.csv").open(encoding="utf-8"))][1:]
        formations = [r[0] for r in csv.reader((demo / "formations.csv").open(encoding="utf-8"))][1:]
        return [
            [Target("offer", rng.choice(offer_ids)) for _ in range(40)]
            + [Target("company", rng.choice(companies)) for _ in range(5)]
            + [Target("formation", rng.choice(formations)) for _ in range(5)]
            for _ in range(64)
        ]

    batches: list[list[Target]] = asyncio.run(with_database(url, prepare))

    async def measure(database: Database) -> tuple[float, float]:
        turn = iter(range(10**9))

        async def batched() -> None:
            await eligibility.check_many(
                database, batches[next(turn) % len(batches)], max_offer_applications=80
            )

        async def one_by_one() -> None:
            for target in batches[next(turn) % len(batches)]:
                await eligibility.check(database, target, max_offer_applications=80)

        many = report_loop("check_many, 50 targets, one query per kind", *await loop(batched))
        single = report_loop("baseline: check() x 50, one query per target", *await loop(one_by_one))
        return many, single

    many, single = asyncio.run(with_database(url, measure))

    from starlette.testclient import TestClient

    from widget_server.app import create_app

    settings = load_settings(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "bench",
            "RATE_LIMIT": "1000000/minute",
            "DEMO_DATA": "false",
            "LOG_LEVEL": "WARNING",
        },
        env_file=None,
    )
    with TestClient(create_app(settings)) as client:
        queries: list[list[tuple[str, str | int | float | bool | None]]] = [
            [("target", str(t)) for t in batch] for batch in batches
        ]
        count, start = 0, time.perf_counter()
        while count < LOOP_MAX and time.perf_counter() - start < LOOP_SECONDS:
            response = client.get("/api/v1/eligibility", params=queries[count % len(queries)])
            assert response.status_code == 200, response.text
            count += 1
        report_loop("GET /api/v1/eligibility (TestClient), 50 targets", count, time.perf_counter() - start)
    print(f"  batched / one-by-one: {many / single:.1f}x")


def raw_postgresql(csv_path: Path, url: str, *, copy: bool = False) -> float:
    """The baseline on PostgreSQL: `executemany` of a plain INSERT (or, with
    `copy`, COPY) of the CSV's rows, batch by batch, one transaction each."""
    import asyncpg

    asyncio.run(with_database(url, lambda db: asyncio.sleep(0)))
    dates = [HEADER.index("posted_on"), HEADER.index("expires_on")]
    columns = [*HEADER, "updated_at"]
    placeholders = ", ".join(f"${n + 1}" for n in range(len(columns)))
    sql = f"INSERT INTO offers ({', '.join(columns)}) VALUES ({placeholders})"
    now = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)

    async def run(connection: Any) -> float:
        start = time.perf_counter()
        with csv_path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            next(reader)
            batch: list[list[Any]] = []
            for cells in reader:
                row: list[Any] = [c or None for c in cells]
                for index in dates:
                    if row[index] is not None:
                        row[index] = dt.date.fromisoformat(row[index])
                row.append(now)
                batch.append(row)
                if len(batch) == directory.BATCH_SIZE:
                    await write(connection, batch)
                    batch = []
            if batch:
                await write(connection, batch)
        return time.perf_counter() - start

    async def write(connection: Any, batch: list[list[Any]]) -> None:
        async with connection.transaction():
            if copy:
                await connection.copy_records_to_table("offers", records=batch, columns=columns)
            else:
                await connection.executemany(sql, batch)

    async def connected() -> float:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return await run(connection)
        finally:
            await connection.close()

    return asyncio.run(connected())


def measure(rows: int = 100_000, database: str = "sqlite") -> list[Row]:
    """The import of `rows` fresh offers beside csv.reader + the driver's executemany."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        csv_path = folder / "offers.csv"
        generate(csv_path, rows)

        async def first(database: Database) -> float:
            start = time.perf_counter()
            report = await directory.import_file(database, "offers", csv_path)
            assert report.inserted == rows and not report.rejected, report.summary()
            return time.perf_counter() - start

        note = f"{COMPANIES:,} distinct contacts"
        if database == "sqlite":
            seconds = asyncio.run(with_database(f"sqlite+aiosqlite:///{folder / 'import.db'}", first))
            baseline = raw_executemany(csv_path, folder / "raw.db")
        else:
            with database_url(database, folder, "import") as url:
                seconds = asyncio.run(with_database(url, first))
            with database_url(database, folder, "raw") as url:
                baseline = raw_postgresql(csv_path, url)
            with database_url(database, folder, "copy") as url:
                copied = raw_postgresql(csv_path, url, copy=True)
            note += f"; asyncpg COPY of the same rows: {rows / copied:,.0f} rows/s"
    return [
        Row(
            f"directory import, {rows:,} offers",
            database,
            rows / seconds,
            rows / baseline,
            "rows/s",
            GOAL,
            note,
        )
    ]


def scaling(databases: list[str], sizes: list[int]) -> None:
    """`measure` for each directory size: how the import's cost grows."""
    import os

    print("| offers | db | ours | csv.reader + executemany | ratio | µs per row (ours) | load average |")
    print("|---|---|---|---|---|---|---|")
    for rows in sizes:
        for database in databases:
            [row] = measure(rows, database)
            print(
                f"| {rows:,} | {database} | {row.ours:,.0f} rows/s | {row.baseline:,.0f} rows/s | "
                f"{row.ratio:.2f} | {1e6 / row.ours:.1f} | {os.getloadavg()[0]:.1f} |",
                flush=True,
            )


def main() -> None:
    if sys.argv[1:2] == ["--scaling"]:
        # bench_import.py --scaling [sqlite|postgresql]... : 10,000, 100,000 and 1,000,000 offers
        scaling(sys.argv[2:] or ["sqlite"], [10_000, 100_000, 1_000_000])
        return
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        csv_path = folder / "offers.csv"
        start = time.perf_counter()
        offer_ids = generate(csv_path, rows)
        print(
            f"Generated {rows:,} offers ({csv_path.stat().st_size / 1e6:.1f} MB) "
            f"in {time.perf_counter() - start:.1f} s; batch size {directory.BATCH_SIZE}"
        )

        url = f"sqlite+aiosqlite:///{folder / 'import.db'}"

        async def first(database: Database) -> tuple[directory.ImportReport, float]:
            start = time.perf_counter()
            report = await directory.import_file(database, "offers", csv_path)
            return report, time.perf_counter() - start

        print("Import (SQLite):")
        report, seconds = asyncio.run(with_database(url, first))
        assert report.inserted == rows and not report.rejected, report.summary()
        imported = timed("import_file, fresh database (all inserted)", rows, seconds)
        baseline = timed(
            "baseline: csv.reader + sqlite3 executemany", rows, raw_executemany(csv_path, folder / "raw.db")
        )
        report, seconds = asyncio.run(with_database(url, first))
        assert report.unchanged == rows, report.summary()
        timed("import_file again (all unchanged)", rows, seconds)
        print(
            f"  import_file / raw executemany: {imported / baseline:.2f} "
            f"(the import runs at {imported / baseline:.0%} of the raw insert's speed)"
        )

        print("Eligibility (SQLite, directory above plus the demo companies and formations):")
        bench_eligibility(url, offer_ids)


if __name__ == "__main__":
    main()
