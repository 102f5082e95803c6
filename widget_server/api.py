"""JSON endpoints under /api/v1 that are not about a single request kind."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .eligibility_cache import HTTP_MAX_AGE
from .problems import Problem
from .targets import BadTarget, Target, parse_target

MAX_TARGETS = 100
# The longest query string MAX_TARGETS well-formed targets can make (a reference
# is at most 100 characters, 3 bytes each once percent-encoded); a longer one is
# refused before it is parsed, and no answer ever echoes more than this back.
MAX_QUERY_BYTES = 32 * 1024
# Errors too: the widget on a partner's page reads them.
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


def _targets(request: Request) -> list[Target | str]:
    """The targets asked about, in order; a malformed one stays the text it was
    (answered `invalid_target` in its own result, SPEC section 11)."""
    if len(request.scope["query_string"]) > MAX_QUERY_BYTES:
        raise _bad_parameter(f"Demande trop longue : au plus {MAX_TARGETS} cibles d'au plus 100 caractères.")
    values = request.query_params.getlist("target")
    if not values:
        raise _bad_parameter("Indiquez au moins une cible : ?target=offer:ID", "paramètre obligatoire")
    if len(values) > MAX_TARGETS:
        raise _bad_parameter(f"Au plus {MAX_TARGETS} cibles par demande.", f"au plus {MAX_TARGETS} valeurs")
    targets: list[Target | str] = []
    for value in values:
        try:
            targets.append(parse_target(value))
        except BadTarget:
            targets.append(value)
    return targets


def _bad_parameter(detail: str, message: str | None = None) -> Problem:
    return Problem(
        400,
        detail,
        code="bad_parameter",
        errors=[{"field": "target", "message": message or detail}],
        headers=CORS,
    )


async def healthz(request: Request) -> Response:
    try:
        await request.app.state.database.fetch_val("SELECT 1")
    except Exception:
        return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})
