"""The hosted form pages, `/widget/v1/candidature` and `/widget/v1/rdv`: one view
for both kinds, fully usable without JavaScript, framed by the widget or opened
as a plain link. Integrity comes from a signed form token, never a cookie."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response

from . import contact_requests, eligibility
from .form_tokens import FormToken, InvalidFormToken
from .kinds import ROLES, TOPICS, RequestKind
from .problems import Problem
from .targets import BadTarget, Target, make_target

_CALLER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$")
_EMBED = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")
_BACK = re.compile(r"^https?://[!#-&(-;=?-~]+$", re.IGNORECASE)  # printable ASCII but " ' < >
HONEYPOT = "website"
# Fields given back to the page after an error; the CV can't be (browsers forbid it).
_KEPT = ("last_name", "first_name", "email", "phone", "message", "role")

FIELD_ORDER = (
    "offer_id",
    "siret",
    "formation_id",
    "last_name",
    "first_name",
    "email",
    "phone",
    "role",
    "topics",
    "cv",
    "message",
)


def _frame_params(source: Any, referer: str = "") -> dict[str, str]:
    """`caller`, `embed` and `origin`, kept only when well-formed; and `back`, the
    page a standalone form was opened from (its Referer, then a hidden field), for
    "Retour au site" after success."""
    caller = str(source.get("caller") or "")
    embed = str(source.get("embed") or "")
    origin = str(source.get("origin") or "")
    back = str(source.get("back") or referer)
    return {
        "caller": caller if _CALLER.match(caller) else "direct",
        "embed": embed if _EMBED.match(embed) else "",
        "origin": origin if embed and _ORIGIN.match(origin) else "",
        "back": back if not embed and _is_web_page(back) else "",
    }


def _is_web_page(url: str) -> bool:
    """An http(s) address with a host, short, with nothing that could leave an attribute."""
    if not url or len(url) > 2000 or not _BACK.match(url):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _target_of(kind: RequestKind, source: Any) -> tuple[str, Target]:
    given = [(name, str(source.get(name))) for name in kind.target_fields if source.get(name)]
    if len(given) != 1:
        raise Problem(400, "Ce lien est incomplet : il ne dit pas à qui s'adresse la demande.")
    name, ref = given[0]
    try:
        return name, make_target(kind.target_fields[name], ref)
    except BadTarget as exc:
        raise Problem(400, f"Ce lien n'est pas valide : {exc}.") from exc


UNAVAILABLE = {
    "closed": "Cette offre n'accepte plus de candidatures. D'autres offres vous attendent sûrement !",
    "no_contact": "Ce destinataire ne peut pas recevoir de demandes pour le moment.",
    "opted_out": "Ce destinataire ne reçoit plus de demandes par ce service.",
    "bounced": "Ce destinataire ne peut pas recevoir de demandes pour le moment.",
}


def form_page(kind: RequestKind) -> Any:
    async def endpoint(request: Request) -> Response:
        state = request.app.state
        source: Any = request.query_params
        form: FormData | None = None
        if request.method == "POST":
            await state.throttle.hit(request, "form")
            form = await request.form(max_files=1, max_fields=40, max_part_size=state.settings.max_body_bytes)
            source = form
        try:
            return await _handle(request, kind, source, form)
        finally:
            if form is not None:
                await form.close()

    endpoint.__name__ = f"{kind.name}_form"
    return endpoint


async def _handle(request: Request, kind: RequestKind, source: Any, form: FormData | None) -> Response:
    if form is None:
        return await _show(request, kind, source)
    return await _post(request, kind, form)


async def _show(request: Request, kind: RequestKind, source: Any) -> Response:
    """GET: the form, or why this target can't be written to."""
    state = request.app.state
    field_name, target = _target_of(kind, source)
    verdict = await eligibility.check(
        state.database, target, max_offer_applications=state.settings.offer_max_applications
    )
    if verdict.reason == "unknown_target":
        raise _gone()
    frame = _frame_params(source, request.headers.get("referer", ""))
    page = _page(request, kind, frame, field_name, target, verdict.record)
    if not verdict.eligible:
        return _unavailable(request, page, verdict.reason)
    return _render(request, "pages/form.html", _with_token(state, page), 200)


