"""Scale-out on one machine (#10 item 5; SPEC sections 10 and 13): two `serve`
instances without their email worker and three `worker` processes share one
PostgreSQL database (of this test's own) and the machine's Redis. A bounded load
goes through both instances with an API key; one worker is SIGKILLed while it
holds leases. Every accepted request's emails arrive exactly once (counted by
Message-ID at a real SMTP server), the dead worker's messages are taken over,
reminders go out once, and the rate limit crossed across both instances holds on
both. Skipped, with the reason, only when PostgreSQL or Redis is unreachable."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest
import sqlalchemy as sa
from databases import Database

from tests import seed
from tests.smtp_server import SMTPServer, free_port, running
from tests.support import appointment, data_url, wait_until
from widget_server import callers, migrations, tables
from widget_server.kinds import PRO_EMAILS

PG_HOST, PG_PORT, REDIS_PORT = "127.0.0.1", 5432, 6379
APPLICATIONS, APPOINTMENTS = 28, 12  # the load: 40 submissions, half through each instance
RATE = 44  # requests per client IP and hour, counted in Redis across instances
REMINDED = 10
LEASE_SECONDS = 10  # short, so the killed worker's leases run out within the test
REMINDERS_EVERY_SECONDS = 1

# Each application's PDF is parsed in a child process (#9 item 8): more headroom on a loaded machine.
pytestmark = pytest.mark.timeout(240)


def _reachable(port: int) -> str | None:
    try:
        socket.create_connection((PG_HOST, port), timeout=2).close()
    except OSError as exc:
        return str(exc)
    return None


async def _admin(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(f"postgresql://root@{PG_HOST}:{PG_PORT}/test")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
def database_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own, dropped afterwards."""
    if (error := _reachable(PG_PORT)) is not None:
        pytest.skip(f"PostgreSQL unreachable at {PG_HOST}:{PG_PORT}: {error}")
    if (error := _reachable(REDIS_PORT)) is not None:
        pytest.skip(f"Redis unreachable at {PG_HOST}:{REDIS_PORT}: {error}")
    name = f"scaleout_{secrets.token_hex(4)}"
    asyncio.run(_admin(f"CREATE DATABASE {name}"))
    try:
        yield f"postgresql+asyncpg://root@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        asyncio.run(_admin(f"DROP DATABASE {name} WITH (FORCE)"))


def _client_address() -> str:
    """A loopback address of this run's own to send the load from: the rate limit
    counts per client IP in the machine's Redis, which other runs of this test
    (other checkouts, CI) may use at the same time."""
    return "127.{}.{}.{}".format(*(1 + secrets.randbelow(254) for _ in range(3)))


class Database_:
    """The shared database, read and written by the test as an operator would."""

    def __init__(self, url: str) -> None:
        self.url = url

    def run(self, work: Any) -> Any:
        async def main() -> Any:
            database = Database(self.url)
            await database.connect()
            try:
                return await work(database)
            finally:
                await database.disconnect()

        return asyncio.run(main())

    def rows(self, query: Any) -> list[dict[str, Any]]:
        async def fetch(database: Database) -> list[dict[str, Any]]:
            return [dict(r._mapping) for r in await database.fetch_all(query)]

        return list(self.run(fetch))


def _seed(database: Database_) -> str:
    async def work(db: Database) -> str:
        await migrations.migrate(db)
        now = dt.datetime.now(dt.UTC)
        for n in range(4):
            await db.execute(
                tables.offers.insert().values(
                    offer_id=f"OFF-{n}",
                    title="Vendeur·se en boulangerie",
                    siret=f"7328293200{n:04d}",
                    company_name=f"Boulangerie {n}",
                    address="3 rue du Four",
                    city="Lyon",
                    postcode="69003",
                    contact_email=f"recrutement{n}@boulangerie.example",
                    status="active",
                    posted_on=dt.date(2026, 10, 1),
                    application_count=0,
                    updated_at=now,
                )
            )
        for n in range(2):
            await db.execute(
                tables.formations.insert().values(
                    cle_ministere_educatif=f"CME-{n}",
                    title="BTS Management commercial opérationnel",
                    city="Bordeaux",
                    postcode="33000",
                    address="1 cours de la Marne",
                    cfa_siret=seed.CFA_SIRET,
                    cfa_name=f"CFA du Commerce {n}",
                    cfa_address="1 cours de la Marne, 33000 Bordeaux",
                    cfa_phone="+33199001234",
                    contact_email=f"rdv{n}@cfa-commerce.example",
                    updated_at=now,
                )
            )
        return await callers.create_key(db, "mon-site", "partner")

    return str(database.run(work))


