"""The OpenAPI 3.1 document of /api/v1, built from the same data the endpoints
use (topic codes, reasons, limits), and a readable page of it at /api/docs."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .contact_requests import STATUSES
from .eligibility import REASONS
from .kinds import REFUSAL_REASONS, ROLES, TOPICS
from .settings import Settings

_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": _PROBLEM}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "Malformed request (bad JSON, bad parameter)",
        401: "Missing, unknown or revoked API key",
        403: "The key may not do this",
        404: "Unknown target (`code`: `unknown_target`)",
        409: "Not eligible (`code`: the reason) or duplicate request (`code`: `duplicate`)",
        413: "Body over the size limit, or CV over the CV limit",
        415: "Unsupported content type, or a CV that is neither PDF nor DOCX",
        422: "Invalid fields, listed in `errors`",
        429: "Rate limit or daily quota; see `Retry-After`",
    }
    return {str(code): _problem(texts[code]) for code in codes}


def _person() -> dict[str, Any]:
    return {
        "first_name": {"type": "string", "minLength": 1, "maxLength": 50},
        "last_name": {"type": "string", "minLength": 1, "maxLength": 50},
        "email": {"type": "string", "format": "email", "description": "Disposable domains are refused."},
        "phone": {
            "type": "string",
            "examples": ["06 12 34 56 78"],
            "description": "French number, stored as E.164; premium rate refused.",
        },
        "message": {"type": "string", "maxLength": 3000},
    }


def document(settings: Settings) -> dict[str, Any]:
    accepted = {
        "description": "Stored; the emails are on their way",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
    }
    idempotency = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "A retried request with the same key creates nothing twice.",
        "schema": {"type": "string", "maxLength": 255},
    }
    application = {
        "type": "object",
        "required": ["first_name", "last_name", "email", "phone", "cv"],
        "properties": {
            "offer_id": {"type": "string", "description": "Exactly one of offer_id and siret."},
            "siret": {
                "type": "string",
                "pattern": "^[0-9]{14}$",
                "description": "A spontaneous application to a company.",
            },
            **_person(),
            "cv": {
                "type": "string",
                "description": "JSON: a base64 `data:` URL; multipart: the file. PDF or DOCX, "
                f"checked by content, at most {settings.max_cv_bytes} bytes.",
            },
            "cv_filename": {"type": "string", "description": "JSON only: the CV's file name."},
        },
    }
    appointment = {
        "type": "object",
        "required": ["formation_id", "first_name", "last_name", "email", "phone", "role", "topics"],
        "properties": {
            "formation_id": {"type": "string", "description": "The cle_ministere_educatif."},
            **_person(),
            "role": {"type": "string", "enum": [code for code, _ in ROLES]},
            "topics": {
                "type": "array",
                "minItems": 1,
                "uniqueItems": True,
                "items": {"type": "string", "enum": [code for code, _ in TOPICS]},
                "description": "; ".join(f"`{c}`: {label}" for c, label in TOPICS),
            },
            "message": {
                "type": "string",
                "maxLength": 3000,
                "description": "Required when `autre` is among the topics.",
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Mises en relation – Je candidate et Rendez-vous apprentissage",
            "version": "1.0.0",
            "description": "Put apprenticeship candidates in touch with companies and CFAs.",
        },
        "servers": [{"url": settings.public_url}],
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/eligibility": {
                "get": {
                    "summary": "Which targets can receive requests now",
                    "security": [],
                    "parameters": [
                        {
                            "name": "target",
                            "in": "query",
                            "required": True,
                            "style": "form",
                            "explode": True,
                            "schema": {
                                "type": "array",
                                "maxItems": 100,
                                "items": {
                                    "type": "string",
                                    "examples": [
                                        "offer:OFF-001",
                                        "company:73282932000074",
                                        "formation:CME-0001",
                                    ],
                                },
                            },
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "One result per target, in order",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Eligibility"}}
                            },
                        },
                        **_errors(400, 429),
                    },
                }
            },
            "/api/v1/applications": {
                "post": {
                    "summary": "Je candidate: apply to an offer or spontaneously to a company",
                    "parameters": [idempotency],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": application},
                            "multipart/form-data": {"schema": application},
                        },
                    },
                    "responses": {"202": accepted, **_errors(400, 401, 404, 409, 413, 415, 422, 429)},
                }
            },
            "/api/v1/bounces": {
                "post": {
                    "summary": "Report hard bounces (operator key): the contact turns ineligible "
                    "and each waiting candidate is told",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "email": {"type": "string", "format": "email"},
                                        "reason": {"type": "string"},
                                        "bounces": {
                                            "type": "array",
                                            "maxItems": 1000,
                                            "items": {
                                                "type": "object",
                                                "required": ["email"],
                                                "properties": {
                                                    "email": {"type": "string", "format": "email"},
                                                    "reason": {"type": "string"},
                                                },
                                            },
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "Recorded",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "recorded": {"type": "integer"},
                                            "candidates_told": {"type": "integer"},
                                        },
                                    }
                                }
                            },
                        },
                        **_errors(400, 401, 403, 422),
                    },
                }
            },
            "/api/v1/appointment-requests": {
                "post": {
                    "summary": "Rendez-vous apprentissage: send questions to a training's CFA",
                    "parameters": [idempotency],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": appointment}},
                    },
                    "responses": {"202": accepted, **_errors(400, 401, 404, 409, 413, 415, 422, 429)},
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A partner key from `widget-server keys create`.",
                }
            },
            "schemas": {
                "Accepted": {
                    "type": "object",
                    "required": ["id", "status"],
                    "properties": {
                        "id": {"type": "string"},
                        "status": {"type": "string", "enum": list(STATUSES)},
                    },
                },
                "Eligibility": {
                    "type": "object",
                    "properties": {
                        "results": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "target": {"type": "string"},
                                    "eligible": {"type": "boolean"},
                                    "reason": {"type": ["string", "null"], "enum": [*REASONS, None]},
                                    "name": {"type": ["string", "null"]},
                                    "city": {"type": ["string", "null"]},
                                },
                            },
                        }
                    },
                },
                "Problem": {
                    "type": "object",
                    "description": "RFC 9457",
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "code": {"type": "string"},
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                            },
                        },
                    },
                },
            },
        },
        "x-refusal-reasons": [{"code": c, "label": label} for c, label in REFUSAL_REASONS],
    }


async def openapi_json(request: Request) -> Response:
    return JSONResponse(
        request.app.state.openapi,
        headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=300"},
    )


async def docs(request: Request) -> Response:
    spec = request.app.state.openapi
    response: Response = request.app.state.templates.TemplateResponse(
        request, "pages/api_docs.html", {"spec": spec, "title": "API"}
    )
    return response