async def _post(request: Request, kind: RequestKind, form: FormData) -> Response:
    """POST: honeypot, form token, then the one pipeline (which checks the target
    inside its write transaction)."""
    state = request.app.state
    field_name, target = _target_of(kind, form)
    record = await contact_requests.directory_record(state.database, target)
    if record is None:
        raise _gone()
    page = _page(request, kind, _frame_params(form), field_name, target, record)
    page["values"] = _kept_values(form)
    if form.get(HONEYPOT):
        # A bot filled the hidden field: it sees a success and nothing is stored.
        return _render(request, "pages/sent.html", {**page, "request_id": "0"}, 200)
    token = _signed_token(state, kind, target, form)
    if token is None:
        page["summary"] = [
            {"field": "", "message": "Ce formulaire a expiré. Vérifiez vos informations et renvoyez-le."}
        ]
        return _render(request, "pages/form.html", _with_token(state, page), 400)
    # The caller is the one the server signed into the token, never a posted field.
    page["frame"]["caller"] = token.caller
    submission = await _submission(kind, form, page, field_name, target, token.caller)
    try:
        if state.form_tokens.filled_too_fast(token):
            # Sent faster than a person can type: likely a bot. A person who just
            # clicked "Envoyer" on an empty form still sees which fields to fill.
            contact_requests.validate(submission, state.settings.max_cv_bytes)
            raise Problem(400, "Vérifiez vos informations, puis renvoyez le formulaire.")
        accepted = await contact_requests.submit(state, submission)
    except Problem as problem:
        return _refused(request, page, problem)
    return _render(
        request,
        "pages/sent.html",
        {**page, "request_id": accepted.id, "followup_url": accepted.followup_url},
        200,
    )


def _gone() -> Problem:
    return Problem(
        404, "Cette offre, entreprise ou formation est introuvable : elle a peut-être été retirée."
    )


def _page(
    request: Request,
    kind: RequestKind,
    frame: dict[str, str],
    field_name: str,
    target: Target,
    record: Mapping[str, Any] | None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "frame": frame,
        "target_field": field_name,
        "target_ref": target.ref,
        "target_id": str(target),
        "target": target.spec.describe(record, target.ref),
        "topics": TOPICS,
        "roles": ROLES,
        "values": {},
        "errors": {},
        "summary": [],
        "max_cv_mb": request.app.state.settings.max_cv_bytes // (1024 * 1024),
        "honeypot": HONEYPOT,
    }


def _kept_values(form: FormData) -> dict[str, Any]:
    values: dict[str, Any] = {name: str(form.get(name) or "") for name in _KEPT}
    values["topics"] = [t for t in form.getlist("topics") if isinstance(t, str)]
    return values


def _signed_token(state: Any, kind: RequestKind, target: Target, form: FormData) -> FormToken | None:
    """The form token when it is genuine, unexpired and for this very form."""
    try:
        token: FormToken = state.form_tokens.read(token_text(form))
    except InvalidFormToken:
        return None
    if token.kind != kind.name or token.target != str(target):
        return None
    return token


async def _submission(
    kind: RequestKind, form: FormData, page: dict[str, Any], field_name: str, target: Target, caller: str
) -> contact_requests.Submission:
    upload = form.get("cv")
    cv_name, cv_data = "", None
    if isinstance(upload, UploadFile):
        cv_name, cv_data = upload.filename or "cv", (await upload.read()) or None
    return contact_requests.Submission(
        kind=kind,
        fields={**page["values"], field_name: target.ref},
        caller=caller,
        caller_origin="form",
        cv_filename=cv_name,
        cv_data=cv_data,
        # The form token doubles as an idempotency key: a re-posted page creates nothing.
        idempotency_key="form:" + hashlib.sha256(token_text(form).encode()).hexdigest(),
    )


def _refused(request: Request, page: dict[str, Any], problem: Problem) -> Response:
    """The page for a refused submission: the target turned unavailable, or the
    form again with every error next to its field and the input kept."""
    # A 503 (the CV cannot be checked right now) keeps the page and its input too.
    if (problem.status >= 500 and problem.status != 503) or problem.status == 404:
        raise problem
    if problem.status == 409 and problem.code in UNAVAILABLE:
        return _unavailable(request, page, problem.code)
    errors = sorted(problem.errors, key=lambda e: _order(e.get("field", "")))
    page["errors"] = {e["field"]: e["message"] for e in errors}
    page["summary"] = errors or [{"field": "", "message": problem.detail}]
    state = request.app.state
    return _render(request, "pages/form.html", _with_token(state, page), problem.status, problem.headers)


def _unavailable(request: Request, page: dict[str, Any], reason: str | None) -> Response:
    page["unavailable"] = UNAVAILABLE.get(reason or "", UNAVAILABLE["no_contact"])
    return _render(request, "pages/unavailable.html", page, 409)


def token_text(form: FormData) -> str:
    return str(form.get("form_token") or "")


def _order(field: str) -> int:
    return FIELD_ORDER.index(field) if field in FIELD_ORDER else len(FIELD_ORDER)


def _with_token(state: Any, page: dict[str, Any]) -> dict[str, Any]:
    page["form_token"] = state.form_tokens.issue(
        page["kind"].name, page["target_id"], page["frame"]["caller"]
    )
    return page


def _render(
    request: Request,
    name: str,
    context: dict[str, Any],
    status: int,
    headers: dict[str, str] | None = None,
) -> Response:
    context = {**context, "embed": context["frame"]["embed"], "origin": context["frame"]["origin"]}
    response: Response = request.app.state.templates.TemplateResponse(
        request, name, context, status_code=status, headers=headers
    )
    response.headers["Cache-Control"] = "no-store"
    return response