def _submissions() -> list[tuple[str, dict[str, Any]]]:
    cv = data_url(seed.PDF)
    load: list[tuple[str, dict[str, Any]]] = []
    for n in range(APPLICATIONS):
        body = {
            "offer_id": f"OFF-{n % 4}",
            "first_name": "Léa",
            "last_name": f"Candidate {n}",
            "email": f"candidat-a{n}@example.org",
            "phone": "06 12 34 56 78",
            "message": "Je suis motivée !",
            "cv": cv,
            "cv_filename": "CV.pdf",
        }
        load.append(("/api/v1/applications", body))
    for n in range(APPOINTMENTS):
        body = appointment(formation_id=f"CME-{n % 2}", email=f"candidat-r{n}@example.org")
        load.append(("/api/v1/appointment-requests", body))
    return load


class Processes:
    """The service's processes, their output kept in files for the failure message."""

    def __init__(self, directory: Path, environ: dict[str, str]) -> None:
        self.directory = directory
        self.environ = environ
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, command: str, **environ: str) -> subprocess.Popen[bytes]:
        log = open(self.directory / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "widget_server.cli", command],
            cwd=self.directory,
            env={**self.environ, **environ},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.started.append((name, process))
        return process

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} (exit {process.poll()}):\n"
            + (self.directory / f"{name}.log").read_text(errors="replace")[-2000:]
            for name, process in self.started
        )

    def stop(self) -> None:
        for _, process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in self.started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _healthy(url: str) -> bool:
    try:
        return httpx2.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx2.TransportError:
        return False


def test_two_instances_three_workers_one_killed_every_email_once(tmp_path: Path, database_url: str) -> None:
    started = time.monotonic()
    database = Database_(database_url)
    key = _seed(database)
    with running() as smtp:
        ports = [free_port(), free_port()]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        processes = Processes(
            tmp_path,
            {
                **os.environ,
                "DATABASE_URL": database_url,
                "SMTP_URL": smtp.url,
                "SECRET_KEY": "scale-out-test-secret-key-of-32-bytes-or-more",
                "PUBLIC_URL": urls[0],  # what the reverse proxy would answer to
                "VAR_DIR": str(tmp_path / "var"),
                "DEMO_DATA": "false",
                "LOG_LEVEL": "WARNING",
                "HOST": "127.0.0.1",
                "EXAMPLE_HOST_PAGE_PORT": "0",
                "OUTBOX_WORKER": "false",
                "OUTBOX_POLL_SECONDS": "0.2",
                "OUTBOX_LEASE_SECONDS": str(LEASE_SECONDS),
                "REMINDERS_EVERY_SECONDS": str(REMINDERS_EVERY_SECONDS),
                "RATE_LIMIT": f"{RATE}/hour",
                "RATE_LIMIT_STORAGE": f"redis://{PG_HOST}:{REDIS_PORT}",
                "API_KEY_RATE_LIMIT": "1000/minute",
            },
        )
        try:
            for n, port in enumerate(ports):
                processes.start(f"serve-{n}", "serve", PORT=str(port))
            workers = {processes.start(f"worker-{n}", "worker").pid: n for n in range(3)}
            wait_until(lambda: all(_healthy(url) for url in urls), "both instances to answer", seconds=60)
            with httpx2.Client(
                transport=httpx2.HTTPTransport(local_address=_client_address()),
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            ) as client:
                counts = _run_load_and_checks(database, smtp, urls, client, processes, workers)
        except BaseException:
            print(processes.logs())
            raise
        finally:
            processes.stop()
    print(
        "scale-out: {requests} requests accepted ({rate_limited} refused by the shared rate limit), "
        "{emails} emails expected, {received} received, duplicates {duplicates}, lost {lost}, "
        "{taken_over} leases of the killed worker taken over, {reminders} reminders once each; "
        "{seconds:.0f} s".format(**counts, seconds=time.monotonic() - started)
    )


