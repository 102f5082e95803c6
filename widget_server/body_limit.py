"""Refuses request bodies over MAX_BODY_BYTES before they are read into memory."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import Problem


class BodyTooLarge(Problem):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"L'envoi doit faire au plus {limit // (1024 * 1024)} Mo.", code="body_too_large"
        )


class BodyLimitMiddleware:
    """Checks Content-Length up front, and counts the bytes of a chunked body as they come."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        from starlette.requests import Request

        from .problems import problem_response

        request = Request(scope, receive)
        response = problem_response(request, BodyTooLarge(self.max_bytes))
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
