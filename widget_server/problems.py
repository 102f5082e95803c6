"""Client errors as RFC 9457 problem+json on the API and as a French page elsewhere.

Unexpected exceptions are logged with the request id and answered with a bare
500 that shows no internals.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logs import REQUEST_ID

log = logging.getLogger("widget_server")

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
}

FRENCH = {
    400: ("Demande incorrecte", "La demande n'a pas pu être comprise."),
    401: ("Accès refusé", "Une clé d'accès valide est nécessaire."),
    403: ("Accès refusé", "Vous n'avez pas accès à cette page."),
    404: ("Page introuvable", "Cette page n'existe pas ou plus."),
    405: ("Action impossible", "Cette action n'est pas possible sur cette page."),
    408: ("Envoi trop lent", "La demande est arrivée trop lentement : réessayez."),
    409: ("Action impossible", "Cette action n'est plus possible."),
    410: ("Lien expiré", "Ce lien a expiré."),
    413: ("Envoi trop lourd", "Le fichier ou le formulaire envoyé est trop lourd."),
    415: ("Format non accepté", "Ce format de fichier n'est pas accepté."),
    422: ("Informations à corriger", "Certaines informations sont à corriger."),
    429: ("Trop de demandes", "Trop de demandes en peu de temps : réessayez dans un moment."),
    500: ("Erreur du service", "Une erreur est survenue de notre côté. Réessayez dans un moment."),
}


class Problem(Exception):
    """A client error the API answers as problem+json (and pages as a French page)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        errors: Sequence[Mapping[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.errors = list(errors or [])
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://labonnealternance.example/problems/{self.code}" if self.code else "about:blank",
            "title": TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.code:
            body["code"] = self.code
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


def request_id(scope: Scope) -> str:
    state = scope.setdefault("state", {})
    if "request_id" not in state:
        state["request_id"] = secrets.token_hex(8)
    return str(state["request_id"])


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path.startswith("/dev/api")


def problem_response(request: Request, problem: Problem) -> Response:
    headers = {"X-Request-Id": request_id(request.scope), **problem.headers}
    if _wants_json(request):
        return JSONResponse(
            problem.body(request.url.path),
            status_code=problem.status,
            headers=headers,
            media_type="application/problem+json",
        )
    return error_page(request, problem.status, problem.detail, headers)


def error_page(
    request: Request, status: int, detail: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    title, default = FRENCH.get(status, FRENCH[400] if status < 500 else FRENCH[500])
    templates = getattr(request.app.state, "templates", None)
    if templates is None:
        return HTMLResponse(f"<h1>{title}</h1>", status_code=status, headers=headers)
    return templates.TemplateResponse(  # type: ignore[no-any-return]
        request,
        "pages/error.html",
        {"title": title, "detail": detail or default, "status": status},
        status_code=status,
        headers=dict(headers or {}),
    )


async def on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(request, exc)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code < 400:
        return Response(status_code=exc.status_code, headers=exc.headers)
    default = FRENCH.get(exc.status_code, FRENCH[400])[1]
    detail = exc.detail if exc.detail not in (None, "") and not _is_default(exc) else default
    return problem_response(request, Problem(exc.status_code, detail, headers=exc.headers))


def _is_default(exc: HTTPException) -> bool:
    # Starlette fills `detail` with the English reason phrase; show ours instead.
    from http import HTTPStatus

    try:
        return bool(exc.detail == HTTPStatus(exc.status_code).phrase)
    except ValueError:
        return False


async def on_server_error(request: Request, exc: Exception) -> Response:
    rid = request_id(request.scope)
    log.exception("unexpected error on %s %s [request %s]", request.method, request.url.path, rid)
    problem = Problem(500, f"{FRENCH[500][1]} (référence : {rid})")
    if _wants_json(request):
        return JSONResponse(
            problem.body(),
            status_code=500,
            media_type="application/problem+json",
            headers={"X-Request-Id": rid},
        )
    return error_page(request, 500, problem.detail, {"X-Request-Id": rid})


class RequestIdMiddleware:
    """Gives every request an id, sent back in `X-Request-Id` and named in error logs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        # Log lines written while this request is answered carry its id (logs.py).
        # Not reset on the way out: the server error handler logs outside this
        # middleware, and each request runs in a task of its own, whose context dies with it.
        REQUEST_ID.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


EXCEPTION_HANDLERS = {
    Problem: on_problem,
    HTTPException: on_http_exception,
    Exception: on_server_error,
}
