"""Slow clients are cut (issue #9, item 9): a client sending one byte every two
seconds would otherwise hold a connection, a task and memory for as long as it likes.

Two bounds, both answered with 408 problem+json and a closed connection:
- the request line and headers must arrive within `REQUEST_HEADER_TIMEOUT_SECONDS`
  of the connection opening, or of the first byte of a following request on a
  kept-alive connection (uvicorn bounds only the idle time between requests);
- the whole body must arrive within `REQUEST_BODY_TIMEOUT_SECONDS` of the headers.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from .problems import Problem


class RequestTimeout(Problem):
    def __init__(self) -> None:
        super().__init__(
            408,
            "La demande est arrivée trop lentement : réessayez.",
            code="request_timeout",
            headers={"Connection": "close"},
        )


class BodyTimeoutMiddleware:
    """Bounds the time to receive a whole request body."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        complete = False

        async def timed_receive() -> Message:
            nonlocal complete
            if complete:  # after the body, receive() waits for a disconnect: no bound
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout() from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, timed_receive, send)


def _timeout_response() -> bytes:
    body = json.dumps(RequestTimeout().body(), ensure_ascii=False).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def header_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, cutting a client whose request headers take longer
    than `seconds` (pass it as `uvicorn.Config(http=…)`)."""

    class HeaderTimeoutH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._start_header_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._awaiting_headers():
                # A new request has begun on a kept-alive connection, or is still coming.
                self._start_header_timer()
            else:
                self._stop_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_header_timer()
            super().connection_lost(exc)

        def _awaiting_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _start_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(seconds, self._headers_too_slow)

        def _stop_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.transport.is_closing() or not self._awaiting_headers():
                return
            # No request was parsed yet, so h11 cannot frame an answer: write it raw.
            self.transport.write(_timeout_response())
            self.transport.close()

    return HeaderTimeoutH11Protocol
