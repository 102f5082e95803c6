"""A person's rights on their data (RGPD articles 15 and 17), answered by the
operator: `widget-server export EMAIL` prints everything the service holds
about the person who wrote from EMAIL, as JSON; `widget-server forget EMAIL`
erases it, and prints what it did.

A person is found by their address whatever its letter case. Forgetting
anonymises the requests as `purge` does after the retention period (the rows
stay, emptied, for the counts and the partner's status API), deletes the CVs
(those kept across a form's error round trips too), the emails queued or sent
about them and their reply tokens, in one
transaction: safe while the service runs. A directory contact's opt-out or
bounce under the same address is kept: it protects that person from emails.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from databases import Database

from . import kept_cvs, tables
from .local_time import datetime_fr, iso_paris
from .outbox import EMAIL
from .resources import write_transaction
from .retention import anonymise_requests
from .validation import email_identity

_REQUEST_FIELDS = (
    "id",
    "kind",
    "target_kind",
    "target_ref",
    "caller",
    "first_name",
    "last_name",
    "email",
    "phone",
    "role",
    "topics",
    "message",
    "contact_email",
    "status",
    "answer",
    "answer_message",
    "answer_details",
)
_REQUEST_TIMES = ("created_at", "updated_at", "answered_at", "reminded_at", "withdrawn_at", "anonymised_at")
# Statuses of an email that has not left yet; `sending`: a worker holds it right now.
_QUEUED = ("pending", "sending")


def _the_person(email: str) -> sa.ColumnElement[bool]:
    # `email_key` is the case-folded address, written with every request (migration 6 filled older rows).
    return tables.contact_requests.c.email_key == email_identity(email)


async def _requests(database: Database, email: str) -> list[Mapping[str, Any]]:
    requests = tables.contact_requests
    query = sa.select(requests).where(_the_person(email)).order_by(requests.c.created_at, requests.c.id)
    return [row._mapping for row in await database.fetch_all(query)]


# --- export -------------------------------------------------------------------------


async def export(database: Database, email: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """Everything held about the person writing from `email`, times in Paris time."""
    now = now or dt.datetime.now(dt.UTC)
    rows = await _requests(database, email)
    ids = [row["id"] for row in rows]
    cvs = {
        row["request_id"]: row
        for row in await database.fetch_all(
            sa.select(tables.cv_files).where(tables.cv_files.c.request_id.in_(ids))
        )
    }
    outbox = tables.outbox
    emails = await database.fetch_all(
        sa.select(
            outbox.c.request_id,
            outbox.c.template,
            outbox.c.recipient,
            outbox.c.status,
            outbox.c.created_at,
            outbox.c.sent_at,
        )
        .where(outbox.c.request_id.in_(ids), outbox.c.kind == EMAIL)
        .order_by(outbox.c.id)
    )
    tokens = await database.fetch_all(
        sa.select(
            tables.reply_tokens.c.request_id,
            tables.reply_tokens.c.action,
            tables.reply_tokens.c.expires_at,
            tables.reply_tokens.c.used_at,
        ).where(tables.reply_tokens.c.request_id.in_(ids))
    )
    contact = await database.fetch_one(
        sa.select(tables.contacts).where(sa.func.lower(tables.contacts.c.email) == email_identity(email))
    )
    return {
        "email": email,
        "exported_at": iso_paris(now),
        "requests": [
            {
                **{name: row[name] for name in _REQUEST_FIELDS},
                **{name: iso_paris(row[name]) for name in _REQUEST_TIMES},
                "cv": _cv(cvs.get(row["id"])),
                "emails": [
                    {
                        "template": e["template"],
                        "to": e["recipient"],
                        "status": e["status"],
                        "queued_at": iso_paris(e["created_at"]),
                        "sent_at": iso_paris(e["sent_at"]),
                    }
                    for e in emails
                    if e["request_id"] == row["id"]
                ],
                "reply_links": [
                    {
                        "action": t["action"],
                        "expires_at": iso_paris(t["expires_at"]),
                        "used_at": iso_paris(t["used_at"]),
                    }
                    for t in tokens
                    if t["request_id"] == row["id"]
                ],
            }
            for row in rows
        ],
        # CVs kept while a form was being fixed (`kept_cvs`), a request sent or not.
        "kept_cvs": [
            {
                "filename": kept["filename"],
                "content_type": kept["content_type"],
                "size": kept["size"],
                "kept_until": iso_paris(kept["expires_at"]),
                "data_base64": base64.b64encode(bytes(kept["data"])).decode(),
            }
            for kept in await kept_cvs.of_person(database, email)
        ],
        "directory_contact": None
        if contact is None
        else {
            "email": contact["email"],
            "company_opt_out_at": iso_paris(contact["company_opt_out_at"]),
            "formation_opt_out_at": iso_paris(contact["formation_opt_out_at"]),
            "bounced_at": iso_paris(contact["bounced_at"]),
        },
    }


def _cv(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    data = row["data"]
    return {
        "filename": row["filename"],
        "content_type": row["content_type"],
        "size": row["size"],
        "deleted_at": iso_paris(row["deleted_at"]),
        "data_base64": base64.b64encode(bytes(data)).decode() if data is not None else None,
    }


# --- forget -------------------------------------------------------------------------


@dataclass(frozen=True)
class Forgotten:
    email: str
    requests: tuple[tuple[str, str, str, dt.datetime], ...]  # id, kind, target, created_at
    cvs_deleted: int
    queued_emails_cancelled: int
    emails_being_sent: int
    sent_emails_deleted: int
    reply_tokens_deleted: int
    idempotency_keys_deleted: int
    directory_contact_kept: bool
    # CVs of forms sent back with an error (`kept_cvs`), requests made or not.
    kept_cvs_deleted: int = 0

    def summary(self) -> str:
        if not self.requests and not self.kept_cvs_deleted:
            lines = [f"Nothing found for {self.email} (letter case ignored): nothing changed."]
        elif not self.requests:
            lines = [
                f"Forgot {self.email} (letter case ignored):",
                "Requests anonymised: 0",
                f"CVs kept across form errors deleted: {self.kept_cvs_deleted}",
            ]
        else:
            lines = [
                f"Forgot {self.email} (letter case ignored):",
                f"Requests anonymised: {len(self.requests)}",
                *(
                    f"  {request_id}  {kind} to {target}, sent {datetime_fr(created_at)}"
                    for request_id, kind, target, created_at in self.requests
                ),
                f"CVs deleted: {self.cvs_deleted}",
                f"CVs kept across form errors deleted: {self.kept_cvs_deleted}",
                f"Queued emails cancelled: {self.queued_emails_cancelled}",
                f"Sent or failed emails deleted: {self.sent_emails_deleted}",
                f"Reply links deleted: {self.reply_tokens_deleted}",
                f"Idempotency keys deleted: {self.idempotency_keys_deleted}",
            ]
            if self.emails_being_sent:
                lines.append(
                    f"Warning: {self.emails_being_sent} email(s) were being sent at this moment "
                    "and may still arrive."
                )
        if self.directory_contact_kept:
            lines.append(
                "Kept: this address's opt-out or bounce in the directory (it stops emails to this person)."
            )
        return "\n".join(lines)


async def forget(database: Database, email: str, now: dt.datetime | None = None) -> Forgotten:
    """Erase what the service holds about the person writing from `email`, in one transaction."""
    now = now or dt.datetime.now(dt.UTC)
    outbox = tables.outbox
    async with write_transaction(database):
        rows = await _requests(database, email)
        ids = [row["id"] for row in rows]
        cvs = await _count(
            database,
            tables.cv_files,
            tables.cv_files.c.request_id.in_(ids),
            tables.cv_files.c.data.is_not(None),
        )
        statuses = {
            row["status"]: row["n"]
            for row in await database.fetch_all(
                sa.select(outbox.c.status, sa.func.count().label("n"))
                .where(outbox.c.request_id.in_(ids), outbox.c.kind == EMAIL)
                .group_by(outbox.c.status)
            )
        }
        tokens = await _count(database, tables.reply_tokens, tables.reply_tokens.c.request_id.in_(ids))
        keys = await _count(database, tables.idempotency_keys, tables.idempotency_keys.c.request_id.in_(ids))
        contact = await database.fetch_val(
            sa.select(sa.func.count())
            .select_from(tables.contacts)
            .where(sa.func.lower(tables.contacts.c.email) == email_identity(email))
        )
        # A CV kept while the form was fixed, whether a request followed or not.
        kept = await kept_cvs.forget_person(database, email)
        if ids:
            await anonymise_requests(database, ids, now)
            # Every email about them goes, queued ones included: they carry the
            # person's details, and a request that is forgotten is not sent. Partner
            # webhooks hold none (the status object) and stay.
            await database.execute(
                outbox.delete().where(outbox.c.request_id.in_(ids), outbox.c.kind == EMAIL)
            )
            await database.execute(
                tables.idempotency_keys.delete().where(tables.idempotency_keys.c.request_id.in_(ids))
            )
    return Forgotten(
        email=email,
        requests=tuple(
            (row["id"], row["kind"], f"{row['target_kind']}:{row['target_ref']}", row["created_at"])
            for row in rows
        ),
        cvs_deleted=cvs,
        queued_emails_cancelled=sum(n for status, n in statuses.items() if status in _QUEUED),
        emails_being_sent=statuses.get("sending", 0),
        sent_emails_deleted=sum(n for status, n in statuses.items() if status not in _QUEUED),
        reply_tokens_deleted=tokens,
        idempotency_keys_deleted=keys,
        directory_contact_kept=bool(contact),
        kept_cvs_deleted=kept,
    )


async def _count(database: Database, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    return int(await database.fetch_val(sa.select(sa.func.count()).select_from(table).where(*where)) or 0)
