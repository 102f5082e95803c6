"""JSON endpoints under /api/v1 that are not about a single request kind."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .eligibility_cache import HTTP_MAX_AGE
from .problems import Problem
from .targets import BadTarget, Target, parse_target

MAX_TARGETS = 100
# Errors too: the widget reads which target was malformed from a partner's page.
CORS = {"Access-Control-Allow-Origin": "*"}


async def eligibility_endpoint(request: Request) -> Response:
    cache = request.app.state.eligibility_cache
    query = request.scope["query_string"]
    body = cache.page(query)
    if body is None:
        body = await cache.answer(_targets(request), query)
    return Response(
        body,
        media_type="application/json",
        # Short: an opt-out must hide the button within seconds (eligibility_cache).
        headers={"Cache-Control": f"public, max-age={HTTP_MAX_AGE}", "Access-Control-Allow-Origin": "*"},
    )


def _targets(request: Request) -> list[Target]:
    values = request.query_params.getlist("target")
    if not values:
        raise Problem(
            400,
            "Indiquez au moins une cible : ?target=offer:ID",
            code="bad_parameter",
            errors=[{"field": "target", "message": "paramètre obligatoire"}],
            headers=CORS,
        )
    if len(values) > MAX_TARGETS:
        raise Problem(
            400,
            f"Au plus {MAX_TARGETS} cibles par demande.",
            code="bad_parameter",
            errors=[{"field": "target", "message": f"au plus {MAX_TARGETS} valeurs"}],
            headers=CORS,
        )
    targets = []
    errors = []
    for index, value in enumerate(values):
        try:
            targets.append(parse_target(value))
        except BadTarget as exc:
            errors.append({"field": f"target[{index}]", "message": str(exc)})
    if errors:
        raise Problem(
            400, "Certaines cibles sont mal formées.", code="bad_parameter", errors=errors, headers=CORS
        )
    return targets


async def healthz(request: Request) -> Response:
    try:
        await request.app.state.database.fetch_val("SELECT 1")
    except Exception:
        return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})
