"""Submissions per second: `POST /api/v1/applications` (multipart, a 200 KB PDF) on
SQLite, beside a bare Starlette endpoint that parses the same multipart body and
echoes it, both served by uvicorn on 127.0.0.1 in the same run and hit by the
same client. The email worker is off: this measures taking a request in
(validation, storage of the request, its CV and its two rendered emails).

    .venv/bin/python bench/bench_submissions.py [--requests 300] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import tempfile
import threading
import time
from typing import Any

import httpx2
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from widget_server import callers
from widget_server.app import create_app
from widget_server.settings import load_settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


async def echo(request: Request) -> Response:
    async with request.form() as form:
        upload = form["cv"]
        assert isinstance(upload, UploadFile)
        data = await upload.read()
        return JSONResponse({"bytes": len(data), "fields": len(form)}, status_code=202)


def make_pdf(size: int) -> bytes:
    head = b"%PDF-1.4\n"
    return head + os.urandom(size - len(head))


async def hammer(url: str, requests: int, concurrency: int, pdf: bytes, key: str) -> list[float]:
    latencies: list[float] = []
    counter = iter(range(requests))
    async with httpx2.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {key}"}) as client:

        async def one_worker() -> None:
            for i in counter:
                fields = {
                    "offer_id": "BENCH-1",
                    "first_name": "Léa",
                    "last_name": "Moreau",
                    "email": f"lea.{i}@example.org",
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

        await asyncio.gather(*(one_worker() for _ in range(concurrency)))
    return latencies


def run(label: str, url: str, args: argparse.Namespace, pdf: bytes, key: str) -> float:
    asyncio.run(hammer(url, min(20, args.requests), args.concurrency, pdf, key))  # warm-up
    start = time.perf_counter()
    latencies = asyncio.run(hammer(url, args.requests, args.concurrency, pdf, key))
    elapsed = time.perf_counter() - start
    rate: float = args.requests / elapsed
    p50 = statistics.median(latencies) * 1000
    p95 = sorted(latencies)[int(len(latencies) * 0.95)] * 1000
    print(f"{label:<34} {rate:8.1f} req/s   p50 {p50:6.1f} ms   p95 {p95:6.1f} ms")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pdf-kb", type=int, default=200)
    args = parser.parse_args()
    pdf = make_pdf(args.pdf_kb * 1024)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            {
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/bench.db",
                "VAR_DIR": tmp,
                "SECRET_KEY": "bench",
                "OUTBOX_WORKER": "false",
                "RATE_LIMIT": "1000000/minute",
                "API_KEY_RATE_LIMIT": "1000000/minute",
                "CALLER_APPLICATIONS_PER_COMPANY_PER_DAY": "1000000",
                "OFFER_MAX_APPLICATIONS": "1000000",
                "LOG_LEVEL": "WARNING",
                "DEMO_DATA": "false",
            },
            env_file=None,
        )
        app = create_app(settings)
        baseline = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
        with Server(app) as served, Server(baseline) as bare:
            key = asyncio.run(_prepare(app))
            print(
                f"{args.requests} multipart POSTs with a {args.pdf_kb} KB PDF, "
                f"{args.concurrency} at a time, uvicorn on 127.0.0.1, SQLite"
            )
            base = run("bare Starlette multipart echo", f"http://127.0.0.1:{bare.port}/echo", args, pdf, key)
            ours = run(
                "POST /api/v1/applications",
                f"http://127.0.0.1:{served.port}/api/v1/applications",
                args,
                pdf,
                key,
            )
            print(f"ratio: applications / echo = {ours / base:.2f}")


async def _prepare(app: Any) -> str:
    import datetime as dt

    from widget_server import tables
    from widget_server.resources import create_database

    database = create_database(app.state.settings)
    await database.connect()
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
    key = await callers.create_key(database, "bench")
    await database.disconnect()
    return key


if __name__ == "__main__":
    main()
