"""Submissions per second: `POST /api/v1/applications` (multipart, a 200 KB PDF)
beside a bare Starlette endpoint that parses the same multipart body and echoes
it, both served by uvicorn on 127.0.0.1 in the same run, hit by the same client
in alternating rounds. The email worker is off: this measures taking a request
in (validation, storage of the request, its CV and its two rendered emails).
Prints figures; asserts nothing.

    .venv/bin/python bench/bench_submissions.py [--requests 240] [--concurrency 8] [--pdf-kb 200]
    .venv/bin/python bench/bench_submissions.py --scaling     # CV size 10 KB → 3 MB
    … --database postgresql   # a database of its own on BENCH_DATABASE_URL's server
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support import Row, Server, bench_settings, database_url

from widget_server import callers, cli, tables
from widget_server.app import create_app
from widget_server.settings import Settings

GOAL = 0.25
# A round stops issuing requests after this long, so a run is bounded in time too.
ROUND_SECONDS = 6.0
ROUNDS = 3
_emails = itertools.count()


async def echo(request: Request) -> Response:
    async with request.form(max_files=1, max_fields=40, max_part_size=5 * 1024 * 1024) as form:
        upload = form["cv"]
        data = await upload.read()  # type: ignore[union-attr]
        return JSONResponse({"bytes": len(data), "fields": len(form)}, status_code=202)


def make_pdf(size: int) -> bytes:
    """A small valid PDF whose one stream is padded to `size` bytes."""
    padding = max(0, size - 400)
    stream = b"%" + b"A" * (padding - 1) if padding else b""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


async def hammer(
    url: str, requests: int, concurrency: int, pdf: bytes, key: str
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    counter = iter(range(requests))
    deadline = time.perf_counter() + ROUND_SECONDS
    async with httpx2.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {key}"}) as client:

        async def one_worker() -> None:
            for _ in counter:
                if time.perf_counter() > deadline:
                    break
                fields = {
                    "offer_id": "BENCH-1",
                    "first_name": "Léa",
                    "last_name": "Moreau",
                    "email": f"lea.{next(_emails)}@example.org",
                    "phone": "06 12 34 56 78",
                    "message": "Bonjour, je suis très motivée.",
                }
                start = time.perf_counter()
                response = await client.post(
                    url, data=fields, files={"cv": ("cv.pdf", pdf, "application/pdf")}
                )
                latencies.append(time.perf_counter() - start)
                if response.status_code != 202:
                    raise RuntimeError(f"{response.status_code}: {response.text[:300]}")

        start = time.perf_counter()
        await asyncio.gather(*(one_worker() for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - start), latencies


async def _prepare(settings: Settings) -> str:
    async def work(database: Any) -> str:
        await database.execute(
            tables.offers.insert().values(
                offer_id="BENCH-1",
                title="Vendeur",
                siret="73282932000074",
                company_name="Boulangerie",
                address="1 rue",
                city="Lyon",
                postcode="69001",
                contact_email="rh@bench.example",
                status="active",
                posted_on=dt.date(2026, 1, 1),
                application_count=0,
                updated_at=dt.datetime.now(dt.UTC),
            )
        )
        return await callers.create_key(database, "bench")

    return str(await cli.with_database(settings, work))


def compare(
    settings: Settings, pdf: bytes, requests: int, concurrency: int, rounds: int = ROUNDS
) -> tuple[float, float, float]:
    """(ours, baseline, our p50 in ms), alternating rounds of `requests` each."""
    key = asyncio.run(_prepare(settings))
    app = create_app(settings)
    bare = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
    ours_rates, base_rates, latencies = [], [], []
    with Server(app) as served, Server(bare) as baseline:
        ours_url = served.url + "/api/v1/applications"
        base_url = baseline.url + "/echo"
        for url in (base_url, ours_url):  # warm-up
            asyncio.run(hammer(url, min(16, requests), concurrency, pdf, key))
        for _ in range(rounds):
            base_rates.append(asyncio.run(hammer(base_url, requests, concurrency, pdf, key))[0])
            rate, seen = asyncio.run(hammer(ours_url, requests, concurrency, pdf, key))
            ours_rates.append(rate)
            latencies += seen
    return statistics.fmean(ours_rates), statistics.fmean(base_rates), statistics.median(latencies) * 1000


def measure(
    database: str = "sqlite", requests: int = 60, concurrency: int = 8, pdf_kb: int = 200
) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp, database_url(database, Path(tmp), "submissions") as url:
        folder = Path(tmp)
        settings = bench_settings(url, folder)
        ours, base, p50 = compare(settings, make_pdf(pdf_kb * 1024), requests, concurrency)
    return [
        Row(
            f"POST /api/v1/applications, {pdf_kb} KB PDF, {concurrency} conc.",
            database,
            ours,
            base,
            "req/s",
            GOAL,
            f"p50 {p50:.0f} ms",
        )
    ]


def scaling(database: str, requests: int, concurrency: int) -> None:
    print(f"CV size, {database}: ours / bare multipart echo (req/s), p50")
    for kb in (10, 200, 1024, 3 * 1024 - 4):
        with tempfile.TemporaryDirectory() as tmp, database_url(database, Path(tmp), f"cv{kb}") as url:
            folder = Path(tmp)
            settings = bench_settings(url, folder)
            ours, base, p50 = compare(settings, make_pdf(kb * 1024), requests, concurrency, rounds=2)
        print(f"{kb:>6} KB {ours:8.1f} {base:8.1f}  ratio {ours / base:4.2f}  p50 {p50:6.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--requests", type=int, default=60, help="per round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pdf-kb", type=int, default=200)
    parser.add_argument("--scaling", action="store_true")
    args = parser.parse_args()
    if args.scaling:
        scaling(args.database, args.requests, args.concurrency)
        return
    for row in measure(args.database, args.requests, args.concurrency, args.pdf_kb):
        print(
            f"{row.path} ({row.database}): {row.ours:.1f} {row.unit}, baseline {row.baseline:.1f}, "
            f"ratio {row.ratio:.2f} (goal {row.goal}); {row.note}"
        )


if __name__ == "__main__":
    main()
