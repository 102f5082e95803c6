"""Partner API keys: a key names its caller; only its hash is stored."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from databases import Database
from starlette.requests import Request

from . import tables
from .problems import Problem

ROLES = ("partner", "operator")

# Where a request's caller name comes from: an API key, or a form token (which
# anyone can have signed for any partner name by opening its form page).
CallerOrigin = Literal["key", "form"]


@dataclass(frozen=True)
class Caller:
    name: str
    role: str
    key_id: int | None = None
    # A test key: its requests are flagged test, their emails stay in its test mailbox.
    test: bool = False


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create_key(database: Database, caller: str, role: str = "partner", *, test: bool = False) -> str:
    """Store a new key for `caller` and return it; it is shown this once only. A test
    key (`lba_test_…`, partners only) makes test requests (see sandbox.py)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    if test and role != "partner":
        raise ValueError("only a partner key can be a test key")
    prefix = secrets.token_hex(4)
    key = f"lba_{'test_' if test else ''}{prefix}_{secrets.token_urlsafe(32)}"
    await database.execute(
        tables.api_keys.insert().values(
            caller=caller,
            role=role,
            key_hash=_hash(key),
            prefix=prefix,
            created_at=dt.datetime.now(dt.UTC),
            test=test,
        )
    )
    return key


async def list_keys(database: Database) -> list[dict[str, Any]]:
    rows = await database.fetch_all(tables.api_keys.select().order_by(tables.api_keys.c.id))
    return [{k: v for k, v in dict(r._mapping).items() if k != "key_hash"} for r in rows]


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
    row = await request.app.state.database.fetch_one(
        sa.select(
            tables.api_keys.c.id, tables.api_keys.c.caller, tables.api_keys.c.role, tables.api_keys.c.test
        ).where(tables.api_keys.c.key_hash == _hash(key.strip()), tables.api_keys.c.revoked_at.is_(None))
    )
    if row is None:
        raise Problem(
            401,
            "Cette clé d'API n'est pas valide ou a été révoquée.",
            code="invalid_api_key",
            headers=challenge,
        )
    found = row._mapping
    caller = Caller(found["caller"], found["role"], test=bool(found["test"]), key_id=int(found["id"]))
    if role == "operator" and caller.role != "operator":
        raise Problem(403, "Cette clé d'API ne permet pas cette action.", code="forbidden")
    return caller
