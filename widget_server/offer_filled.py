""" "L'offre est pourvue": `/filled/<token>`, the third, smaller action of the
email about an application to a posted offer (SPEC section 7).

A GET (or HEAD) only shows what will happen. Only the POST from that page acts,
once per link: the offer closes for every partner at once (`closed_reason`
"filled", which no directory import reopens), this candidate is told politely
that the position is filled, and so are the other applications to the offer
still waiting for an answer, only if the recruiter ticked the box for them.
Later visits and replayed POSTs show what was done and send nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from databases import Database
from starlette.requests import Request
from starlette.responses import Response

from . import tables
from .contact_requests import OPEN, StoredRequest, load, load_by_link
from .form_tokens import InvalidFormToken
from .kinds import OFFER_FILLED
from .pages import private_page
from .problems import Problem
from .replies import ANSWERS, record_answer
from .resources import write_transaction
from .targets import CLOSED_FILLED

FILLED = ANSWERS[OFFER_FILLED.code]


async def filled_page(request: Request) -> Response:
    state = request.app.state
    link = await load_by_link(state.database, request.path_params["token"], (OFFER_FILLED.code,))
    if link is None:
        raise Problem(404, "Ce lien n'existe pas. Vérifiez qu'il est complet.")
    found, stored = link
    if stored is None or stored.row["anonymised_at"] is not None or stored.target.kind != "offer":
        raise Problem(410, "Cette demande n'est plus disponible.")
    if found["used_at"] is not None:
        return await _done(request, stored, found["used_at"], just_done=False)
    if found["expires_at"] < dt.datetime.now(dt.UTC):
        raise Problem(
            410,
            "Ce lien a expiré. Pour fermer l'offre, écrivez-nous ; vous pouvez répondre "
            "au candidat directement par e-mail ou par téléphone.",
        )
    if request.method == "POST":
        async with request.form(max_fields=10, max_files=0) as form:
            check, others = str(form.get("check") or ""), form.get("others") == "yes"
        return await _act(request, stored, found, check, others)
    return await _ask(request, stored, found, summary=[])


async def _ask(
    request: Request, stored: StoredRequest, found: dict[str, Any], summary: list[dict[str, str]]
) -> Response:
    state = request.app.state
    offer = await _offer(state.database, stored)
    answer = ANSWERS.get(stored.row["answer"] or "")
    page = {
        **_page(request, stored),
        "check": state.form_tokens.issue("filled", found["token_hash"], "filled"),
        "offer_closed": offer is not None and (offer["status"] != "active" or offer["closed_reason"]),
        "answered_status": answer.status if stored.row["answered_at"] and answer else None,
        "pending_others": len(await _pending_others(state.database, stored)),
        "summary": summary,
    }
    return _render(request, page, 400 if summary else 200)


async def _act(
    request: Request, stored: StoredRequest, found: dict[str, Any], check: str, others: bool
) -> Response:
    state = request.app.state
    try:
        token = state.form_tokens.read(check)
        if token.kind != "filled" or token.target != found["token_hash"]:
            raise InvalidFormToken("another page")
    except InvalidFormToken:
        message = "Cette page a expiré : vérifiez votre choix et confirmez à nouveau."
        return await _ask(request, stored, found, summary=[{"field": "", "message": message}])

    now = dt.datetime.now(dt.UTC)
    database = state.database
    details = {"by": found["contact_email"], "via": OFFER_FILLED.code, "filled_from": stored.row["id"]}
    async with write_transaction(database):
        # One use per link: a replayed or concurrent POST does nothing.
        tokens = tables.reply_tokens
        claimed = await database.fetch_val(
            tokens.update()
            .where(tokens.c.token_hash == found["token_hash"], tokens.c.used_at.is_(None))
            .values(used_at=now)
            .returning(tokens.c.token_hash)
        )
        if claimed is not None:
            await _close(database, stored, now)
            told = [stored, *(await _pending_others(database, stored) if others else [])]
            for each in told:
                await record_answer(state, each, FILLED, "", details, now, open_only=True)
    if claimed is None:
        used_at = await database.fetch_val(
            sa.select(tables.reply_tokens.c.used_at).where(
                tables.reply_tokens.c.token_hash == found["token_hash"]
            )
        )
        return await _done(request, stored, used_at, just_done=False)
    state.outbox_worker.wake()
    return await _done(request, stored, now, just_done=True)


async def _close(database: Database, stored: StoredRequest, now: dt.datetime) -> None:
    """Closed for every partner (eligibility reads `closed_reason`, and a committed
    write empties this instance's eligibility cache). "filled" replaces an
    opt-out's reason: undoing that opt-out must not reopen a filled offer."""
    if stored.row["test"]:
        # A test request's link plays the answers (to the test mailbox) but never
        # closes the real offer.
        return
    offers = tables.offers
    await database.execute(
        offers.update()
        .where(
            offers.c.offer_id == stored.target.ref,
            sa.or_(offers.c.closed_reason.is_(None), offers.c.closed_reason != CLOSED_FILLED),
        )
        .values(status="closed", closed_reason=CLOSED_FILLED, closed_at=now, updated_at=now)
    )


async def _pending_others(database: Database, stored: StoredRequest) -> list[StoredRequest]:
    """The other applications to this offer still waiting for an answer: real ones
    for a real request; for a test request, only its partner's test requests."""
    requests = tables.contact_requests
    conditions = [
        requests.c.target_kind == stored.target.kind,
        requests.c.target_ref == stored.target.ref,
        requests.c.id != stored.row["id"],
        requests.c.answered_at.is_(None),
        requests.c.status.in_(OPEN),
        requests.c.anonymised_at.is_(None),
        requests.c.test.is_(bool(stored.row["test"])),
    ]
    if stored.row["test"]:
        conditions.append(requests.c.caller == stored.row["caller"])
    rows = await database.fetch_all(
        requests.select().where(*conditions).order_by(requests.c.created_at, requests.c.id)
    )
    return [StoredRequest(dict(r._mapping), stored.kind, stored.target, stored.view) for r in rows]


async def _done(
    request: Request, stored: StoredRequest, used_at: dt.datetime, *, just_done: bool
) -> Response:
    """What was done from this link, read back from the stored answers."""
    database = request.app.state.database
    fresh = await load(database, stored.row["id"]) or stored
    requests = tables.contact_requests
    answered = await database.fetch_all(
        sa.select(requests.c.id, requests.c.answer_details).where(
            requests.c.target_kind == stored.target.kind,
            requests.c.target_ref == stored.target.ref,
            requests.c.answer == OFFER_FILLED.code,
        )
    )
    from_here = {
        r._mapping["id"]
        for r in answered
        if json.loads(r._mapping["answer_details"] or "{}").get("filled_from") == stored.row["id"]
    }
    answer = ANSWERS.get(fresh.row["answer"] or "")
    page = {
        **_page(request, fresh),
        "done": True,
        "just_done": just_done,
        "used_at": used_at,
        "candidate_told": fresh.row["id"] in from_here,
        "answered_status": answer.status if fresh.row["answered_at"] and answer else None,
        "others_told": len(from_here - {fresh.row["id"]}),
        "pending_others": len(await _pending_others(database, fresh)),
    }
    return _render(request, page, 200)


async def _offer(database: Database, stored: StoredRequest) -> dict[str, Any] | None:
    offers = tables.offers
    row = await database.fetch_one(
        sa.select(offers.c.status, offers.c.closed_reason).where(offers.c.offer_id == stored.target.ref)
    )
    return dict(row._mapping) if row else None


def _page(request: Request, stored: StoredRequest) -> dict[str, Any]:
    return {
        "row": stored.row,
        "target": stored.view,
        "topics": stored.context(request.app.state.settings.public_url)["topics"],
        "done": False,
    }


def _render(request: Request, page: dict[str, Any], status: int) -> Response:
    response: Response = request.app.state.templates.TemplateResponse(
        request, "pages/offer_filled.html", page, status_code=status
    )
    private_page(response)
    return response
