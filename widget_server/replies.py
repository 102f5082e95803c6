"""Quick replies: `/reply/<token>`, one view for every answer of both kinds.

Mail security scanners open every link of an email, sometimes in a headless
browser: a GET (or HEAD) only shows the request and a pre-filled answer. Only the
POST from that page acts, once: the first answer wins and is sent to the
candidate at once; later visits show it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from . import emails, outbox, partner_events, tables
from .contact_requests import ANSWERED, OPEN, WITHDRAWN, StoredRequest, ack_message_id, load, load_by_link
from .form_tokens import InvalidFormToken
from .kinds import KINDS, REFUSAL_REASONS
from .pages import private_page
from .problems import Problem
from .resources import write_transaction
from .validation import FieldErrors, clean_email, clean_message, clean_phone, display_phone


@dataclass(frozen=True)
class Answer:
    """What one answer says to the candidate; `{…}` are filled from the request.

    The editable message is `greeting`, `body`, `closing`: the greeting and the
    closing are the template's fixed parts, the body is the answer's own text (an
    empty body is a blank left for the recruiter or CFA to fill)."""

    code: str
    emails_candidate: bool
    subject: str = ""
    headline: str = ""
    intro: str = ""
    outro: str = ""
    greeting: str = ""
    body: str = ""
    closing: str = ""
    # The message must say something of its own (see `own_text`).
    requires_message: bool = False
    asks_contact: bool = False
    asks_reasons: bool = False
    done: str = ""
    # What the recruiter or CFA did, as the page says it afterwards ("… le 29/11/2026 à 01:55").
    status: str = ""

    @property
    def default_message(self) -> str:
        return "\n\n".join((self.greeting, self.body, self.closing)) if self.greeting else ""


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
            greeting="Bonjour {first_name},",
            body="Merci pour votre candidature. Votre profil nous intéresse : nous aimerions "
            "échanger avec vous. Contactez-nous pour convenir d'un rendez-vous.",
            closing="À bientôt,\n{company}",
            requires_message=True,
            asks_contact=True,
            done="Votre réponse a été envoyée au candidat.",
            status="Vous avez répondu favorablement",
        ),
        Answer(
            "refuse",
            True,
            subject="Réponse à votre candidature – {company}",
            headline="{first_name}, {company} ne donne pas suite à votre candidature",
            intro="Ce n'est pas un jugement sur vous : d'autres entreprises vous attendent.",
            outro="Courage ! Chaque candidature vous rapproche de votre alternance.",
            greeting="Bonjour {first_name},",
            body="Merci pour l'intérêt que vous portez à {company}. Nous ne pouvons pas donner "
            "suite à votre candidature. Nous vous souhaitons de trouver rapidement votre alternance.",
            closing="Bonne continuation,\n{company}",
            asks_reasons=True,
            done="Le candidat a été prévenu, merci d'avoir répondu.",
            status="Vous avez décliné cette candidature",
        ),
        Answer(
            "reply",
            True,
            subject="Réponse de {company} à vos questions",
            headline="{company} a répondu à vos questions, {first_name}",
            intro="Voici sa réponse sur la formation « {title} » :",
            greeting="Bonjour {first_name},\n\nMerci pour vos questions sur la formation « {title} ».",
            closing="Cordialement,\n{company}",
            requires_message=True,
            done="Votre réponse a été envoyée au candidat.",
            status="Vous avez répondu au candidat",
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
            status="Vous avez signalé que le candidat est injoignable",
        ),
        # The CFA already answered by phone or email: an automatic email on top would be noise.
        Answer(
            "other_channel",
            False,
            done="C'est noté, merci !",
            status="Vous avez indiqué avoir répondu au candidat par un autre canal",
        ),
        # Not a choice of the reply page: the "L'offre est pourvue" link (offer_filled.py).
        Answer(
            "filled",
            True,
            subject="Réponse à votre candidature – {company}",
            headline="{first_name}, le poste « {title} » est pourvu",
            intro="{company} a trouvé la personne qu'il lui fallait pour ce poste : elle ne peut donc "
            "pas donner suite à votre candidature. Merci de l'intérêt que vous lui avez porté.",
            outro="Ce n'est pas un jugement sur vous : d'autres offres vous attendent. Courage !",
            done="Le candidat a été prévenu que l'offre est pourvue.",
            status="Vous avez indiqué que l'offre est pourvue",
        ),
    )
}
# The answers the reply page offers: every button of both kinds.
_PAGE_ANSWERS = frozenset(a.code for kind in KINDS.values() for a in kind.actions)

NO_OWN_TEXT = (
    "Votre message ne contient que la salutation et la signature : le candidat recevrait "
    "un message vide. Écrivez votre réponse entre les deux."
)


def _fill(text: str, stored: StoredRequest) -> str:
    view = stored.view
    return text.format(
        first_name=stored.row["first_name"],
        company=view["company_name"],
        title=view["name"],
        phone=_phone(view.get("phone")),
    )


def _words(line: str) -> str:
    return " ".join(re.findall(r"\w+", line.casefold()))


def own_text(message: str, answer: Answer, stored: StoredRequest) -> str:
    """What the message says besides the template's fixed parts (its greeting and
    closing, as filled for this request), line by line, whatever the case, the
    spacing or the punctuation: "" when the blank was left empty."""
    fixed = {
        _words(line) for part in (answer.greeting, answer.closing) for line in _fill(part, stored).split("\n")
    }
    return "\n".join(line for line in message.split("\n") if _words(line) not in fixed | {""})


def _phone(value: str | None) -> str:
    return display_phone(value) if value else "le numéro indiqué sur son site"


async def reply_page(request: Request) -> Response:
    state = request.app.state
    link = await load_by_link(state.database, request.path_params["token"], _PAGE_ANSWERS)
    if link is None:
        raise Problem(404, "Ce lien de réponse n'existe pas. Vérifiez qu'il est complet.")
    found, stored = link
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
    field = f"message_{code}"
    message = clean_message(errors, field, values.get(field), required=answer.requires_message)
    if answer.requires_message and message and not own_text(message, answer, stored):
        errors.add(field, NO_OWN_TEXT)
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
    async with write_transaction(state.database):
        won = await record_answer(state, stored, answer, message, details, now)
        if won:
            await state.database.execute(
                tables.reply_tokens.update()
                .where(tables.reply_tokens.c.token_hash == found["token_hash"])
                .values(used_at=now)
            )
    if won:
        state.outbox_worker.wake()
    fresh = await load(state.database, stored.row["id"])
    assert fresh is not None
    if fresh.row["status"] == WITHDRAWN:
        return _withdrawn(request, fresh)
    return _render(
        request,
        "pages/reply_done.html",
        {**page, "stored": fresh, "row": fresh.row, **_answered(fresh), "just_answered": won},
        200,
    )


async def record_answer(
    state: Any,
    stored: StoredRequest,
    answer: Answer,
    message: str,
    details: dict[str, Any],
    now: dt.datetime,
    *,
    open_only: bool = False,
) -> bool:
    """Stores the answer and queues its email to the candidate, inside the caller's
    transaction. The first answer wins: a replayed or concurrent one stores and
    sends nothing (False). `open_only`: only a request still waiting for one
    (not withdrawn, its email not bounced)."""
    requests = tables.contact_requests
    # Never a withdrawn request: its candidate took it back.
    conditions = [
        requests.c.id == stored.row["id"],
        requests.c.answered_at.is_(None),
        requests.c.status != WITHDRAWN,
    ]
    if open_only:
        conditions.append(requests.c.status.in_(OPEN))
    won = await state.database.fetch_val(
        requests.update()
        .where(*conditions)
        .values(
            status=ANSWERED,
            answer=answer.code,
            answer_message=message or None,
            answer_details=json.dumps(details, ensure_ascii=False),
            answered_at=now,
            updated_at=now,
        )
        .returning(requests.c.id)
    )
    if won is None:
        return False
    if answer.emails_candidate:
        await _tell_candidate(state, stored, answer, message, details, now)
    await partner_events.emit(state.database, stored.row["id"], partner_events.ANSWERED, now=now)
    return True


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
    labels = {a.code: a.label for a in stored.kind.actions_for(stored.target.kind)}
    return {
        "answered_label": labels.get(row["answer"] or "", row["answer"]),
        "answered_done": answer.done if answer else "",
        "answered_status": answer.status if answer else "Une réponse a été donnée",
        "details": details,
    }


def _render(request: Request, name: str, context: dict[str, Any], status: int) -> Response:
    response: Response = request.app.state.templates.TemplateResponse(
        request, name, context, status_code=status
    )
    private_page(response)
    return response
