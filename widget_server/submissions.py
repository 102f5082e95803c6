"""`POST /api/v1/applications` and `POST /api/v1/appointment-requests`: one endpoint
for both kinds, reading JSON (CV as a base64 `data:` URL) or multipart (CV as a file)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import callers, contact_requests
from .json_body import parse_json
from .kinds import RequestKind
from .problems import Problem

_DATA_URL = re.compile(r"^data:(?P<type>[\w.+/-]*)(?:;[\w=.-]+)*?(?P<b64>;base64)?,", re.ASCII)
IDEMPOTENCY_KEY_MAX = 255
# Printable ASCII, no space: also the OpenAPI pattern of the header.
IDEMPOTENCY_KEY_PATTERN = f"^[!-~]{{1,{IDEMPOTENCY_KEY_MAX}}}$"
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


def submit_endpoint(kind: RequestKind) -> Any:
    async def endpoint(request: Request) -> Response:
        state = request.app.state
        await state.throttle.hit(request, "api")
        caller = await callers.authenticate(request)
        await state.throttle.hit_caller(caller.name, test=caller.test)
        key = request.headers.get("idempotency-key")
        if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
            raise Problem(
                400,
                f"L'en-tête Idempotency-Key doit faire de 1 à {IDEMPOTENCY_KEY_MAX} caractères "
                "imprimables, sans espace.",
                code="bad_idempotency_key",
            )
        fields, filename, data = await read_body(request, kind)
        accepted = await contact_requests.submit(
            state,
            contact_requests.Submission(
                kind=kind,
                fields=fields,
                caller=caller.name,
                caller_origin="key",
                cv_filename=filename,
                cv_data=data,
                idempotency_key=key,
                api_key_id=caller.key_id,
                test=caller.test,
            ),
        )
        return JSONResponse({"id": accepted.id, "status": accepted.status}, status_code=202)

    endpoint.__name__ = f"submit_{kind.name}"
    return endpoint


async def read_body(request: Request, kind: RequestKind) -> tuple[dict[str, Any], str, bytes | None]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return _from_json(await request.body())
    if content_type == "multipart/form-data" and kind.needs_cv:
        return await _from_multipart(request)
    accepted = "application/json ou multipart/form-data" if kind.needs_cv else "application/json"
    raise Problem(415, f"Format de requête non accepté : envoyez {accepted}.", code="unsupported_media_type")


def _from_json(body: bytes) -> tuple[dict[str, Any], str, bytes | None]:
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise Problem(400, "Le corps de la requête doit être un objet JSON.", code="invalid_json")
    cv = payload.pop("cv", None)
    filename = str(payload.pop("cv_filename", "") or "cv")
    if cv is None or cv == "":
        return payload, filename, None
    return payload, filename, _decode_data_url(cv)


def _decode_data_url(value: Any) -> bytes:
    invalid = Problem(
        422,
        "Certaines informations sont à corriger.",
        code="invalid_fields",
        errors=[
            {
                "field": "cv",
                "message": "Le CV doit être une URL data: en base64 (data:application/pdf;base64,…).",
            }
        ],
    )
    if not isinstance(value, str):
        raise invalid
    match = _DATA_URL.match(value)
    if match is None or not match.group("b64"):
        raise invalid
    try:
        return base64.b64decode(value[match.end() :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid from exc


async def _from_multipart(request: Request) -> tuple[dict[str, Any], str, bytes | None]:
    max_bytes = request.app.state.settings.max_body_bytes
    async with request.form(max_files=1, max_fields=40, max_part_size=max_bytes) as form:
        fields: dict[str, Any] = {}
        filename, data = "", None
        for name in set(form.keys()):
            values = form.getlist(name)
            if name == "cv":
                upload = values[0]
                if isinstance(upload, UploadFile):
                    filename = upload.filename or "cv"
                    data = await upload.read() or None
            elif name == "topics":
                fields[name] = [v for v in values if isinstance(v, str)]
            elif isinstance(values[0], str):
                fields[name] = values[0]
        return fields, filename, data
