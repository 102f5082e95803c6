"""A contact address that bounces: the contact turns ineligible and every candidate
waiting on it is told (for rdv, with the CFA's phone), once."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import sqlalchemy as sa
from databases import Database

from . import emails, outbox, tables
from .contact_requests import describe_target, request_context
from .kinds import KINDS
from .resources import write_transaction
from .settings import Settings
from .targets import Target

log = logging.getLogger("widget_server.bounces")

# Emails whose recipient is a directory contact; a bounce of any other is the candidate's.
PRO_TEMPLATES = frozenset({"candidature_pro", "rdv_pro", "reminder"})

_UPSERT = sa.text(
    "INSERT INTO contacts (email, bounced_at, bounce_reason) VALUES (:email, :at, :reason) "
    "ON CONFLICT (email) DO UPDATE SET bounced_at = excluded.bounced_at, "
    "bounce_reason = excluded.bounce_reason"
).bindparams(sa.bindparam("at", type_=tables.UTCDateTime()))


async def record_bounce(
    database: Database, settings: Settings, email: str, reason: str,
    *, request_ids: list[str] | None = None, now: dt.datetime | None = None,
) -> int:
    """Marks `email` as bouncing and tells the candidates of its open requests
    (only `request_ids` when given). Returns how many candidates were told."""
    now = now or dt.datetime.now(dt.UTC)
    email = email.strip().lower()
    requests = tables.contact_requests
    query = sa.select(requests).where(
        sa.func.lower(requests.c.contact_email) == email, requests.c.status == "sent")
    if request_ids is not None:
        query = query.where(requests.c.id.in_(request_ids))
    told = 0
    async with write_transaction(database):
        await database.execute(_UPSERT.bindparams(email=email, at=now, reason=reason[:500]))
        for row in await database.fetch_all(query):
            await _tell_candidate(database, settings, dict(row._mapping), now)
            told += 1
    return told


async def _tell_candidate(
    database: Database, settings: Settings, row: dict[str, Any], now: dt.datetime
) -> None:
    kind = KINDS[row["kind"]]
    target = Target(row["target_kind"], row["target_ref"])
    record = await _target_record(database, target)
    view = describe_target(target, record) if record else {
        "kind": target.kind, "name": "", "company_name": "", "city": "", "phone": None}
    context = request_context(kind, row, view, settings.public_url)
    message = emails.compose(
        settings, "delivery_failed", context,
        to=emails.address(f"{row['first_name']} {row['last_name']}", row["email"]), now=now)
    await outbox.enqueue(database, message, template="delivery_failed", request_id=row["id"],
                         now=now)
    await database.execute(tables.contact_requests.update()
                           .where(tables.contact_requests.c.id == row["id"])
                           .values(status="bounced", updated_at=now))


async def _target_record(database: Database, target: Target) -> Mapping[str, Any] | None:
    table, key = {
        "offer": (tables.offers, tables.offers.c.offer_id),
        "company": (tables.companies, tables.companies.c.siret),
        "formation": (tables.formations, tables.formations.c.cle_ministere_educatif),
    }[target.kind]
    row = await database.fetch_one(sa.select(table).where(key == target.ref))
    return dict(row._mapping) if row else None


def on_permanent_failure(
    database: Database, settings: Settings
) -> Callable[[Mapping[str, Any], str], Awaitable[None]]:
    """The outbox worker's hook for a 5xx answer to one of our messages."""

    async def hook(row: Mapping[str, Any], error: str) -> None:
        if row["template"] not in PRO_TEMPLATES:
            log.warning("candidate address refused for message %s: %s", row["message_id"], error)
            return
        request_ids = [row["request_id"]] if row["request_id"] else []
        await record_bounce(database, settings, row["recipient"], error, request_ids=request_ids)

    return hook
