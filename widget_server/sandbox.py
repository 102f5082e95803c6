"""The sandbox: test keys and their mailbox, how a partner plays the whole loop before going live.

A test key (`widget-server keys create CALLER --test`) makes requests that are
validated and stored like any other, flagged `test`. What differs is decided in
few places, each once:

- Emails: `outbox.enqueue` copies the request's flag onto every email queued about
  it (`outbox.test_mailbox`: acknowledgement, email to the recruiter or CFA,
  reminder, answer, opt-out confirmation, bounce or withdraw notice…), and the
  worker never hands such an email to a transport: it is marked sent and stays in
  the outbox, the test mailbox of its key (`GET /api/v1/test-mailbox`). This holds
  with `SMTP_URL` set and in production, where `/dev/mailbox` does not exist; the
  request still turns `delivered`, and its webhooks are sent as any other.
- The recruiter's or CFA's address: a test request never holds it. It stores
  `contact_requests.STAND_IN_CONTACT` instead, so its emails, reply links and the
  test mailbox cannot disclose or reach a real recruiter whatever code path reads
  it (the directory's contact addresses are not public).
- Quotas count test requests apart from real ones (a partner testing with a real
  candidate's address never blocks that candidate), a test application does not
  take one of an offer's `OFFER_MAX_APPLICATIONS` places, an idempotency key of a
  test key never answers for a live key of the same partner, and test keys have
  their own `API_KEY_RATE_LIMIT` bucket.
- Opting out through a test request's link changes nothing in the directory.
- `stats`, the operator page and the outbox metrics leave test requests out
  (`stats` counts them on a line of their own), their webhooks too (`live_jobs`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import callers, tables
from .contact_requests import is_request_id
from .mailbox import message_json, parse
from .problems import Problem

# The newest messages a listing holds.
MAX_MESSAGES = 100


async def key_of_test(request: Request) -> callers.Caller:
    """The test key of `Authorization: Bearer`; 401 without a valid key, 403 for a live one."""
    caller = await callers.authenticate(request)
    if not caller.test:
        raise Problem(
            403,
            "Seule une clé de test a une boîte de test (widget-server keys create NOM --test).",
            code="not_a_test_key",
        )
    return caller


def live_jobs() -> sa.ColumnElement[bool]:
    """Outbox jobs of real traffic: not a test mailbox email, and not about a test
    request (a webhook carries no flag of its own: it is sent for real)."""
    outbox, requests = tables.outbox, tables.contact_requests
    of_test_request = sa.exists().where(requests.c.id == outbox.c.request_id, requests.c.test.is_(True))
    return sa.and_(outbox.c.test_mailbox.is_(False), sa.not_(of_test_request))


def _of_key(caller: callers.Caller) -> sa.ColumnElement[bool]:
    """The test requests made with `caller`'s key (not another key of the same partner)."""
    requests = tables.contact_requests
    return sa.and_(requests.c.test.is_(True), requests.c.api_key_id == caller.key_id)


async def messages(
    database: Any, caller: callers.Caller, request_id: str | None = None
) -> list[dict[str, Any]]:
    """The emails of `caller`'s test requests that reached the test mailbox, newest first."""
    outbox, requests, cv_files = tables.outbox, tables.contact_requests, tables.cv_files
    query = (
        sa.select(
            outbox.c.id,
            outbox.c.request_id,
            outbox.c.template,
            outbox.c.raw,
            outbox.c.attach_cv,
            outbox.c.sent_at,
            cv_files.c.filename,
            cv_files.c.content_type,
            cv_files.c.size,
        )
        .select_from(
            outbox.join(requests, requests.c.id == outbox.c.request_id).outerjoin(
                cv_files, cv_files.c.request_id == outbox.c.request_id
            )
        )
        .where(outbox.c.test_mailbox.is_(True), outbox.c.status == "sent", _of_key(caller))
        .order_by(outbox.c.sent_at.desc(), outbox.c.id.desc())
        .limit(MAX_MESSAGES)
    )
    if request_id is not None:
        query = query.where(outbox.c.request_id == request_id)
    found = []
    for row in (r._mapping for r in await database.fetch_all(query)):
        message = message_json(str(row["id"]), parse(bytes(row["raw"])))
        attachments = message["attachments"]
        if row["attach_cv"] and row["filename"] is not None:
            # Attached when sent (outbox.Worker): listed here as the recruiter would get it.
            attachments.append(
                {
                    "n": len(attachments),
                    "filename": row["filename"],
                    "content_type": row["content_type"],
                    "size": row["size"],
                }
            )
        found.append(
            {
                "id": message["id"],
                "request_id": row["request_id"],
                "template": row["template"],
                "delivered_at": row["sent_at"].isoformat() if row["sent_at"] else None,
                **{k: message[k] for k in ("date", "from", "to", "subject", "message_id", "in_reply_to")},
                "text": message["text"],
                "links": message["links"],
                "attachments": [{k: a[k] for k in ("filename", "content_type", "size")} for a in attachments],
            }
        )
    return found


async def mailbox_endpoint(request: Request) -> Response:
    state = request.app.state
    await state.throttle.hit(request, "api")
    caller = await key_of_test(request)
    request_id = request.query_params.get("request_id") or None
    if request_id is not None:
        requests = tables.contact_requests
        mine = is_request_id(request_id) and await state.database.fetch_val(
            sa.select(requests.c.id).where(requests.c.id == request_id, _of_key(caller))
        )
        if not mine:
            raise Problem(
                404, "Aucune demande de test de cette clé n'a cet identifiant.", code="unknown_request"
            )
    return JSONResponse({"messages": await messages(state.database, caller, request_id)})


routes = [Route("/api/v1/test-mailbox", mailbox_endpoint, methods=["GET"], name="test_mailbox")]
