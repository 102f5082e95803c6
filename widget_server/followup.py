"""The candidate's follow-up page, `/suivi/<token>`: where their request stands
(sent, delivered, reminder sent, answered with the answer, bounced or
withdrawn), and `/suivi/<token>/retirer` to withdraw it.

The link is private: a reply token (action `followup`) sent in the
acknowledgement and shown on the form's success page, never in the API's
answer, which goes to the partner. As on the quick-reply pages, a GET never
changes anything (mail scanners open links): the withdrawal page's GET asks
for confirmation, and only its POST, carrying the signed check of that page,
acts. The page shows what the service did, never whether an email was opened:
there is no tracking.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response

from . import reply_tokens, tables, withdrawals
from .contact_requests import ANSWERED, BOUNCED, OPEN, WITHDRAWN, StoredRequest, load, load_by_link
from .form_tokens import FormToken, InvalidFormToken
from .kinds import PRO_EMAILS
from .pages import private_page
from .problems import Problem
from .replies import answer_as_sent

_CHECK = "withdraw"


@dataclass(frozen=True)
class Step:
    """One line of the timeline: `state` is done, waiting or stopped."""

    title: str
    state: str
    at: dt.datetime | None = None
    text: str = ""


async def page(request: Request) -> Response:
    """GET (and HEAD): where the request stands."""
    _, stored = await _find(request)
    return _render(request, "pages/followup.html", await _view(request, stored), 200)


async def withdraw_page(request: Request) -> Response:
    """GET: what withdrawing does, and a button; POST: withdraw."""
    state = request.app.state
    found, stored = await _find(request)
    view = await _view(request, stored)
    view["check"] = state.form_tokens.issue(_CHECK, found["token_hash"], _CHECK)
    if request.method != "POST" or not await _checked(request, found):
        if not view["can_withdraw"]:
            # Already withdrawn, answered or bounced: say where it stands.
            return _render(request, "pages/followup.html", view, 200)
        view["expired"] = request.method == "POST"
        return _render(request, "pages/followup_withdraw.html", view, 400 if view["expired"] else 200)
    # Withdraws only an open request, once: a second POST changes nothing more.
    result = await withdrawals.withdraw(state.database, state.settings, stored.row["id"])
    if result.withdrawn:
        state.outbox_worker.wake()  # the notice, the partner's event
    fresh = await load(state.database, stored.row["id"])
    assert fresh is not None
    return _render(
        request,
        "pages/followup.html",
        {**await _view(request, fresh), "just_withdrawn": result.withdrawn},
        200,
    )


async def _checked(request: Request, found: dict[str, Any]) -> bool:
    """Whether the POST carries the check of this link's confirmation page."""
    async with request.form(max_fields=5, max_files=0) as form:
        check = str(form.get("check") or "")
    try:
        token: FormToken = request.app.state.form_tokens.read(check)
    except InvalidFormToken:
        return False
    return token.kind == _CHECK and token.target == found["token_hash"]


async def _find(request: Request) -> tuple[dict[str, Any], StoredRequest]:
    link = await load_by_link(
        request.app.state.database, request.path_params["token"], (reply_tokens.FOLLOWUP,)
    )
    # An expired link, or another kind of token, is no follow-up link. Anonymising
    # or forgetting a request deletes its tokens: no link leads to it.
    found, stored = link or ({}, None)
    if stored is None or found["expires_at"] < dt.datetime.now(dt.UTC):
        raise Problem(
            404,
            "Ce lien de suivi n'existe pas ou n'est plus valable. Vérifiez qu'il est complet : "
            "vous le trouverez dans l'e-mail de confirmation de votre demande.",
        )
    return found, stored


async def _sent_times(request: Request, request_id: str) -> dict[str, dt.datetime]:
    """When each email about the request left (the first of each template)."""
    box = tables.outbox
    rows = await request.app.state.database.fetch_all(
        sa.select(box.c.template, box.c.sent_at, box.c.created_at)
        .where(box.c.request_id == request_id, box.c.status == "sent")
        .order_by(box.c.id)
    )
    times: dict[str, dt.datetime] = {}
    for row in rows:
        times.setdefault(row._mapping["template"], row._mapping["sent_at"] or row._mapping["created_at"])
    return times


async def _view(request: Request, stored: StoredRequest) -> dict[str, Any]:
    row, view = stored.row, stored.view
    candidature = stored.kind.name == "candidature"
    times = await _sent_times(request, row["id"])
    delivered_at = min((times[t] for t in PRO_EMAILS if t in times), default=None)
    who = view["company_name"] or ("le recruteur" if candidature else "l'établissement")
    noun = "candidature" if candidature else "demande"
    status = row["status"]

    steps = [Step(f"{noun.capitalize()} envoyée", "done", row["created_at"])]
    if delivered_at is not None:
        steps.append(Step(f"Remise à {who}", "done", delivered_at, "Elle est arrivée dans sa boîte mail."))
    elif status == BOUNCED:
        steps.append(
            Step(
                f"Pas remise à {who}",
                "stopped",
                row["updated_at"],
                f"Son adresse e-mail ne fonctionne pas : nous n'avons pas pu lui transmettre votre {noun}.",
            )
        )
    elif status == WITHDRAWN:
        steps.append(Step(f"Pas remise à {who}", "stopped", None, "Vous l'avez retirée avant."))
    else:
        steps.append(
            Step(f"Remise à {who}", "waiting", None, "En cours d'envoi : c'est l'affaire de minutes.")
        )
    if "reminder" in times:
        steps.append(
            Step(
                "Relance envoyée",
                "done",
                times["reminder"],
                f"Sans réponse, nous avons rappelé votre {noun} à {who}.",
            )
        )
    answer = answer_as_sent(stored) if status == ANSWERED else None
    if status == ANSWERED:
        steps.append(Step(f"Réponse de {who}", "done", row["answered_at"]))
    elif status == WITHDRAWN:
        told = f"nous avons prévenu {who} en une ligne." if delivered_at else f"{who} ne la recevra pas."
        steps.append(
            Step(
                f"{noun.capitalize()} retirée",
                "stopped",
                row["withdrawn_at"],
                f"Vous l'avez retirée : {told}",
            )
        )
    elif status != BOUNCED:
        steps.append(
            Step(
                "Réponse",
                "waiting",
                None,
                f"{_capital(who)} peut vous répondre en un clic : vous recevrez sa réponse par e-mail, "
                "et elle s'affichera ici. Sans nouvelles d'ici 10 jours, appelez : cela montre votre "
                "motivation."
                if candidature
                else f"{_capital(who)} vous répondra par e-mail ou par téléphone.",
            )
        )
    return {
        "stored": stored,
        "row": row,
        "target": view,
        "kind": stored.kind,
        "noun": noun,
        "who": who,
        "steps": steps,
        "answer": answer,
        "delivered": delivered_at is not None,
        "can_withdraw": status in OPEN,
        "token_path": f"/suivi/{request.path_params['token']}",
    }


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _render(request: Request, name: str, context: dict[str, Any], status: int) -> Response:
    response: Response = request.app.state.templates.TemplateResponse(
        request, name, context, status_code=status
    )
    private_page(response)
    return response
