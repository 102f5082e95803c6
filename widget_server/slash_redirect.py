"""The trailing-slash redirect (`/healthz/` → `/healthz`), built from `PUBLIC_URL`
(issue #9, item 7).

Starlette's own redirect writes `Location` from the request's `Host` header, which
the client chooses: a forged Host turned the service into an open redirect (and a
cache-poisoning helper behind a shared cache). This one is the same lookup with the
service's own base URL.
"""

from __future__ import annotations

from starlette.responses import RedirectResponse
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send


def install(router: Router, public_url: str) -> None:
    """Replace `router`'s slash redirect with one to `public_url`; other misses stay 404."""
    router.redirect_slashes = False
    router.default = _redirect_or(router, public_url.rstrip("/"), router.default)


def _redirect_or(router: Router, public_url: str, not_found: ASGIApp) -> ASGIApp:
    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if scope["type"] == "http" and path not in ("", "/"):
            other = path.rstrip("/") if path.endswith("/") else path + "/"
            moved = {**scope, "path": scope["path"][: len(scope["path"]) - len(path)] + other}
            if any(route.matches(moved)[0] is not Match.NONE for route in router.routes):
                query = scope.get("query_string", b"").decode("latin-1")
                location = public_url + other + (f"?{query}" if query else "")
                await RedirectResponse(location)(scope, receive, send)
                return
        await not_found(scope, receive, send)

    return default
