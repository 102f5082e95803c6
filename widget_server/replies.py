"""Quick replies: `/reply/<token>`, one view for every answer of both kinds.

Mail security scanners open every link of an email, sometimes in a headless
browser: a GET (or HEAD) only shows the request and a pre-filled answer. Only the
POST from that page acts, once: the first answer wins and is sent to the
candidate at once; later visits show it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from . import emails, outbox, partner_events, reply_tokens, tables
from .contact_requests import ANSWERED, WITHDRAWN, StoredRequest, ack_message_id, load
from .form_tokens import InvalidFormToken
from .kinds import REFUSAL_REASONS
from .pages import private_page
from .problems import Problem
from .resources import write_transaction
from .validation import FieldErrors, clean_email, clean_message, clean_phone, display_phone


@dataclass(frozen=True)
class Answer:
    """What one answer says to the candidate; `{…}` are filled from the request."""

    code: str
    emails_candidate: bool
    subject: str = ""
    headline: str = ""
    intro: str = ""
    outro: str = ""
    default_message: str = ""
    asks_contact: bool = False
    asks_reasons: bool = False
    done: str = ""


ANSWERS = {
    a.code: a
    for a in (
        Answer(
            "accept",
            True,
            subject="Suite donnée à votre candidature – {company}",
            headline="Bonne nouvelle, {first_name} : {company} donne suite à votre candidature !",
            intro="Voici son message :",
            outro="Répondez vite : c'est le moment de montrer votre motivation.",
            default_message="Bonjour {first_name},\n\nMerci pour votre candidature. Votre profil "
            "nous intéresse : nous aimerions échanger avec vous. Contactez-nous pour "
            "convenir d'un rendez-vous.\n\nÀ bientôt,\n{company}",
            asks_contact=True,
            done="Votre réponse a été envoyée au candidat.",
        ),
        Answer(
            "refuse",
            True,
            subject="Réponse à votre candidature – {company}",
            headline="{first_name}, {company} ne donne pas suite à votre candidature",
            intro="Ce n'est pas un jugement sur vous : d'autres entreprises vous attendent.",
            outro="Courage ! Chaque candidature vous rapproche de votre alternance.",
            default_message="Bonjour {first_name},\n\nMerci pour l'intérêt que vous portez à "
            "{company}. Nous ne pouvons pas donner suite à votre candidature. "
            "Nous vous souhaitons de trouver rapidement votre alternance.\n\n"
            "Bonne continuation,\n{company}",
            asks_reasons=True,
            done="Le candidat a été prévenu, merci d'avoir répondu.",
        ),
        Answer(
            "reply",
            True,
            subject="Réponse de {company} à vos questions",
            headline="{company} a répondu à vos questions, {first_name}",
            intro="Voici sa réponse sur la formation « {title} » :",
            default_message="Bonjour {first_name},\n\nMerci pour vos questions sur la formation "
            "« {title} ».\n\n\n\nCordialement,\n{company}",
            done="Votre réponse a été envoyée au candidat.",
        ),
        Answer(
            "unreachable",
            True,
            subject="{company} a essayé de vous joindre",
            headline="{first_name}, {company} a essayé de vous joindre",
            intro="L'établissement a tenté de vous appeler au sujet de la formation « {title} », "
            "sans succès.",
            outro="Rappelez-le au {phone} : il sera ravi de répondre à vos questions.",
            done="Le candidat a été prévenu et invité à vous rappeler.",
        ),
        # The CFA already answered by phone or email: an automatic email on top would be noise.
        Answer("other_channel", False, done="C'est noté, merci !"),
    )
}


def _fill(text: str, stored: StoredRequest) -> str:
    view = stored.view
    return text.format(
        first_name=stored.row["first_name"],
        company=view["company_name"],
        title=view["name"],
        phone=_phone(view.get("phone")),
    )


def _phone(value: str | None) -> str:
    return display_phone(value) if value else "le numéro indiqué sur son site"


async def reply_page(request: Request) -> Response:
    state = request.app.state
    token = request.path_params["token"]
    found = await reply_tokens.find(state.database, token)
    if found is None or found["action"] not in ANSWERS:
        raise Problem(404, "Ce lien de réponse n'existe pas. Vérifiez qu'il est complet.")
    stored = await load(state.database, found["request_id"])
    if stored is None or stored.row["anonymised_at"] is not None:
        raise Problem(410, "Cette demande n'est plus disponible.")
    if stored.row["status"] == WITHDRAWN and request.method != "POST":
        # A POST is refused by the answer's own UPDATE: it may race the withdrawal.
        return _withdrawn(request, stored)
    page: dict[str, Any] = {
        "stored": stored,
        "row": stored.row,
        "target": stored.view,
        "kind": stored.kind,
        "answers": [(a, ANSWERS[a.code]) for a in stored.kind.actions if a.code in ANSWERS],
        "reasons": REFUSAL_REASONS,
        "errors": {},
        "summary": [],
        "topics": stored.context(state.settings.public_url)["topics"],
    }
    if stored.row["answered_at"] is not None:
        return _render(request, "pages/reply_done.html", {**page, **_answered(stored)}, 200)
    if found["expires_at"] < dt.datetime.now(dt.UTC):
        raise Problem(
            410,
            "Ce lien de réponse a expiré. Vous pouvez répondre au candidat "
            "directement par e-mail ou par téléphone.",
        )
    chosen = found["action"]
    values: dict[str, Any] = {"answer": chosen, "reasons": []}
    for code, answer in ANSWERS.items():
        values[f"message_{code}"] = _fill(answer.default_message, stored)
    if request.method == "POST":
        async with request.form(max_fields=40, max_files=0) as form:
            return await _answer(request, stored, found, page, form)
    page["values"] = values
    page["check"] = state.form_tokens.issue("reply", found["token_hash"], "reply")
    return _render(request, "pages/reply.html", page, 200)


async def _answer(
    request: Request, stored: StoredRequest, found: dict[str, Any], page: dict[str, Any], form: Any
) -> Response:
    state = request.app.state
    values: dict[str, Any] = {key: str(form.get(key) or "") for key in form}
    values["reasons"] = [r for r in form.getlist("reasons") if isinstance(r, str)]
    page["values"] = values
    page["check"] = state.form_tokens.issue("reply", found["token_hash"], "reply")
    try:
        check = state.form_tokens.read(values.get("check", ""))
        if check.kind != "reply" or check.target != found["token_hash"]:
            raise InvalidFormToken("another page")
    except InvalidFormToken:
        page["summary"] = [
            {"field": "", "message": "Cette page a expiré : vérifiez votre réponse et envoyez-la à nouveau."}
        ]
        return _render(request, "pages/reply.html", page, 400)
    codes = [a.code for a, _ in page["answers"]]
    errors = FieldErrors()
    code = values.get("answer", "")
    if code not in codes:
        errors.add("answer", "Choisissez une réponse.")
        code = codes[0]
    answer = ANSWERS[code]
    message = clean_message(
        errors, f"message_{code}", values.get(f"message_{code}"), required=answer.code in ("accept", "reply")
    )
    # Who answered (the address the buttons went to) and from which button.
    details: dict[str, Any] = {"by": found["contact_email"], "via": found["action"]}
    if answer.asks_reasons:
        known = dict(REFUSAL_REASONS)
        details["reasons"] = [known[r] for r in values["reasons"] if r in known]
    if answer.asks_contact:
        if values.get("pro_email"):
            details["pro_email"] = clean_email(errors, "pro_email", values["pro_email"])
        if values.get("pro_phone"):
            details["pro_phone"] = clean_phone(errors, "pro_phone", values["pro_phone"])
    if errors:
        page["errors"] = {e["field"]: e["message"] for e in errors.errors}
        page["summary"] = errors.errors
        return _render(request, "pages/reply.html", page, 422)

    now = dt.datetime.now(dt.UTC)
    requests = tables.contact_requests
    async with write_transaction(state.database):
        # The first answer wins: a replayed or concurrent POST updates nothing.
        won = await state.database.fetch_val(
            requests.update()
            .where(
                requests.c.id == stored.row["id"],
                requests.c.answered_at.is_(None),
                requests.c.status != WITHDRAWN,
            )
            .values(
                status=ANSWERED,
                answer=code,
                answer_message=message or None,
                answer_details=json.dumps(details, ensure_ascii=False),
                answered_at=now,
                updated_at=now,
            )
            .returning(requests.c.id)
        )
        if won is not None:
            await state.database.execute(
                tables.reply_tokens.update()
                .where(tables.reply_tokens.c.token_hash == found["token_hash"])
                .values(used_at=now)
            )
            if answer.emails_candidate:
                await _tell_candidate(state, stored, answer, message, details, now)
            await partner_events.emit(state.database, stored.row["id"], partner_events.ANSWERED, now=now)
    if won is not None:
        state.outbox_worker.wake()
    fresh = await load(state.database, stored.row["id"])
    assert fresh is not None
    if fresh.row["status"] == WITHDRAWN:
        return _withdrawn(request, fresh)
    return _render(
        request,
        "pages/reply_done.html",
        {**page, "stored": fresh, "row": fresh.row, **_answered(fresh), "just_answered": won is not None},
        200,
    )


async def _tell_candidate(
    state: Any,
    stored: StoredRequest,
    answer: Answer,
    message: str,
    details: dict[str, Any],
    now: dt.datetime,
) -> None:
    settings, database = state.settings, state.database
    context = {
        **stored.context(settings.public_url),
        "answer": {
            key: _fill(getattr(answer, key), stored) for key in ("subject", "headline", "intro", "outro")
        },
        "answer_message": message,
        "reasons": details.get("reasons", []),
        "pro_email": details.get("pro_email"),
        "pro_phone": details.get("pro_phone"),
    }
    row = stored.row
    reply_to = None
    if answer.code in ("accept", "reply"):
        # The candidate answers by replying to this email: it goes to the recruiter or the CFA.
        reply_to = emails.address(
            stored.view["contact_name"], details.get("pro_email") or row["contact_email"]
        )
    context["reply_to"] = reply_to.addr_spec if reply_to else None
    email_message = emails.compose(
        settings,
        "answer",
        context,
        to=emails.address(f"{row['first_name']} {row['last_name']}", row["email"]),
        reply_to=reply_to,
        in_reply_to=await ack_message_id(database, stored),
        now=now,
    )
    await outbox.enqueue(
        database, email_message, template=f"answer_{answer.code}", request_id=row["id"], now=now
    )


def _withdrawn(request: Request, stored: StoredRequest) -> Response:
    """What every reply link of a request its candidate withdrew shows, instead of acting."""
    return _render(request, "pages/reply_withdrawn.html", {"row": stored.row, "kind": stored.kind}, 200)


def answer_as_sent(stored: StoredRequest) -> dict[str, Any] | None:
    """The answer as the candidate's email told it (their follow-up page shows it
    again); None when no email told it (`other_channel`)."""
    row = stored.row
    answer = ANSWERS.get(row["answer"] or "")
    if answer is None or not answer.emails_candidate:
        return None
    details = json.loads(row["answer_details"]) if row["answer_details"] else {}
    return {
        **{key: _fill(getattr(answer, key), stored) for key in ("headline", "intro", "outro")},
        "message": row["answer_message"],
        "reasons": details.get("reasons", []),
        "pro_email": details.get("pro_email"),
        "pro_phone": details.get("pro_phone"),
    }


def _answered(stored: StoredRequest) -> dict[str, Any]:
    row = stored.row
    details = json.loads(row["answer_details"]) if row["answer_details"] else {}
    answer = ANSWERS.get(row["answer"] or "")
    labels = {a.code: a.label for a in stored.kind.actions}
    return {
        "answered_label": labels.get(row["answer"] or "", row["answer"]),
        "answered_done": answer.done if answer else "",
        "details": details,
    }


def _render(request: Request, name: str, context: dict[str, Any], status: int) -> Response:
    response: Response = request.app.state.templates.TemplateResponse(
        request, name, context, status_code=status
    )
    private_page(response)
    return response
