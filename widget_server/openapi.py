"""The OpenAPI 3.1 document of /api/v1, built from the same data the endpoints
use (topic codes, reasons, limits), and a readable page of it at /api/docs."""

from __future__ import annotations

from typing import Any

from email_validator.rfc_constants import EMAIL_MAX_LENGTH
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .api import MAX_QUERY_BYTES, MAX_TARGETS
from .contact_requests import STATUSES
from .eligibility import INVALID_TARGET, REASONS
from .kinds import KINDS, REFUSAL_REASONS, ROLES, TOPICS
from .partner_events import EVENTS
from .replies import ANSWERS
from .request_status import FIELDS as REQUEST_STATUS_FIELDS
from .sandbox import MAX_MESSAGES as MAX_TEST_MESSAGES
from .settings import Settings
from .submissions import IDEMPOTENCY_KEY_MAX, IDEMPOTENCY_KEY_PATTERN
from .targets import REF_PATTERN
from .validation import MESSAGE_MAX, NAME_MAX

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


# What `validation.clean_name` accepts, written portably (the same in ECMAScript and
# Python): letters of the Latin scripts, spaces, apostrophes, hyphens and dots, with
# at least one letter. The server also takes other scripts' letters.
_LETTER = "A-Za-zÀ-ÖØ-öø-ÿĀ-ſ"
NAME_PATTERN = f"^[{_LETTER}' .’-]*[{_LETTER}][{_LETTER}' .’-]*$"
# Digits and the usual separators; the number itself is checked against the French
# numbering plan (`validation.clean_phone`), which no pattern can express.
PHONE_PATTERN = "^[+]?[0-9][0-9 .-]{7,18}[0-9]$"
# Free text: no control character but tab and line breaks, no line or paragraph
# separator, no noncharacter of the first plane (the server strips those).
TEXT_PATTERN = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f\\u2028\\u2029\\ufdd0-\\ufdef\\ufffe\\uffff]*$"


# A non-empty base64 `data:` URL, strictly padded (the server decodes with validation on).
_B64_END = "[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}="
DATA_URL_PATTERN = (
    f"^data:[A-Za-z0-9_.+/-]*(;[A-Za-z0-9_=.-]+)*;base64,(([A-Za-z0-9+/]{{4}})+({_B64_END})?|{_B64_END})$"
)


# `type:reference`, as `targets.parse_target` reads it.
TARGET_PATTERN = f"^((offer|formation):{REF_PATTERN[1:-1]}|company:[0-9]{{14}})$"