def _run_load_and_checks(
    database: Database_,
    smtp: SMTPServer,
    urls: list[str],
    client: httpx2.Client,
    processes: Processes,
    workers: dict[int, int],
) -> dict[str, int]:
    load = _submissions()

    def submit(index: int) -> httpx2.Response:
        path, body = load[index]
        return client.post(urls[index % 2] + path, json=body)

    outbox = tables.outbox
    # Mid-drain: once mail flows, the next candidate's RCPT is held, so the worker
    # sending it is caught holding leases, before DATA (nothing of it received).
    with ThreadPoolExecutor(4) as pool:
        responses = pool.map(submit, range(len(load)))
        wait_until(lambda: len(smtp.received) >= 6, "the first emails", seconds=60)
        # Other workers may be sending emails to the same recruiter (each worker
        # claims a batch): they finish theirs, the held one cannot.
        owners: list[set[str]] = []

        def one_owner() -> bool:
            owners[:] = [
                {
                    str(row["lease_owner"])
                    for row in database.rows(
                        sa.select(outbox.c.lease_owner).where(
                            outbox.c.recipient == smtp.handler.held_recipient,
                            outbox.c.status == "sending",
                        )
                    )
                }
            ]
            return len(owners[0]) == 1

        # A held worker gives up on its RCPT after its SMTP timeout (a quarter of
        # the lease: 2.5 s here) and goes on with its batch; on a busy machine the
        # wait below can outlast that, and the worker it finds would then be killed
        # at any point of its work instead of held before DATA. Only a worker still
        # held is killed; when the held one gave up, the next RCPT is held instead.
        for _ in range(5):
            smtp.handler.hold_next_recipient()
            wait_until(lambda: smtp.handler.held_recipient is not None, "a worker to be held", seconds=60)
            wait_until(
                lambda: not smtp.handler.holding or one_owner(),
                "the held worker alone sending to that recipient",
                seconds=60,
            )
            if smtp.handler.holding and owners and len(owners[0]) == 1:
                [held_owner] = owners[0]
                victim = int(str(held_owner).split(":")[1])
                assert victim in workers, f"{held_owner} is not one of the worker processes"
                os.kill(victim, signal.SIGKILL)
                break
        else:
            raise AssertionError("no worker stayed held at RCPT until it was killed")
        leased = database.rows(
            sa.select(outbox.c.id).where(outbox.c.lease_owner == held_owner, outbox.c.status == "sending")
        )
        smtp.handler.release()
        accepted = [r.json()["id"] for r in responses if r.status_code == 202]
    assert len(accepted) == len(load), "every submission of the load is accepted"

    # The rate limit: RATE requests per hour from this client address, whichever instance
    # they reach. Each instance has seen half of them; past RATE both refuse.
    extra = RATE - len(load)
    for n in range(extra):
        body = appointment(formation_id=f"CME-{n % 2}", email=f"candidat-x{n}@example.org")
        response = client.post(urls[n % 2] + "/api/v1/appointment-requests", json=body)
        assert response.status_code == 202, response.text
        accepted.append(response.json()["id"])
    refused = [
        client.post(
            url + "/api/v1/appointment-requests",
            json=appointment(formation_id="CME-0", email="candidat-z@example.org"),
        )
        for url in urls
    ]
    assert [r.status_code for r in refused] == [429, 429]
    assert {r.json()["code"] for r in refused} == {"rate_limited"}

    # Every email of every accepted request, exactly once, the killed worker's included.
    expected = 2 * len(accepted)

    def all_sent() -> bool:
        rows = database.rows(sa.select(outbox.c.status))
        return len(rows) == expected and {r["status"] for r in rows} == {"sent"}

    wait_until(all_sent, "every email sent", seconds=LEASE_SECONDS + 60)
    queued = database.rows(sa.select(outbox.c.message_id, outbox.c.request_id))
    assert {r["request_id"] for r in queued} == set(accepted)
    received = collections.Counter(smtp.message_ids())
    duplicates = sum(count - 1 for count in received.values())
    lost = {r["message_id"] for r in queued} - set(received)
    assert duplicates == 0 and not lost and len(received) == expected
    assert leased and {
        r["status"]
        for r in database.rows(sa.select(outbox.c.status).where(outbox.c.id.in_([r["id"] for r in leased])))
    } == {"sent"}

    # Reminders: some requests made old enough; the workers' job queues one each.
    reminded = accepted[:REMINDED]
    database.run(
        lambda db: db.execute(
            tables.contact_requests.update()
            .where(tables.contact_requests.c.id.in_(reminded))
            .values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=6))
        )
    )

    def reminders_received() -> list[str]:
        return [
            str(r.message["In-Reply-To"])
            for r in smtp.received
            if str(r.message["Subject"]).startswith("Rappel")
        ]

    wait_until(lambda: len(reminders_received()) >= REMINDED, "the reminders", seconds=60)
    # Let the job come round twice more, on any worker: still one reminder each.
    [job] = database.rows(sa.select(tables.jobs.c.next_run_at))
    later = job["next_run_at"] + dt.timedelta(seconds=2 * REMINDERS_EVERY_SECONDS)
    wait_until(
        lambda: database.rows(sa.select(tables.jobs.c.next_run_at))[0]["next_run_at"] > later,
        "the reminders job to run again",
        seconds=60,
    )
    pro_ids = {
        r["message_id"]
        for r in database.rows(
            sa.select(outbox.c.message_id).where(
                outbox.c.request_id.in_(reminded), outbox.c.template.in_(PRO_EMAILS)
            )
        )
    }
    assert sorted(reminders_received()) == sorted(pro_ids)
    assert len(database.rows(sa.select(outbox.c.id).where(outbox.c.template == "reminder"))) == REMINDED
    received_after = collections.Counter(smtp.message_ids())
    assert max(received_after.values()) == 1
    return {
        "requests": len(accepted),
        "rate_limited": len(refused),
        "emails": expected,
        "received": len(received),
        "duplicates": duplicates,
        "lost": len(lost),
        "taken_over": len(leased),
        "reminders": len(reminders_received()),
    }
