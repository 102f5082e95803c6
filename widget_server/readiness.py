"""`GET /readyz`: whether this instance can serve requests now. A load balancer
or an orchestrator sends traffic only to an instance answering 200: the
database answers, and every migration this code knows is applied (an instance
started before `migrate` ran, or pointed at the wrong database, stays out).
`/healthz` only says the process is alive."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import migrations

log = logging.getLogger("widget_server.readiness")
NO_STORE = {"Cache-Control": "no-store"}


async def readyz(request: Request) -> Response:
    database = request.app.state.database
    try:
        await database.fetch_val("SELECT 1")
    except Exception as exc:  # any failure to reach it means not ready, never a 500
        log.warning("not ready: database unreachable (%s)", type(exc).__name__)
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503, headers=NO_STORE)
    try:
        applied = await migrations.applied_versions(database)
    except Exception:  # no schema_migrations table: a database never migrated
        applied = set()
    missing = sorted({m.version for m in migrations.MIGRATIONS} - applied)
    if missing:
        return JSONResponse(
            {"status": "unavailable", "database": "ok", "migrations_pending": missing}, 503, headers=NO_STORE
        )
    return JSONResponse(
        {"status": "ready", "database": "ok", "migration": migrations.LATEST}, headers=NO_STORE
    )
