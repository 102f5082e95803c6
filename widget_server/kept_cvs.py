"""CVs kept on the server while a candidate fixes another field of the form.

A browser never fills a file input again after a page load, so a form sent back
for a wrong phone number would lose its CV. A CV that passed its checks is kept
here instead, referenced by the new form token only: the token signs the kept
CV's id, and the row holds the hash of that very token, so a kept CV is read
back from signed data for the form it was sent with, never from a posted field,
an older page of the same form or another form (the token signs its target). It lasts as long as the token
(`FORM_TOKEN_TTL_SECONDS`), and only `REPOST_SECONDS` once the request is
stored (its CV is then in `cv_files`): the same page posted twice still gets
its request's acknowledgement. `widget-server purge` deletes the expired ones,
as does every new kept CV.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

import sqlalchemy as sa
from databases import Database

from . import tables
from .cv import CV
from .resources import write_transaction
from .validation import email_identity

# How long a kept CV outlives the request it was sent with.
REPOST_SECONDS = 600


def new_id() -> str:
    return secrets.token_urlsafe(16)


def _token_hash(form_token: str) -> str:
    return hashlib.sha256(b"kept-cv\0" + form_token.encode()).hexdigest()


async def keep(
    database: Database,
    kept_id: str,
    cv: CV,
    *,
    form_token: str,
    now: dt.datetime,
    ttl: dt.timedelta,
    max_bytes: int,
    email: str,
) -> bool:
    """Stores `cv` under `kept_id` for `form_token` (the token naming `kept_id`),
    or moves an already kept one to this new token: older pages lose it. False
    when a new one would take the kept CVs past `max_bytes` (nothing stored):
    posting forms with a CV and a wrong phone number can't fill the database.
    `email` is what the form's email field holds now: whose CV it is, for
    `forget_person`."""
    kept = tables.kept_cvs
    values = {
        "token_hash": _token_hash(form_token),
        "expires_at": now + ttl,
        "email_key": email_identity(email) or None,
    }
    async with write_transaction(database):
        await database.execute(kept.delete().where(kept.c.expires_at <= now))
        moved = await database.fetch_val(
            kept.update().where(kept.c.id == kept_id).values(**values).returning(kept.c.id)
        )
        if moved is None:
            used = await database.fetch_val(sa.select(sa.func.coalesce(sa.func.sum(kept.c.size), 0)))
            if int(used) + len(cv.data) > max_bytes:
                return False
            await database.execute(
                kept.insert().values(
                    id=kept_id,
                    filename=cv.filename,
                    content_type=cv.content_type,
                    size=len(cv.data),
                    data=cv.data,
                    created_at=now,
                    **values,
                )
            )
    return True


async def find(database: Database, kept_id: str, *, form_token: str, now: dt.datetime) -> CV | None:
    """The CV kept under `kept_id` (read from the signed token) for exactly this
    form token, unexpired; None otherwise."""
    if not kept_id:
        return None
    kept = tables.kept_cvs
    row = await database.fetch_one(
        sa.select(kept.c.filename, kept.c.content_type, kept.c.data).where(
            kept.c.id == kept_id,
            kept.c.token_hash == _token_hash(form_token),
            kept.c.expires_at > now,
        )
    )
    if row is None:
        return None
    found = row._mapping
    return CV(found["filename"], found["content_type"], bytes(found["data"]))


async def forget(database: Database, kept_id: str) -> None:
    """The kept CV is no longer needed: replaced, refused, or out of reach."""
    if kept_id:
        await database.execute(tables.kept_cvs.delete().where(tables.kept_cvs.c.id == kept_id))


async def of_person(database: Database, email: str) -> list[dict[str, Any]]:
    """The CVs kept for forms that held `email` (letter case ignored), for `export`."""
    kept = tables.kept_cvs
    rows = await database.fetch_all(
        sa.select(kept.c.filename, kept.c.content_type, kept.c.size, kept.c.data, kept.c.expires_at)
        .where(kept.c.email_key == email_identity(email))
        .order_by(kept.c.created_at)
    )
    return [dict(row._mapping) for row in rows]


async def forget_person(database: Database, email: str) -> int:
    """Deletes the CVs kept for forms that held `email` (letter case ignored) when
    their CV was last kept; returns how many. Call it inside `forget`'s transaction."""
    kept = tables.kept_cvs
    deleted = await database.fetch_all(
        kept.delete().where(kept.c.email_key == email_identity(email)).returning(kept.c.id)
    )
    return len(deleted)


async def sent(database: Database, kept_id: str, now: dt.datetime) -> None:
    """The request went with the kept CV (now in `cv_files`): it stays
    `REPOST_SECONDS` more, so the same page posted again (a double click) is
    answered as the request it already made, then expires."""
    if kept_id:
        kept = tables.kept_cvs
        await database.execute(
            kept.update()
            .where(kept.c.id == kept_id, kept.c.expires_at > now + dt.timedelta(seconds=REPOST_SECONDS))
            .values(expires_at=now + dt.timedelta(seconds=REPOST_SECONDS))
        )


def expired(now: dt.datetime) -> sa.ColumnElement[bool]:
    return tables.kept_cvs.c.expires_at <= now
