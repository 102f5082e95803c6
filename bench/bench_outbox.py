"""Email delivery throughput: the outbox worker beside a bare SMTP send loop, both
measured in the same run against the same local SMTP server. Prints figures;
asserts nothing.

    .venv/bin/python bench/bench_outbox.py [MESSAGES] [--database postgresql]
    .venv/bin/python bench/bench_outbox.py --depth [--database postgresql]   # by queue depth

MESSAGES (default 500) messages of about 12 kB (text and HTML parts, like the
service's emails) are queued with `outbox.enqueue` in a fresh SQLite file (or, with `--database
postgresql`, a fresh database of its own on BENCH_DATABASE_URL's server), then drained by one
`outbox.Worker` (default batch size) over SMTP to aiosmtpd on 127.0.0.1. Baseline:
the same messages sent with aiosmtplib on one connection, no database at all —
the floor set by SMTP itself. Both sides send the same thing: the bytes
`outbox.enqueue` stores (serialised once, before the clock starts) with the same
envelope, through `sendmail`; neither serialises an `EmailMessage` while timed.
The ratio is the price of the outbox (claims, leases, one status write per
message). Each run is cut at TIME_LIMIT seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
from aiosmtpd.controller import Controller
from support import Row, database_url

from widget_server import emails, mailer, migrations, outbox, tables
from widget_server.resources import create_database, prepare_sqlite
from widget_server.settings import load_settings

# Each side stops after this long (what it did by then is counted), so a run is bounded.
TIME_LIMIT = 12.0
GOAL = 0.90
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


class CountingHandler:
    """Counts Message-IDs; nothing else, so the server costs both sides the same."""

    def __init__(self) -> None:
        self.ids: Counter[bytes] = Counter()
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        found = _MESSAGE_ID.search(envelope.content)
        with self._lock:
            self.ids[found.group(1) if found else b"?"] += 1
        return "250 OK"


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def message(n: int, tag: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "La bonne alternance <noreply@lba.example>"
    msg["To"] = f"Recruteur {n} <contact{n}@entreprise{n % 50}.example>"
    msg["Subject"] = f"Nouvelle candidature n°{n} pour « Apprenti boulanger »"
    msg["Message-ID"] = make_msgid(idstring=f"{tag}{n}", domain="lba.example")
    msg["Auto-Submitted"] = "auto-generated"
    paragraph = "Léa Moreau souhaite rejoindre votre équipe en alternance. " * 8
    msg.set_content("Bonjour,\n\n" + "\n\n".join([paragraph] * 6))
    msg.add_alternative(
        "<html><body>"
        + "".join(
            f'<p style="font-family:Arial;font-size:16px;color:#1e1e1e">{paragraph}</p>' for _ in range(12)
        )
        + "</body></html>",
        subtype="html",
    )
    return msg


def outgoing(msg: EmailMessage) -> emails.Outgoing:
    """The message with its envelope, as the service queues it."""
    return emails.Outgoing(msg, "noreply@lba.example", tuple(a.addr_spec for a in msg["To"].addresses))


@contextmanager
def smtp_server() -> Iterator[tuple[CountingHandler, int]]:
    """An aiosmtpd server on 127.0.0.1 that counts what it receives: (handler, port)."""
    handler = CountingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@asynccontextmanager
async def migrated(smtp_url: str, workdir: Path, url: str) -> AsyncIterator[tuple[Any, Any]]:
    """A fresh, migrated database at `url` and the settings of a worker sending to `smtp_url`."""
    environ = {
        "VAR_DIR": str(workdir),
        "SECRET_KEY": "bench",
        "SMTP_URL": smtp_url,
        "LOG_LEVEL": "WARNING",
        "OUTBOX_WORKER": "false",
        "DATABASE_URL": url,
    }
    settings = load_settings(environ, env_file=None)
    database = create_database(settings)
    await database.connect()
    try:
        await prepare_sqlite(database)
        await migrations.migrate(database)
        yield database, settings
    finally:
        await database.disconnect()


async def run_batches(worker: outbox.Worker, most: int) -> int:
    """As `Worker.run_forever` drains a queue: batch after batch, the SMTP
    connection kept between them, up to `most` messages or TIME_LIMIT."""
    handled = 0
    started = time.perf_counter()
    try:
        while handled < most and time.perf_counter() - started < TIME_LIMIT:
            done = await worker.run_once(keep_open=True)
            if not done:
                break
            handled += done
    finally:
        await worker.close_sessions()
    return handled


async def run_worker(count: int, smtp_url: str, workdir: Path, url: str) -> tuple[float, float, int]:
    async with migrated(smtp_url, workdir, url) as (database, settings):
        messages = [message(n, "w") for n in range(count)]
        started = time.perf_counter()
        async with database.transaction():
            for msg in messages:
                await outbox.enqueue(database, outgoing(msg), template="bench", request_id=None)
        enqueue_seconds = time.perf_counter() - started
        worker = outbox.Worker(database, mailer.transport_from_settings(settings), settings)
        started = time.perf_counter()
        handled = await run_batches(worker, count)
        return enqueue_seconds, time.perf_counter() - started, handled


async def run_baseline(count: int, port: int) -> tuple[float, int]:
    # What the worker sends: the bytes `outbox.enqueue` stores (serialised once,
    # before the clock starts) and the same envelope, through `sendmail`.
    envelopes = [
        (outgoing(msg).as_bytes(), list(outgoing(msg).recipients))
        for msg in (message(n, "b") for n in range(count))
    ]
    sent = 0
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, local_hostname="localhost")
    started = time.perf_counter()
    await client.connect()
    try:
        for data, recipients in envelopes:
            if time.perf_counter() - started > TIME_LIMIT:
                break
            await client.sendmail("noreply@lba.example", recipients, data)
            sent += 1
    finally:
        await client.quit()
    return time.perf_counter() - started, sent


def drain(count: int, database: str = "sqlite") -> tuple[float, float, int, int, float, bool]:
    """(worker rate, baseline rate, handled, sent, enqueue rate, each received once),
    the worker on a fresh database of `database`'s kind."""
    with smtp_server() as (handler, port):
        with tempfile.TemporaryDirectory() as tmp, database_url(database, Path(tmp), "outbox") as url:
            enqueue_s, worker_s, handled = asyncio.run(
                run_worker(count, f"smtp://127.0.0.1:{port}", Path(tmp), url)
            )
        worker_ids = {k: v for k, v in handler.ids.items() if re.search(rb"\.w\d+@", k)}
        baseline_s, sent = asyncio.run(run_baseline(count, port))
    once = len(worker_ids) == handled and set(worker_ids.values()) <= {1}
    return handled / worker_s, sent / baseline_s, handled, sent, count / enqueue_s, once


