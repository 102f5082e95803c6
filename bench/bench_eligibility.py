"""`GET /api/v1/eligibility` under wrk, beside a bare Starlette JSON endpoint, both
served by uvicorn on 127.0.0.1 in the same run and hit by the same wrk script.
Prints figures; asserts nothing.

    .venv/bin/python bench/bench_eligibility.py [--offers 20000] [--seconds 5] [--scaling]
    … --database postgresql   # a database of its own on BENCH_DATABASE_URL's server

The directory: OFFERS generated offers plus the demo companies and formations.
wrk (16 connections, one thread) cycles through BATCHES different pages of 50
targets (40 offers, 5 companies, 5 formations): a listing page's question. The
baseline answers every request with the same JSON body (50 results), built once.
`--scaling` also measures 1, 10, 50 and 100 targets per batch, with the cache
(as served) and without it (every target read from the database).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import tempfile
from pathlib import Path
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support import Row, Server, alternate, bench_settings, database_url, wrk

from widget_server import cli, directory
from widget_server.app import create_app
from widget_server.settings import Settings

BATCHES = 200
CONNECTIONS = 16
GOAL = 0.50


def _generate_offers(path: Path, count: int) -> list[str]:
    from bench_import import generate

    return generate(path, count)


def prepare(settings: Settings, folder: Path, offers: int) -> tuple[list[str], list[str], list[str]]:
    offer_ids = _generate_offers(folder / "offers.csv", offers)
    demo = directory.DEMO_DIR

    async def load(database: object) -> None:
        for kind in ("companies", "formations"):
            await directory.import_file(database, kind, demo / f"{kind}.csv")  # type: ignore[arg-type]
        await directory.import_file(database, "offers", folder / "offers.csv")  # type: ignore[arg-type]

    asyncio.run(cli.with_database(settings, load))
    companies = [r[0] for r in csv.reader((demo / "companies.csv").open(encoding="utf-8"))][1:]
    formations = [r[0] for r in csv.reader((demo / "formations.csv").open(encoding="utf-8"))][1:]
    return offer_ids, companies, formations


def batches(
    ids: tuple[list[str], list[str], list[str]], size: int, rng: random.Random, pages: int = BATCHES
) -> list[list[str]]:
    offers, companies, formations = ids
    share = max(1, size // 10) if size >= 10 else 0
    result = []
    for _ in range(pages):
        batch = [f"company:{rng.choice(companies)}" for _ in range(share)]
        batch += [f"formation:{rng.choice(formations)}" for _ in range(share)]
        batch += [f"offer:{rng.choice(offers)}" for _ in range(size - len(batch))]
        result.append(batch)
    return result


def wrk_script(folder: Path, pages: list[list[str]]) -> Path:
    paths = ["/api/v1/eligibility?" + urlencode([("target", t) for t in page]) for page in pages]
    script = folder / f"pages-{len(pages[0])}.lua"
    script.write_text(
        "local paths = {"
        + ", ".join(json.dumps(p) for p in paths)
        + "}\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n"
        + '  return wrk.format("GET", paths[i])\nend\n'
    )
    return script


def bare_app(size: int) -> Starlette:
    body = {
        "results": [
            {
                "target": f"offer:B-{n:07d}",
                "eligible": True,
                "reason": None,
                "name": "Apprenti",
                "city": "Lyon",
            }
            for n in range(size)
        ]
    }

    async def endpoint(request: Request) -> Response:
        return JSONResponse(body)

    return Starlette(routes=[Route("/api/v1/eligibility", endpoint)])


def measure(
    database: str = "sqlite", offers: int = 20_000, seconds: float = 5.0, pages: int = BATCHES
) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp, database_url(database, Path(tmp), "eligibility") as url:
        folder = Path(tmp)
        settings = bench_settings(url, folder)
        ids = prepare(settings, folder, offers)
        script = wrk_script(folder, batches(ids, 50, random.Random(7), pages))
        app = create_app(settings)
        with Server(bare_app(50)) as bare, Server(app) as served:
            wrk(bare.url + "/api/v1/eligibility", seconds=1, connections=CONNECTIONS, script=script)
            wrk(served.url + "/api/v1/eligibility", seconds=1, connections=CONNECTIONS, script=script)
            cache = app.state.eligibility_cache
            cache.hits = cache.misses = 0
            base, ours = alternate(
                lambda: wrk(
                    bare.url + "/api/v1/eligibility", seconds=1, connections=CONNECTIONS, script=script
                ),
                lambda: wrk(
                    served.url + "/api/v1/eligibility", seconds=1, connections=CONNECTIONS, script=script
                ),
                rounds=max(1, round(seconds)),
            )
            hit_rate = cache.hits / max(1, cache.hits + cache.misses)
        rows.append(
            Row(
                "GET /api/v1/eligibility, 50 targets, 16 conn.",
                database,
                ours,
                base,
                "req/s",
                GOAL,
                f"{offers:,} offers, {pages} pages; answers from memory: {hit_rate:.0%}",
            )
        )
    return rows


def scaling(database: str, offers: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp, database_url(database, Path(tmp), "scaling") as url:
        folder = Path(tmp)
        settings = bench_settings(url, folder)
        ids = prepare(settings, folder, offers)
        print(f"targets per batch, {offers:,} offers, {database}: req/s (targets/s)")
        print(f"{'targets':>8} {'bare':>16} {'cached':>22} {'no cache':>22}")
        for size in (1, 10, 50, 100):
            script = wrk_script(folder, batches(ids, size, random.Random(size)))
            app = create_app(settings)
            with Server(bare_app(size)) as bare, Server(app) as served:
                url = served.url + "/api/v1/eligibility"
                base = wrk(
                    bare.url + "/api/v1/eligibility", seconds=seconds, connections=CONNECTIONS, script=script
                )
                wrk(url, seconds=1, connections=CONNECTIONS, script=script)
                cached = wrk(url, seconds=seconds, connections=CONNECTIONS, script=script)
                app.state.eligibility_cache.seconds = 0.0
                uncached = wrk(url, seconds=seconds, connections=CONNECTIONS, script=script)
            print(
                f"{size:>8} {base:>8.0f} ({base * size:>6.0f}) {cached:>8.0f} ({cached * size:>7.0f}) "
                f"{cached / base:4.2f} {uncached:>8.0f} ({uncached * size:>7.0f}) {uncached / base:4.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--offers", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--pages", type=int, default=BATCHES)
    parser.add_argument("--scaling", action="store_true")
    args = parser.parse_args()
    if args.scaling:
        scaling(args.database, args.offers, args.seconds)
        return
    for row in measure(args.database, args.offers, args.seconds, args.pages):
        print(
            f"{row.path} ({row.database}): {row.ours:.0f} {row.unit}, baseline {row.baseline:.0f}, "
            f"ratio {row.ratio:.2f} (goal {row.goal}); {row.note}"
        )


if __name__ == "__main__":
    main()