def _person() -> dict[str, Any]:
    name = {"type": "string", "minLength": 1, "maxLength": NAME_MAX, "pattern": NAME_PATTERN}
    return {
        "first_name": {**name, "examples": ["Léa"]},
        "last_name": {**name, "examples": ["Moreau"]},
        "email": {
            "type": "string",
            "format": "email",
            "maxLength": EMAIL_MAX_LENGTH,
            "examples": ["lea.moreau@example.org"],
            "description": "Disposable domains and special-use names (.test, .invalid…) are refused.",
        },
        "phone": {
            "type": "string",
            "pattern": PHONE_PATTERN,
            "examples": ["06 12 34 56 78"],
            "description": "A valid French number (mainland or overseas), stored as E.164; "
            "premium rate refused.",
        },
        "message": {"type": "string", "maxLength": MESSAGE_MAX, "pattern": TEXT_PATTERN},
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
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": IDEMPOTENCY_KEY_MAX,
            "pattern": IDEMPOTENCY_KEY_PATTERN,
        },
    }
    target_ref = {"type": "string", "pattern": REF_PATTERN}
    application_fields = {
        "offer_id": {
            **target_ref,
            "examples": ["OFF-001"],
            "description": "Exactly one of offer_id and siret.",
        },
        "siret": {
            "type": "string",
            "pattern": "^[0-9]{14}$",
            "examples": ["73282932000074"],
            "description": "A spontaneous application to a company: 14 digits with a valid Luhn key.",
        },
        **_person(),
    }
    cv_text = f"PDF or DOCX, checked by content, at most {settings.max_cv_bytes} bytes."
    # Exactly one target: each alternative requires its field (both given match both).
    one_target = [{"required": ["offer_id"]}, {"required": ["siret"]}]
    required = ["first_name", "last_name", "email", "phone", "cv"]
    application = {
        "type": "object",
        "required": required,
        "oneOf": one_target,
        "properties": {
            **application_fields,
            "cv": {
                "type": "string",
                "pattern": DATA_URL_PATTERN,
                "description": f"A base64 `data:` URL. {cv_text}",
            },
            "cv_filename": {"type": "string", "maxLength": 255, "description": "The CV's file name."},
        },
    }
    application_multipart = {
        "type": "object",
        "required": required,
        "oneOf": one_target,
        "properties": {
            **application_fields,
            "cv": {"type": "string", "format": "binary", "description": f"The file. {cv_text}"},
        },
    }
    appointment = {
        "type": "object",
        "required": ["formation_id", "first_name", "last_name", "email", "phone", "role", "topics"],
        "properties": {
            "formation_id": {
                **target_ref,
                "examples": ["CME-0001"],
                "description": "The cle_ministere_educatif.",
            },
            **_person(),
            "role": {"type": "string", "enum": [code for code, _ in ROLES]},
            "topics": {
                "type": "array",
                "minItems": 1,
                "maxItems": len(TOPICS),
                "uniqueItems": True,
                "items": {"type": "string", "enum": [code for code, _ in TOPICS]},
                "description": "; ".join(f"`{c}`: {label}" for c, label in TOPICS),
            },
            "message": {
                **_person()["message"],
                "description": "Required (with some text) when `autre` is among the topics.",
            },
        },
        "if": {"required": ["topics"], "properties": {"topics": {"contains": {"const": "autre"}}}},
        "then": {"required": ["message"], "properties": {"message": {"pattern": "\\S"}}},
    }
    status_ref = {"$ref": "#/components/schemas/RequestStatus"}
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
                                "minItems": 1,
                                "maxItems": MAX_TARGETS,
                                "items": {
                                    "type": "string",
                                    "description": (
                                        f"A well-formed target matches `{TARGET_PATTERN}`, and a company's "
                                        "SIRET also has a valid Luhn key. A malformed one is not refused: "
                                        "its own result says `invalid_target`, the others are answered. "
                                        f"The query string is at most {MAX_QUERY_BYTES:,} bytes."
                                    ),
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
                            "description": "One result per target, in order (a malformed target "
                            "included: `eligible` false, `reason` `invalid_target`)",
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
                            "multipart/form-data": {"schema": application_multipart},
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
            "/api/v1/test-mailbox": {
                "get": {
                    "summary": "The emails of a test key's requests, never sent: read them, follow "
                    "their reply links to play the whole loop",
                    "description": "Only with a test key (`widget-server keys create CALLER --test`); "
                    "lists the emails of that key's own test requests, newest first, once delivered "
                    f"to the test mailbox (at most {MAX_TEST_MESSAGES}).",
                    "parameters": [
                        {
                            "name": "request_id",
                            "in": "query",
                            "required": False,
                            "description": "Only the emails of this request (one of the key's).",
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The messages",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/TestMailbox"}}
                            },
                        },
                        **_errors(401, 403, 429),
                        "404": _problem("Not one of this key's test requests (`code`: `unknown_request`)"),
                    },
                }
            },
            "/api/v1/requests/{id}": {
                "get": {
                    "summary": "Where a request stands (only with the key that made it)",
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "description": "The `id` the request was accepted with.",
                            "schema": {"type": "string", "maxLength": 100},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The request's status; nothing about the candidate",
                            "content": {"application/json": {"schema": status_ref}},
                        },
                        **_errors(401),
                        "404": _problem(
                            "No request with this id made with this key (`code`: `unknown_request`)"
                        ),
                        **_errors(429),
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
        # Sent to the partner key's webhook URL (Standard Webhooks: `webhook-id`,
        # `webhook-timestamp`, `webhook-signature` headers).
        "webhooks": {
            event: {
                "post": {
                    "summary": f"`{event}`, signed following the Standard Webhooks specification",
                    "security": [],
                    "parameters": _webhook_headers(),
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "allOf": [
                                        {"$ref": "#/components/schemas/PartnerEvent"},
                                        {"properties": {"type": {"const": event}}},
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "2XX": {"description": "Received; any other answer is retried or given up"}
                    },
                }
            }
            for event in EVENTS
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
                "TestMailbox": {
                    "type": "object",
                    "required": ["messages"],
                    "properties": {
                        "messages": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "string"},
                                    "request_id": {"type": "string"},
                                    "template": {"type": "string"},
                                    "delivered_at": {"type": ["string", "null"], "format": "date-time"},
                                    "date": {"type": ["string", "null"], "format": "date-time"},
                                    "from": {"type": "string"},
                                    "to": {"type": "string"},
                                    "subject": {"type": "string"},
                                    "message_id": {"type": "string"},
                                    "in_reply_to": {"type": ["string", "null"]},
                                    "text": {"type": "string", "description": "The plain-text part"},
                                    "links": {
                                        "type": "array",
                                        "description": "The links of the HTML part: reply buttons, "
                                        "opt-out, follow-up…",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "href": {"type": "string"},
                                                "text": {"type": "string"},
                                            },
                                        },
                                    },
                                    "attachments": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "filename": {"type": "string"},
                                                "content_type": {"type": "string"},
                                                "size": {"type": "integer"},
                                            },
                                        },
                                    },
                                },
                            },
                        }
                    },
                },
                "RequestStatus": {
                    "type": "object",
                    "required": list(REQUEST_STATUS_FIELDS),
                    "additionalProperties": False,
                    "properties": {
                        "id": {"type": "string"},
                        "kind": {"type": "string", "enum": list(KINDS)},
                        "target": {"type": "string", "pattern": TARGET_PATTERN},
                        "status": {"type": "string", "enum": list(STATUSES)},
                        "created_at": {"type": "string", "format": "date-time"},
                        "delivered_at": {
                            "type": ["string", "null"],
                            "format": "date-time",
                            "description": "When the email to the recruiter or CFA was accepted by "
                            "the mail server",
                        },
                        "answer": {
                            "oneOf": [
                                {"type": "null"},
                                {
                                    "type": "object",
                                    "required": ["kind", "at"],
                                    "properties": {
                                        "kind": {"type": "string", "enum": list(ANSWERS)},
                                        "at": {"type": "string", "format": "date-time"},
                                    },
                                },
                            ]
                        },
                        "test": {
                            "type": "boolean",
                            "description": "Made with a test key: its emails went to the key's test "
                            "mailbox only (`GET /api/v1/test-mailbox`)",
                        },
                    },
                },
                "PartnerEvent": {
                    "type": "object",
                    "required": ["type", "timestamp", "data"],
                    "properties": {
                        "type": {"type": "string", "enum": list(EVENTS)},
                        "timestamp": {"type": "string", "format": "date-time"},
                        "data": status_ref,
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
                                    "reason": {
                                        "type": ["string", "null"],
                                        "enum": [*REASONS, INVALID_TARGET, None],
                                    },
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


def _webhook_headers() -> list[dict[str, Any]]:
    texts = {
        "webhook-id": "The event's id: the same on every retry (deduplicate on it).",
        "webhook-timestamp": "Seconds since the epoch when this attempt was signed.",
        "webhook-signature": "`v1,<base64 HMAC-SHA256>` of `id.timestamp.body` with the key's "
        "`whsec_` secret (verify with a Standard Webhooks library).",
    }
    return [
        {"name": name, "in": "header", "required": True, "description": text, "schema": {"type": "string"}}
        for name, text in texts.items()
    ]


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
