"""Partner events: what happened to a request, told to the partner whose key made
it, as a signed webhook (Standard Webhooks; sending: `webhooks`).

`emit` is called inside the transaction that changes the request's status, right
after the change: the event is queued in the outbox with it or not at all, and
its `data` is the status as that transaction leaves it. Requests from the forms,
and keys without a webhook URL, emit nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets

import sqlalchemy as sa
from databases import Database

from . import outbox, tables
from .request_status import status_object, timestamp

DELIVERED = "request.delivered"
ANSWERED = "request.answered"
BOUNCED = "request.bounced"
WITHDRAWN = "request.withdrawn"
EVENTS = (DELIVERED, ANSWERED, BOUNCED, WITHDRAWN)


async def emit(database: Database, request_id: str, event: str, *, now: dt.datetime) -> None:
    """Queue `event` about `request_id` for its partner's webhook, if it has one.
    Call it inside the transaction of the status change."""
    if event not in EVENTS:
        raise ValueError(f"unknown partner event {event!r}")
    requests, keys = tables.contact_requests, tables.api_keys
    request = await database.fetch_one(sa.select(requests).where(requests.c.id == request_id))
    if request is None or request._mapping["api_key_id"] is None:
        return
    key = await database.fetch_one(
        sa.select(keys.c.id, keys.c.caller, keys.c.webhook_url, keys.c.revoked_at).where(
            keys.c.id == request._mapping["api_key_id"]
        )
    )
    if key is None or not key._mapping["webhook_url"] or key._mapping["revoked_at"] is not None:
        return
    body = {"type": event, "timestamp": timestamp(now), "data": status_object(request._mapping)}
    await outbox.enqueue_webhook(
        database,
        # The webhook-id: fixed now, the same on every attempt, so receivers can deduplicate.
        webhook_id=f"msg_{secrets.token_urlsafe(18)}",
        event=event,
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        api_key_id=int(key._mapping["id"]),
        partner=str(key._mapping["caller"]),
        request_id=request_id,
        now=now,
    )
