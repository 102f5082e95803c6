"""Partner API keys: a key names its caller; only its hash is stored.

A partner key may have a webhook (`webhooks`): a URL and the `whsec_…` secret that
signs its events, shown once when made. Changing the URL keeps the secret (the
partner's verification goes on working); `rotate_secret` makes a new one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from databases import Database
from starlette.requests import Request

from . import tables, webhooks
from .database import Prepared, dialect, fetch_tuples
from .problems import Problem

ROLES = ("partner", "operator")

# Where a request's caller name comes from: an API key, or a form token (which
# anyone can have signed for any partner name by opening its form page).
CallerOrigin = Literal["key", "form"]


@dataclass(frozen=True)
class Caller:
    name: str
    role: str
    # The key's row: the requests it makes are its own (`request_status`).
    key_id: int | None = None
    # A test key: its requests are flagged test, their emails stay in its test mailbox.
    test: bool = False


@dataclass(frozen=True)
class NewKey:
    key: str
    prefix: str
    # Set when the key has a webhook: the signing secret, shown this once.
    webhook_secret: str | None = None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create_key(database: Database, caller: str, role: str = "partner", *, test: bool = False) -> str:
    """Store a new key for `caller` and return it; it is shown this once only. A test
    key (`lba_test_…`, partners only) makes test requests (see sandbox.py)."""
    return (await create(database, caller, role, test=test)).key


async def create(
    database: Database,
    caller: str,
    role: str = "partner",
    *,
    test: bool = False,
    webhook_url: str | None = None,
    production: bool = False,
) -> NewKey:
    """Store a new key for `caller`, with a webhook when `webhook_url` is given
    (`webhooks.BadWebhookURL` if it may not be one); the key and the secret are
    shown this once only."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    if test and role != "partner":
        raise ValueError("only a partner key can be a test key")
    secret = None
    if webhook_url is not None:
        if role != "partner":
            raise webhooks.BadWebhookURL("only a partner key has a webhook")
        webhook_url = webhooks.check_url(webhook_url, production=production)
        secret = webhooks.new_secret()
    prefix = secrets.token_hex(4)
    key = f"lba_{'test_' if test else ''}{prefix}_{secrets.token_urlsafe(32)}"
    await database.execute(
        tables.api_keys.insert().values(
            caller=caller,
            role=role,
            key_hash=_hash(key),
            prefix=prefix,
            created_at=dt.datetime.now(dt.UTC),
            webhook_url=webhook_url,
            webhook_secret=secret,
            test=test,
        )
    )
    return NewKey(key, prefix, secret)


class UnknownKey(LookupError):
    pass


async def set_webhook(
    database: Database,
    prefix: str,
    url: str | None,
    *,
    rotate_secret: bool = False,
    production: bool = False,
) -> str | None:
    """Set (`url`), keep (`url` None, `rotate_secret`) or remove (`url` "") the webhook
    of the active partner key with `prefix`. Returns the new secret when one was
    made (first webhook of the key, or `rotate_secret`), else None. Events still
    waiting go to the new URL, signed with the current secret; with the webhook
    removed, they are given up."""
    keys = tables.api_keys
    row = await database.fetch_one(
        sa.select(keys.c.id, keys.c.role, keys.c.webhook_url, keys.c.webhook_secret).where(
            keys.c.prefix == prefix, keys.c.revoked_at.is_(None)
        )
    )
    if row is None:
        raise UnknownKey(prefix)
    if url == "":
        await database.execute(
            keys.update().where(keys.c.id == row._mapping["id"]).values(webhook_url=None, webhook_secret=None)
        )
        return None
    if row._mapping["role"] != "partner":
        raise webhooks.BadWebhookURL("only a partner key has a webhook")
    if url is None:
        url = row._mapping["webhook_url"]
        if not url:
            raise webhooks.BadWebhookURL("this key has no webhook yet: give its URL")
    url = webhooks.check_url(url, production=production)
    secret = row._mapping["webhook_secret"]
    new_secret = None
    if rotate_secret or not secret:
        secret = new_secret = webhooks.new_secret()
    await database.execute(
        keys.update().where(keys.c.id == row._mapping["id"]).values(webhook_url=url, webhook_secret=secret)
    )
    return new_secret


async def list_keys(database: Database) -> list[dict[str, Any]]:
    rows = await database.fetch_all(tables.api_keys.select().order_by(tables.api_keys.c.id))
    hidden = {"key_hash", "webhook_secret"}
    return [{k: v for k, v in dict(r._mapping).items() if k not in hidden} for r in rows]


async def revoke_key(database: Database, prefix: str) -> bool:
    keys = tables.api_keys
    found = await database.fetch_val(
        sa.select(keys.c.id).where(keys.c.prefix == prefix, keys.c.revoked_at.is_(None))
    )
    if found is None:
        return False
    await database.execute(keys.update().where(keys.c.id == found).values(revoked_at=dt.datetime.now(dt.UTC)))
    return True


async def authenticate(request: Request, *, role: str = "partner") -> Caller:
    """The caller named by `Authorization: Bearer <key>`, or 401."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="api"'}
    if scheme.lower() != "bearer" or not key.strip():
        raise Problem(
            401,
            "Une clé d'API est nécessaire : Authorization: Bearer <clé>.",
            code="missing_api_key",
            headers=challenge,
        )
    found = await _active_key(request, _hash(key.strip()))
    if found is None:
        raise Problem(
            401,
            "Cette clé d'API n'est pas valide ou a été révoquée.",
            code="invalid_api_key",
            headers=challenge,
        )
    caller = Caller(found["caller"], found["role"], test=bool(found["test"]), key_id=int(found["id"]))
    if role == "operator" and caller.role != "operator":
        raise Problem(403, "Cette clé d'API ne permet pas cette action.", code="forbidden")
    return caller


_KEY_LOOKUP: dict[str, Prepared] = {}


async def _active_key(request: Request, key_hash: str) -> dict[str, Any] | None:
    """The active key with this hash, read where short reads go (SQLite: inline on
    the event loop's thread) with a statement compiled once. Never kept in memory:
    a revoked key is refused from the next request on, on every instance."""
    state = request.app.state
    database: Database = state.database
    reads: Database = getattr(state, "reads", None) or database
    name = database.url.dialect
    lookup = _KEY_LOOKUP.get(name)
    if lookup is None:
        keys = tables.api_keys
        statement = sa.select(keys.c.id, keys.c.caller, keys.c.role, keys.c.test).where(
            keys.c.key_hash == sa.bindparam("key_hash", type_=sa.Text()), keys.c.revoked_at.is_(None)
        )
        lookup = _KEY_LOOKUP[name] = Prepared(statement, dialect(database))
    rows = await fetch_tuples(reads, {name: lookup.sql}, lookup.args({"key_hash": key_hash}))
    if rows is None:  # a backend without raw reads
        row = await database.fetch_one(
            sa.select(tables.api_keys).where(
                tables.api_keys.c.key_hash == key_hash, tables.api_keys.c.revoked_at.is_(None)
            )
        )
        return dict(row._mapping) if row is not None else None
    return lookup.records(rows)[0] if rows else None
