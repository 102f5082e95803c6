"""A real server for the tests that need real sockets (slow clients, forwarded
headers as uvicorn sees them, API fuzzing): `widget-server serve`'s own uvicorn
options, in a thread, on 127.0.0.1 and a free port."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from databases import Database

from widget_server import callers, directory
from widget_server.app import create_app
from widget_server.cli import uvicorn_config, with_database
from widget_server.settings import Settings


@dataclass(frozen=True)
class RunningServer:
    url: str
    port: int
    settings: Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_api_key(settings: Settings, caller: str, role: str = "partner") -> str:
    async def create(database: Database) -> str:
        return await callers.create_key(database, caller, role)

    key: str = asyncio.run(with_database(settings, create))
    return key


def load_demo(settings: Settings) -> None:
    asyncio.run(with_database(settings, directory.load_demo))


@contextmanager
def running_server(settings: Settings) -> Iterator[RunningServer]:
    port = free_port()
    settings = settings.replace(host="127.0.0.1", port=port, log_level="WARNING")
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        yield RunningServer(f"http://127.0.0.1:{port}", port, settings)
    finally:
        server.should_exit = True
        thread.join(15)
