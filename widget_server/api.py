"""JSON endpoints under /api/v1 that are not about a single request kind."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import eligibility
from .problems import Problem
from .targets import BadTarget, parse_target

MAX_TARGETS = 100
# Errors too: the widget reads which target was malformed from a partner's page.
CORS = {"Access-Control-Allow-Origin": "*"}


async def eligibility_endpoint(request: Request) -> Response:
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
    state = request.app.state
    results = await eligibility.check_many(
        state.database, targets, max_offer_applications=state.settings.offer_max_applications
    )
    return JSONResponse(
        {"results": [r.as_json() for r in results]},
        headers={"Cache-Control": "public, max-age=60", "Access-Control-Allow-Origin": "*"},
    )


async def healthz(request: Request) -> Response:
    try:
        await request.app.state.database.fetch_val("SELECT 1")
    except Exception:
        return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})
