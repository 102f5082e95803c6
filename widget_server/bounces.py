"""A contact address that bounces: the contact turns ineligible and every candidate
waiting on it is told (for rdv, with the CFA's phone), once."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import sqlalchemy as sa
from databases import Database
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import callers, contacts, emails, outbox, partner_events, tables
from .contact_requests import BOUNCED, OPEN, ack_message_id, load
from .json_body import parse_json
from .kinds import PRO_EMAILS
from .problems import Problem
from .resources import write_transaction
from .settings import Settings
from .validation import FieldErrors, clean_email, email_identity, strip_unrenderable

log = logging.getLogger("widget_server.bounces")

# Emails whose recipient is a directory contact; a bounce of any other is the candidate's.
PRO_TEMPLATES = frozenset({*PRO_EMAILS, "reminder"})


async def record_bounce(
    database: Database,
    settings: Settings,
    email: str,
    reason: str,
    *,
    request_ids: list[str] | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Marks `email` as bouncing and tells the candidates of its open requests
    (only `request_ids` when given). Returns how many candidates were told."""
    now = now or dt.datetime.now(dt.UTC)
    email = email_identity(email)
    requests = tables.contact_requests
    # One UPDATE picks and marks the open requests: a request withdrawn or answered
    # meanwhile is not turned into a bounce (a SELECT then an UPDATE would race).
    query = requests.update().where(
        sa.func.lower(requests.c.contact_email) == email, requests.c.status.in_(OPEN)
    )
    if request_ids is not None:
        query = query.where(requests.c.id.in_(request_ids))
    query = query.values(status=BOUNCED, updated_at=now).returning(*requests.c)
    told = 0
    async with write_transaction(database):
        await contacts.mark(database, email, {"bounced_at": now, "bounce_reason": reason[:500]})
        for row in await database.fetch_all(query):
            await _tell_candidate(database, settings, dict(row._mapping), now)
            told += 1
    return told


async def _tell_candidate(
    database: Database, settings: Settings, row: dict[str, Any], now: dt.datetime
) -> None:
    stored = await load(database, row["id"])
    assert stored is not None
    message = emails.compose(
        settings,
        "delivery_failed",
        stored.context(settings.public_url),
        to=emails.address(f"{row['first_name']} {row['last_name']}", row["email"]),
        in_reply_to=await ack_message_id(database, stored),
        now=now,
    )
    await outbox.enqueue(database, message, template="delivery_failed", request_id=row["id"], now=now)
    await partner_events.emit(database, row["id"], partner_events.BOUNCED, now=now)


def on_recipient_refused(
    database: Database, settings: Settings
) -> Callable[[Mapping[str, Any], str], Awaitable[None]]:
    """The outbox worker's hook for a refused recipient (a bounce); other refusals
    only fail their message (see `outbox`)."""

    async def hook(row: Mapping[str, Any], error: str) -> None:
        if row["template"] not in PRO_TEMPLATES:
            log.warning("candidate address refused for message %s: %s", row["message_id"], error)
            return
        request_ids = [row["request_id"]] if row["request_id"] else []
        await record_bounce(database, settings, row["recipient"], error, request_ids=request_ids)

    return hook


async def webhook(request: Request) -> Response:
    """`POST /api/v1/bounces` (operator key): a mail provider reports hard bounces,
    as `{"email", "reason"}` or `{"bounces": [{"email", "reason"}, …]}`."""
    state = request.app.state
    await callers.authenticate(request, role="operator")
    payload = parse_json(await request.body())
    items = payload.get("bounces", [payload]) if isinstance(payload, dict) else None
    if not isinstance(items, list) or not items or len(items) > 1000:
        raise Problem(
            400, 'Envoyez {"email", "reason"} ou {"bounces": [...]} (1 000 au plus).', code="invalid_json"
        )
    errors = FieldErrors()
    reports: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        field = "email" if len(items) == 1 and "bounces" not in payload else f"bounces[{index}].email"
        if not isinstance(item, dict):
            errors.add(field, "Objet attendu.")
            continue
        address = clean_email(errors, field, item.get("email"))
        # Free text from the provider: no NUL or lone surrogate (PostgreSQL refuses
        # them in text: a 500), nothing a page showing it could not render.
        reason = strip_unrenderable(str(item.get("reason") or "")) or "reported by webhook"
        reports.append((address, reason[:500]))
    if errors:
        raise errors.problem()
    told = 0
    for address, reason in reports:
        told += await record_bounce(state.database, state.settings, address, reason)
    state.outbox_worker.wake()
    return JSONResponse({"recorded": len(reports), "candidates_told": told}, status_code=202)