def measure(database: str = "sqlite", count: int = 500, rounds: int = 3) -> list[Row]:
    """The worker beside the bare loop, `rounds` times in turn (the median of
    each: one drain lasts about a second, and a burst of load from elsewhere
    lands on one round, not on the figure)."""
    results = [drain(count, database) for _ in range(rounds)]
    worker = statistics.median(r[0] for r in results)
    baseline = statistics.median(r[1] for r in results)
    once = all(r[5] for r in results)
    return [
        Row(
            f"outbox drain, {count} messages to aiosmtpd",
            database,
            worker,
            baseline,
            "msg/s",
            GOAL,
            f"batch {outbox.BATCH_SIZE}; each received once: {once}",
        )
    ]


async def run_depth(
    depth: int, drained: int, smtp_url: str, workdir: Path, url: str
) -> tuple[float, float, int]:
    """`depth` messages queued, then the worker drains the first `drained` of them
    (bounded by TIME_LIMIT): (messages/s, mean ms per claim, messages drained)."""
    async with migrated(smtp_url, workdir, url) as (database, settings):
        raw = outgoing(message(0, "d")).as_bytes()
        now = dt.datetime.now(dt.UTC)
        for start in range(0, depth, 500):  # the same bytes, one multi-row INSERT per 500
            await database.execute(
                tables.outbox.insert().values(
                    [
                        dict(
                            kind=outbox.EMAIL,
                            status="pending",
                            attempts=0,
                            next_attempt_at=now,
                            created_at=now,
                            template="bench",
                            envelope_sender="noreply@lba.example",
                            recipient="contact0@entreprise0.example",
                            message_id=f"<d{n}@lba.example>",
                            raw=raw,
                            attach_cv=False,
                            test_mailbox=False,
                        )
                        for n in range(start, min(depth, start + 500))
                    ]
                )
            )
        worker = outbox.Worker(database, mailer.transport_from_settings(settings), settings)
        claims: list[float] = []
        claim = worker.claim

        async def timed_claim(limit: int | None = None) -> list[dict[str, Any]]:
            began = time.perf_counter()
            try:
                return await claim(limit)
            finally:
                claims.append(time.perf_counter() - began)

        worker.claim = timed_claim  # type: ignore[method-assign]
        started = time.perf_counter()
        handled = await run_batches(worker, drained)
        return handled / (time.perf_counter() - started), 1000 * statistics.fmean(claims), handled


def depth_scaling(database: str, depths: tuple[int, ...] = (100, 1_000, 10_000), drained: int = 300) -> None:
    """How the drain rate and a claim's cost change with the queue's depth."""
    print(f"queue depth, {database}: the first {drained} messages drained (batch {outbox.BATCH_SIZE})")
    for depth in depths:
        with (
            smtp_server() as (_, port),
            tempfile.TemporaryDirectory() as tmp,
            database_url(database, Path(tmp), "depth") as url,
        ):
            rate, claim_ms, handled = asyncio.run(
                run_depth(depth, min(drained, depth), f"smtp://127.0.0.1:{port}", Path(tmp), url)
            )
        print(f"  {depth:>7,} queued: {rate:7.0f} msg/s ({handled} drained), a claim {claim_ms:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("messages", type=int, nargs="?", default=500)
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--depth", action="store_true", help="drain rate and claim cost by queue depth")
    args = parser.parse_args()
    if args.depth:
        depth_scaling(args.database)
        return
    count = args.messages
    worker_rate, baseline_rate, handled, sent, enqueue_rate, once = drain(count, args.database)
    print(
        f"{count} messages of ~{len(bytes(message(0, 'x'))) // 1024} kB, {args.database}, "
        f"aiosmtpd on 127.0.0.1, batch size {outbox.BATCH_SIZE}"
    )
    print(f"enqueue (one transaction):   {enqueue_rate:8.0f} messages/s")
    print(
        f"outbox worker:               {worker_rate:8.0f} messages/s ({handled}; received once each: {once})"
    )
    print(f"baseline, bare aiosmtplib:   {baseline_rate:8.0f} messages/s ({sent})")
    print(f"ratio worker / baseline:     {worker_rate / baseline_rate:8.2f}")


if __name__ == "__main__":
    main()
