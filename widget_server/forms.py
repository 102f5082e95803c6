"""The hosted form pages, `/widget/v1/candidature` and `/widget/v1/rdv`: one view
for both kinds, fully usable without JavaScript, framed by the widget or opened
as a plain link. Integrity comes from a signed form token, never a cookie."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import contact_requests, eligibility, kept_cvs
from .cv import CV, check_cv
from .form_tokens import FormToken, InvalidFormToken
from .kinds import ROLES, TOPICS, RequestKind
from .problems import Problem
from .targets import BadTarget, Target, make_target
from .validation import InvalidValue, normalise_email, normalise_phone

_CALLER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$")
_EMBED = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")
_BACK = re.compile(r"^https?://[!#-&(-;=?-~]+$", re.IGNORECASE)  # printable ASCII but " ' < >
HONEYPOT = "website"
# Fields given back to the page after an error; the CV can't be (browsers forbid
# it): a valid one is kept on the server instead (`kept_cvs`).
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
    """Where a form page (GET) is shown, from its link: `caller`, `embed` and
    `origin`, kept only when well-formed; and `back`, the page a standalone form
    was opened from (a `back` parameter, then its Referer), for "Retour au site"
    after success. All four are signed into the form token; a POST reads them
    from there (`_signed_frame`), never from posted fields."""
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


def _signed_frame(signed: FormToken | None) -> dict[str, str]:
    """Where a posted form is shown, as its genuine token signed it (expired or
    not); a forged token shows it as a plain page of no partner."""
    if signed is None:
        return {"caller": "direct", "embed": "", "origin": "", "back": ""}
    return {"caller": signed.caller, "embed": signed.embed, "origin": signed.origin, "back": signed.back}


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
    token, signed = _signed_token(state, kind, target, form)
    page = _page(request, kind, _signed_frame(signed), field_name, target, record)
    page["values"] = _kept_values(form)
    if form.get(HONEYPOT):
        # A bot filled the hidden field: it sees a success and nothing is stored.
        return _render(request, "pages/sent.html", {**page, "request_id": "0"}, 200)
    upload = await _upload(form)
    if token is None:
        page["summary"] = [
            {"field": "", "message": "Ce formulaire a expiré. Vérifiez vos informations et renvoyez-le."}
        ]
        return await _form_again(request, page, 400, cv=_valid_cv(state, upload))
    now = dt.datetime.now(dt.UTC)
    # A CV kept from an earlier round trip is named by the signed token only.
    kept = None
    if upload is None:
        kept = await kept_cvs.find(state.database, token.kept_cv, form_token=token_text(form), now=now)
    sent_cv = upload or ((kept.filename, kept.data) if kept else None)
    submission = _submission(kind, form, page, field_name, target, token.caller, sent_cv)
    try:
        if state.form_tokens.filled_too_fast(token):
            # Sent faster than a person can type: likely a bot, or autofill. A person
            # who just clicked "Envoyer" on an empty form still sees which fields to fill.
            contact_requests.validate(submission, state.settings.max_cv_bytes)
            raise Problem(400, TOO_FAST, code="too_fast")
        accepted = await contact_requests.submit(state, submission)
    except Problem as problem:
        # The CV stays when nothing is wrong with it: the kept one moves to the
        # new token, a new file is kept (and replaces the old one).
        cv = None if _field_errors(problem, "cv") else (kept or _valid_cv(state, upload))
        reused = kept is not None and cv is kept
        if not reused:
            await kept_cvs.forget(state.database, token.kept_cv)
        return await _refused(request, page, problem, cv=cv, kept_id=token.kept_cv if reused else "")
    await kept_cvs.sent(state.database, token.kept_cv, now)
    return _render(
        request,
        "pages/sent.html",
        {**page, "request_id": accepted.id, "followup_url": accepted.followup_url},
        200,
    )


TOO_FAST = (
    "Vous avez envoyé le formulaire très vite : attendez quelques secondes, puis renvoyez-le. "
    "Tout ce que vous avez saisi est conservé."
)


async def _upload(form: FormData) -> tuple[str, bytes] | None:
    """The file posted with the form, as sent: its name and bytes (None when no
    file was chosen), checked later with the other fields."""
    upload = form.get("cv")
    if not isinstance(upload, UploadFile):
        return None
    data = await upload.read()
    return (upload.filename or "cv", data) if data else None


def _valid_cv(state: Any, upload: tuple[str, bytes] | None) -> CV | None:
    """The posted file, typed and named as it would be stored, when its checks pass."""
    if upload is None:
        return None
    try:
        return check_cv(*upload, state.settings.max_cv_bytes)
    except Problem:
        return None


def _field_errors(problem: Problem, field: str) -> bool:
    return any(error.get("field") == field for error in problem.errors)


# What the form checks as the person leaves a field: the server's own rules.
CHECKED_FIELDS = {"email": normalise_email, "phone": normalise_phone}
CHECKED_VALUE_MAX = 1000


async def check_field(request: Request) -> Response:
    """`POST /widget/v1/check` (`field`, `value`, form-encoded): the server's verdict
    on an email address or a phone number, which form.js shows as the person
    leaves the field. `{"message": ""}` when the value is fine. Nothing is stored;
    the form works without it (the same checks run on submission)."""
    await request.app.state.throttle.hit(request, "check")
    async with request.form(max_files=0, max_fields=4) as form:
        field, value = form.get("field"), form.get("value")
    normalise = CHECKED_FIELDS.get(str(field or ""))
    if normalise is None or not isinstance(value, str) or len(value) > CHECKED_VALUE_MAX:
        raise Problem(400, "Indiquez un champ à vérifier (email ou phone) et sa valeur.", code="bad_check")
    try:
        normalise(value)
        message = ""
    except InvalidValue as exc:
        message = exc.message
    return JSONResponse({"field": field, "message": message}, headers={"Cache-Control": "no-store"})


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
        "kept_cv": "",
    }


def _kept_values(form: FormData) -> dict[str, Any]:
    values: dict[str, Any] = {name: str(form.get(name) or "") for name in _KEPT}
    values["topics"] = [t for t in form.getlist("topics") if isinstance(t, str)]
    return values


def _signed_token(
    state: Any, kind: RequestKind, target: Target, form: FormData
) -> tuple[FormToken | None, FormToken | None]:
    """The form token when it is genuine, unexpired and for this very form; and
    what it signed whenever it is genuine (expired, or another form's): the
    caller and where the page is shown, which no posted field can change."""
    try:
        token: FormToken = state.form_tokens.read(token_text(form))
    except InvalidFormToken as exc:
        return None, exc.expired
    if token.kind != kind.name or token.target != str(target):
        return None, token
    return token, token


def _submission(
    kind: RequestKind,
    form: FormData,
    page: dict[str, Any],
    field_name: str,
    target: Target,
    caller: str,
    cv: tuple[str, bytes] | None,
) -> contact_requests.Submission:
    return contact_requests.Submission(
        kind=kind,
        fields={**page["values"], field_name: target.ref},
        caller=caller,
        caller_origin="form",
        cv_filename=cv[0] if cv else "",
        cv_data=cv[1] if cv else None,
        # The form token doubles as an idempotency key: a re-posted page creates nothing.
        idempotency_key="form:" + hashlib.sha256(token_text(form).encode()).hexdigest(),
    )


async def _refused(
    request: Request, page: dict[str, Any], problem: Problem, *, cv: CV | None, kept_id: str
) -> Response:
    """The page for a refused submission: the target turned unavailable, or the
    form again with every error next to its field and the input kept (the CV too,
    when it passed its checks)."""
    # A 503 (the CV cannot be checked right now) keeps the page and its input too.
    if (problem.status >= 500 and problem.status != 503) or problem.status == 404:
        raise problem
    if problem.status == 409 and problem.code in UNAVAILABLE:
        return _unavailable(request, page, problem.code)
    errors = sorted(problem.errors, key=lambda e: _order(e.get("field", "")))
    page["errors"] = {e["field"]: e["message"] for e in errors}
    page["summary"] = errors or [{"field": "", "message": problem.detail}]
    return await _form_again(request, page, problem.status, problem.headers, cv=cv, kept_id=kept_id)


async def _form_again(
    request: Request,
    page: dict[str, Any],
    status: int,
    headers: dict[str, str] | None = None,
    *,
    cv: CV | None,
    kept_id: str = "",
) -> Response:
    """The form again under a new token; a valid CV is kept on the server for
    that token (the same kept CV moves to it, or a new one is stored)."""
    state = request.app.state
    if cv is None:
        return _render(request, "pages/form.html", _with_token(state, page), status, headers)
    kept_id = kept_id or kept_cvs.new_id()
    _with_token(state, page, kept_cv=kept_id)
    if await kept_cvs.keep(
        state.database,
        kept_id,
        cv,
        form_token=page["form_token"],
        now=dt.datetime.now(dt.UTC),
        ttl=dt.timedelta(seconds=state.form_tokens.ttl_seconds),
        max_bytes=state.settings.kept_cvs_max_bytes,
        email=page["values"].get("email", ""),
    ):
        page["kept_cv"] = cv.filename
    else:
        _with_token(state, page)  # no room: the file is chosen again
    return _render(request, "pages/form.html", page, status, headers)


def _unavailable(request: Request, page: dict[str, Any], reason: str | None) -> Response:
    page["unavailable"] = UNAVAILABLE.get(reason or "", UNAVAILABLE["no_contact"])
    return _render(request, "pages/unavailable.html", page, 409)


def token_text(form: FormData) -> str:
    return str(form.get("form_token") or "")


def _order(field: str) -> int:
    return FIELD_ORDER.index(field) if field in FIELD_ORDER else len(FIELD_ORDER)


def _with_token(state: Any, page: dict[str, Any], *, kept_cv: str = "") -> dict[str, Any]:
    frame = page["frame"]
    page["form_token"] = state.form_tokens.issue(
        page["kind"].name,
        page["target_id"],
        frame["caller"],
        kept_cv=kept_cv,
        embed=frame["embed"],
        origin=frame["origin"],
        back=frame["back"],
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
