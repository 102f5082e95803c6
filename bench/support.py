"""What the benches share: a uvicorn server in a thread on 127.0.0.1, a bounded
wrk run, the settings of a bench app, and one result row of `bench/run`."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy.engine import URL, make_url

from widget_server.settings import Settings, load_settings


@dataclass(frozen=True)
class Row:
    """One line of the table: our figure beside its baseline, measured in the same run."""

    path: str
    database: str
    ours: float
    baseline: float
    unit: str
    goal: float
    note: str = ""
    # Times and sizes: the ratio is baseline / ours, so that ≥ goal still means a pass.
    smaller_is_better: bool = False

    @property
    def ratio(self) -> float:
        if self.smaller_is_better:
            return self.baseline / self.ours if self.ours else 0.0
        return self.ours / self.baseline if self.baseline else 0.0

    @property
    def passed(self) -> bool:
        return self.ratio >= self.goal


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """Serves `app` with uvicorn on 127.0.0.1 in a thread of this process."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", access_log=False
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def wrk(url: str, *, seconds: float, connections: int, script: Path | None = None) -> float:
    """Requests per second from wrk (one thread: the other core is the server's)."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses:\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match is None:
        raise RuntimeError(f"wrk said:\n{output}")
    return float(match.group(1))


def alternate(first: Callable[[], float], second: Callable[[], float], rounds: int) -> tuple[float, float]:
    """Mean of `rounds` measurements of each, taken in turns (first, second, first…):
    on a machine others share, the load changes from one second to the next, and
    taking turns spreads it over both sides."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        a.append(first())
        b.append(second())
    return statistics.fmean(a), statistics.fmean(b)


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


# The PostgreSQL server the benches use (BENCH_DATABASE_URL overrides it): each
# bench creates a database of its own there and drops it afterwards, so a bench
# never touches a database someone else is using (the test suite's `test`).
POSTGRESQL_SERVER = "postgresql+asyncpg://root@127.0.0.1:5432/test"
_databases = itertools.count()


def postgresql_server() -> str:
    return os.environ.get("BENCH_DATABASE_URL") or POSTGRESQL_SERVER


def have_postgresql() -> bool:
    """Whether the PostgreSQL server answers (its figures are skipped otherwise)."""
    import asyncpg

    async def probe() -> None:
        connection = await asyncpg.connect(_driver_url(postgresql_server()), timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    return True


def _driver_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@contextmanager
def database_url(kind: str, folder: Path, name: str) -> Iterator[str]:
    """A fresh SQLite file in `folder`, or a fresh PostgreSQL database of this
    bench on the server of `postgresql_server()`, dropped on the way out."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{folder / name}.db"
        return
    server = make_url(postgresql_server())
    database = f"widget_bench_{os.getpid()}_{next(_databases)}_{name}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{database}"'))
    try:
        yield server.set(database=database).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


async def _admin(server: URL, sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(_driver_url(server.render_as_string(hide_password=False)))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def bench_settings(url: str, folder: Path, **extra: str) -> Settings:
    environ = {
        "DATABASE_URL": url,
        "VAR_DIR": str(folder),
        "SECRET_KEY": "bench",
        "OUTBOX_WORKER": "false",
        "RATE_LIMIT": "100000000/minute",
        "API_KEY_RATE_LIMIT": "100000000/minute",
        "CALLER_APPLICATIONS_PER_COMPANY_PER_DAY": "100000000",
        "APPLICATIONS_PER_DAY": "100000000",
        "OFFER_MAX_APPLICATIONS": "100000000",
        "LOG_LEVEL": "WARNING",
        "DEMO_DATA": "false",
        **extra,
    }
    return load_settings(environ, env_file=None)
