"""`widget-server purge`: CVs are deleted once delivered plus a grace period, and
candidates' personal data is anonymised after the retention period. Safe to run
from cron, as often as wanted: each run only does what is due."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from databases import Database

from . import tables
from .resources import write_transaction
from .settings import Settings

ANONYMOUS = "Anonyme"


@dataclass(frozen=True)
class PurgeReport:
    cvs_deleted: int
    requests_anonymised: int

    def summary(self) -> str:
        return f"CVs deleted: {self.cvs_deleted}\nRequests anonymised: {self.requests_anonymised}"


async def purge(database: Database, settings: Settings, now: dt.datetime | None = None) -> PurgeReport:
    now = now or dt.datetime.now(dt.UTC)
    cvs, outbox, requests = tables.cv_files, tables.outbox, tables.contact_requests
    # A CV goes once the email carrying it was delivered (or given up) long enough ago.
    delivered = sa.select(outbox.c.request_id).where(
        outbox.c.attach_cv.is_(True),
        outbox.c.status.in_(("sent", "failed")),
        sa.func.coalesce(outbox.c.sent_at, outbox.c.created_at)
        < now - dt.timedelta(days=settings.cv_retention_days),
    )
    due_cvs = [
        r[0]
        for r in await database.fetch_all(
            sa.select(cvs.c.request_id).where(cvs.c.deleted_at.is_(None), cvs.c.request_id.in_(delivered))
        )
    ]
    expired = now - dt.timedelta(days=settings.personal_data_retention_days)
    due_requests = [
        r[0]
        for r in await database.fetch_all(
            sa.select(requests.c.id).where(
                requests.c.anonymised_at.is_(None), requests.c.updated_at < expired
            )
        )
    ]
    async with write_transaction(database):
        if due_cvs:
            await database.execute(
                cvs.update().where(cvs.c.request_id.in_(due_cvs)).values(data=None, deleted_at=now)
            )
        if due_requests:
            await database.execute(
                requests.update()
                .where(requests.c.id.in_(due_requests))
                .values(
                    first_name=ANONYMOUS,
                    last_name=ANONYMOUS,
                    email=sa.literal("anonyme-") + requests.c.id + sa.literal("@invalid"),
                    email_key=sa.literal("anonyme-") + requests.c.id + sa.literal("@invalid"),
                    phone="",
                    message=None,
                    answer_message=None,
                    anonymised_at=now,
                )
            )
            await database.execute(
                cvs.update()
                .where(cvs.c.request_id.in_(due_requests))
                .values(data=None, filename="cv", deleted_at=now)
            )
            # Queued emails hold the candidate's details too; finished ones go.
            await database.execute(
                outbox.delete().where(
                    outbox.c.request_id.in_(due_requests), outbox.c.status.in_(("sent", "failed"))
                )
            )
            await database.execute(
                tables.reply_tokens.delete().where(tables.reply_tokens.c.request_id.in_(due_requests))
            )
    return PurgeReport(len(due_cvs), len(due_requests))
