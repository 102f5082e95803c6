"""A real HTTP receiver of partner webhooks for tests: a Starlette app under uvicorn
on 127.0.0.1, in its own thread, recording every request it gets (headers and
body as sent) and answering scripted statuses (`receiver.answer(503, times=2)`).
It can stop listening and start again on the same port (`down()`, `up()`), and
hold the next request unanswered until `release()` (a client stuck mid-request)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support import wait_until


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered (or was about to, for a held request)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def verify(self, secret: str) -> object:
        """The body, once its signature is verified by the Standard Webhooks library."""
        return Webhook(secret).verify(self.body, self.headers)


class Receiver:
    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._script: list[int] = []
        self._lock = threading.Lock()
        self._hold = False
        self._released = threading.Event()
        self.held: Delivery | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self.url = f"http://127.0.0.1:{self.port}/hooks/lba"

    # --- behaviour ------------------------------------------------------------

    def answer(self, status: int, *, times: int = 1) -> None:
        with self._lock:
            self._script.extend([status] * times)

    def hold_next(self) -> None:
        with self._lock:
            self._hold = True
            self.held = None
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def delivered_ids(self) -> list[str]:
        """webhook-ids of the requests answered 2xx, in order."""
        with self._lock:
            return [d.webhook_id for d in self.deliveries if 200 <= d.status < 300]

    async def _endpoint(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            status = self._script.pop(0) if self._script else 204
            delivery = Delivery(dict(request.headers), body, status)
            self.deliveries.append(delivery)
            hold, self._hold = self._hold, False
            if hold:
                self.held = delivery
        if hold:
            await asyncio.to_thread(self._released.wait, 60)
        # A redirect points back here: a client that followed it would be seen.
        headers = {"location": self.url} if 300 <= status < 400 else None
        return Response(status_code=status, headers=headers)

    # --- running ----------------------------------------------------------------

    def up(self) -> None:
        listening = socket.socket()
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(("127.0.0.1", self.port))
        app = Starlette(routes=[Route("/hooks/lba", self._endpoint, methods=["POST"])])
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws="none"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
        thread.start()
        self._server, self._thread, self._socket = server, thread, listening
        wait_until(lambda: server.started, "the webhook receiver to start")

    def down(self) -> None:
        """Stop listening: connections are refused until `up()`."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self.release()
        server.should_exit = True
        thread.join(10)
        self._socket.close()
        self._server = self._thread = None


@contextmanager
def running() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.up()
    try:
        yield receiver
    finally:
        receiver.down()
