"""Quick-reply and opt-out tokens: random, single-purpose, stored hashed, expiring."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from databases import Database

from . import tables
from .kinds import Action


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def url_for(public_url: str, action: str, token: str) -> str:
    return f"{public_url}/{'optout' if action == 'optout' else 'reply'}/{token}"


@dataclass(frozen=True)
class TokenSet:
    rows: list[dict[str, Any]]
    buttons: list[dict[str, str]]
    optout_url: str


def issue_set(
    request_id: str | None,
    contact_email: str,
    actions: Sequence[Action],
    *,
    ttl: dt.timedelta,
    public_url: str,
    now: dt.datetime,
) -> TokenSet:
    """One token per button, plus the opt-out token every pro email carries."""
    rows: list[dict[str, Any]] = []
    urls: dict[str, str] = {}
    for code in dict.fromkeys([*(a.code for a in actions), "optout"]):
        token = secrets.token_urlsafe(24)
        urls[code] = url_for(public_url, code, token)
        rows.append({"token_hash": token_hash(token), "request_id": request_id,
                     "contact_email": contact_email, "action": code,
                     "expires_at": now + ttl, "created_at": now})
    buttons = [{"code": a.code, "label": a.label, "url": urls[a.code]} for a in actions]
    return TokenSet(rows, buttons, urls["optout"])


async def store(database: Database, rows: list[dict[str, Any]]) -> None:
    if rows:
        await database.execute_many(tables.reply_tokens.insert(), rows)
