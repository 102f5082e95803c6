"""Quick-reply, opt-out and follow-up tokens: random, single-purpose, stored
hashed, expiring. The candidate's follow-up link is one too (action
`followup`): it dies with the request's other tokens when the request is
anonymised or forgotten."""

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


FOLLOWUP = "followup"
# The page each kind of token opens; every other action is an answer (`/reply/`).
_PATHS = {"optout": "optout", "optin": "optout", "filled": "filled", FOLLOWUP: "suivi"}


def url_for(public_url: str, action: str, token: str) -> str:
    return f"{public_url}/{_PATHS.get(action, 'reply')}/{token}"


@dataclass(frozen=True)
class TokenSet:
    rows: list[dict[str, Any]]
    # In the email's order; `secondary` ones are small links after the answers.
    buttons: list[dict[str, Any]]
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
        urls[code], row = issue(request_id, contact_email, code, ttl=ttl, public_url=public_url, now=now)
        rows.append(row)
    buttons = [
        {"code": a.code, "label": a.label, "url": urls[a.code], "secondary": a.secondary} for a in actions
    ]
    return TokenSet(rows, buttons, urls["optout"])


def token_text(raw: bytes) -> str:
    """How a token is written in a link: hex, one unbroken word of 48 characters.

    URL-safe base64 is now and then a run of 30 to 35 base58 characters after a `-`
    or a `/`, starting with 1 or 3: SpamAssassin reads it as a Bitcoin address
    (`__BITCOIN_ID`), and the email scores points for nothing it says.
    """
    return raw.hex()


def issue(
    request_id: str | None,
    contact_email: str,
    action: str,
    *,
    ttl: dt.timedelta,
    public_url: str,
    now: dt.datetime,
) -> tuple[str, dict[str, Any]]:
    """A new token: its URL (shown once, in an email) and the row to store (its hash)."""
    token = token_text(secrets.token_bytes(24))
    return url_for(public_url, action, token), {
        "token_hash": token_hash(token),
        "request_id": request_id,
        "contact_email": contact_email,
        "action": action,
        "expires_at": now + ttl,
        "created_at": now,
    }


async def store(database: Database, rows: list[dict[str, Any]]) -> None:
    if rows:
        await database.execute_many(tables.reply_tokens.insert(), rows)


async def find(database: Database, token: str) -> dict[str, Any] | None:
    """The stored token row for a token from a link, or None."""
    if not token or len(token) > 100:
        return None
    row = await database.fetch_one(
        tables.reply_tokens.select().where(tables.reply_tokens.c.token_hash == token_hash(token))
    )
    return dict(row._mapping) if row else None
