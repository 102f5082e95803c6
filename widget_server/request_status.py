"""`GET /api/v1/requests/{id}`: where a request stands, for the partner key that
made it (SPEC section 11). The same status object is the `data` of every
partner event (`partner_events`).

It says nothing about the candidate: no name, address, phone or message — only
what the partner already knows (the id it was given, the kind and target it
sent) and what happened since.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import callers, tables
from .contact_requests import is_request_id
from .problems import Problem

# The keys of the status object, in order (a test checks nothing else is in it).
FIELDS = ("id", "kind", "target", "status", "created_at", "delivered_at", "answer", "test")


def timestamp(value: dt.datetime) -> str:
    """RFC 3339 in UTC, e.g. `2026-11-29T05:09:38.123456Z`."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def status_object(row: Mapping[str, Any]) -> dict[str, Any]:
    """The status of the request `row` (a `contact_requests` row)."""
    answered_at = row["answered_at"]
    delivered_at = row["delivered_at"]
    return {
        "id": row["id"],
        "kind": row["kind"],
        "target": f"{row['target_kind']}:{row['target_ref']}",
        "status": row["status"],
        "created_at": timestamp(row["created_at"]),
        "delivered_at": timestamp(delivered_at) if delivered_at is not None else None,
        "answer": (
            {"kind": row["answer"], "at": timestamp(answered_at)}
            if answered_at is not None and row["answer"]
            else None
        ),
        # Made with a test key: its emails only reached the key's test mailbox (sandbox.py).
        "test": bool(row["test"]),
    }


async def endpoint(request: Request) -> Response:
    state = request.app.state
    await state.throttle.hit(request, "api")
    caller = await callers.authenticate(request)
    await state.throttle.hit_caller(caller.name, test=caller.test)
    requests = tables.contact_requests
    request_id = request.path_params["id"]
    row = is_request_id(request_id) and await state.database.fetch_one(
        sa.select(requests).where(requests.c.id == request_id, requests.c.api_key_id == caller.key_id)
    )
    # Another key's request and an unknown id get the same answer: ids are not confirmed.
    if not row:
        raise Problem(404, "Cette demande est introuvable avec cette clé d'API.", code="unknown_request")
    return JSONResponse(status_object(row._mapping), headers={"Cache-Control": "no-store"})
