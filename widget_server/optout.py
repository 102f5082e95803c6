"""Opting out, and back in: `/optout/<token>`.

A company stops spontaneous applications, a CFA stops rdv requests, a recruiter
stops applications to one offer (the offer closes). GET shows what will happen;
POST applies it, and so does a mail client's RFC 8058 one-click POST. It takes
effect at once (the target turns ineligible) and a confirmation email carries a
link to undo it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from databases import Database
from starlette.requests import Request
from starlette.responses import Response

from . import contacts, emails, outbox, reply_tokens, tables
from .contact_requests import StoredRequest, load_by_link
from .pages import private_page
from .problems import Problem
from .resources import write_transaction
from .targets import CLOSED_BY_RECRUITER

UNDO_DAYS = 60


async def opted_out_since(database: Database, stored: StoredRequest, email: str) -> dt.datetime | None:
    """When the contact stopped these requests (an offer: when the service closed it), or None."""
    column = stored.target.spec.opt_out_column
    if column is None:
        offers = tables.offers
        value = await database.fetch_val(
            sa.select(offers.c.closed_at).where(
                offers.c.offer_id == stored.target.ref, offers.c.closed_reason.is_not(None)
            )
        )
    else:
        value = await database.fetch_val(
            sa.select(tables.contacts.c[column]).where(tables.contacts.c.email == email)
        )
    return value if isinstance(value, dt.datetime) else None


async def set_opt_out(
    database: Database, stored: StoredRequest, email: str, on: bool, now: dt.datetime
) -> None:
    if stored.row["test"]:
        # A test request's links play the opt-out and its undo (the confirmation goes
        # to the test mailbox) but never change the real directory.
        return
    column = stored.target.spec.opt_out_column
    if column is None:
        # `closed_reason`, not `status`: the directory import owns `status` and
        # rewrites it; the recruiter's decision must outlive the next import.
        # Undoing reopens only what an opt-out closed: not an offer filled since.
        offers = tables.offers
        query = offers.update().where(offers.c.offer_id == stored.target.ref)
        if not on:
            query = query.where(offers.c.closed_reason == CLOSED_BY_RECRUITER)
        await database.execute(
            query.values(closed_reason=CLOSED_BY_RECRUITER if on else None, closed_at=now if on else None)
        )
    elif on:
        await contacts.mark(database, email, {column: now})
    else:
        await contacts.clear(database, email, column)


async def optout_page(request: Request) -> Response:
    state = request.app.state
    link = await load_by_link(state.database, request.path_params["token"], ("optout", "optin"))
    if link is None:
        raise Problem(404, "Ce lien n'existe pas. Vérifiez qu'il est complet.")
    found, stored = link
    if stored is None:
        raise Problem(404, "Ce lien n'est plus valable.")
    undo = found["action"] == "optin"
    now = dt.datetime.now(dt.UTC)
    # An unsubscribe link keeps working after its reply buttons expired; an undo link does not.
    if undo and found["expires_at"] < now:
        raise Problem(410, "Ce lien a expiré. Écrivez-nous pour recevoir à nouveau les demandes.")
    email = found["contact_email"]
    page: dict[str, Any] = {
        "target": stored.view,
        "scope": stored.target.spec.opt_out_scope,
        "undo": undo,
        "one_click": False,
    }
    if request.method != "POST":
        page["since"] = await opted_out_since(state.database, stored, email)
        page["state"] = "in" if page["since"] is None else "opted_out"
        return _render(request, page)

    body = await request.body()
    page["one_click"] = b"List-Unsubscribe=One-Click" in body
    async with write_transaction(state.database):
        was_out = await opted_out_since(state.database, stored, email) is not None
        if undo:
            if was_out:
                await set_opt_out(state.database, stored, email, False, now)
        elif not was_out:
            await set_opt_out(state.database, stored, email, True, now)
            await _confirm(state, stored, email, now)
        page["since"] = await opted_out_since(state.database, stored, email)
    if not undo and not was_out:
        state.outbox_worker.wake()
    if stored.row["test"]:
        # Played, not applied: the page says what a real click would have done.
        page["since"] = None if undo else now
    # What is true now: an undo leaves an offer filled since closed.
    page["state"] = "in" if page["since"] is None else "opted_out"
    page["done"] = True
    return _render(request, page)


async def _confirm(state: Any, stored: StoredRequest, email: str, now: dt.datetime) -> None:
    settings = state.settings
    undo_url, row = reply_tokens.issue(
        stored.row["id"],
        email,
        "optin",
        ttl=dt.timedelta(days=UNDO_DAYS),
        public_url=settings.public_url,
        now=now,
    )
    await reply_tokens.store(state.database, [row])
    context = {
        **stored.context(settings.public_url),
        "undo_url": undo_url,
        "scope": stored.target.spec.opt_out_scope,
    }
    message = emails.compose(
        settings, "optout_confirmed", context, to=emails.address(stored.view["contact_name"], email), now=now
    )
    await outbox.enqueue(
        state.database, message, template="optout_confirmed", request_id=stored.row["id"], now=now
    )


def _render(request: Request, page: dict[str, Any]) -> Response:
    response: Response = request.app.state.templates.TemplateResponse(request, "pages/optout.html", page)
    private_page(response)
    return response
