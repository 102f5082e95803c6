"""`widget-server purge`: CVs are deleted once delivered plus a grace period, and
candidates' personal data is anonymised after the retention period; CVs kept
across a form's errors (`kept_cvs`) go once expired. Safe to run
from cron, as often as wanted: each run only does what is due."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from databases import Database

from . import kept_cvs, tables
from .outbox import CANCELLED
from .resources import write_transaction
from .settings import Settings

ANONYMOUS = "Anonyme"


@dataclass(frozen=True)
class PurgeReport:
    """What a purge did, or would do (`dry_run`): the same lines either way."""

    cv_requests: tuple[str, ...]
    anonymised_requests: tuple[str, ...]
    emails_deleted: int
    tokens_deleted: int
    kept_cvs_deleted: int = 0
    dry_run: bool = False

    @property
    def cvs_deleted(self) -> int:
        return len(self.cv_requests)

    @property
    def requests_anonymised(self) -> int:
        return len(self.anonymised_requests)

    def lines(self) -> list[str]:
        return [
            f"CVs deleted: {self.cvs_deleted}",
            *(f"  CV of request {request_id}" for request_id in self.cv_requests),
            f"Requests anonymised: {self.requests_anonymised}",
            *(f"  request {request_id}" for request_id in self.anonymised_requests),
            f"Finished emails deleted: {self.emails_deleted}",
            f"Reply tokens deleted: {self.tokens_deleted}",
            f"Expired CVs kept across form errors deleted: {self.kept_cvs_deleted}",
        ]

    def summary(self) -> str:
        heading = ["Dry run: nothing was changed. `purge` would do this now:"] if self.dry_run else []
        return "\n".join(heading + self.lines())


async def purge(
    database: Database, settings: Settings, now: dt.datetime | None = None, *, dry_run: bool = False
) -> PurgeReport:
    """Delete the CVs and anonymise the requests that are due; with `dry_run`, only say which.

    Both runs read what is due with the same queries, inside the transaction that
    (for a real run) then changes exactly those rows.
    """
    now = now or dt.datetime.now(dt.UTC)
    async with write_transaction(database):
        cv_requests = await _due_cvs(database, settings, now)
        anonymised = await _due_requests(database, settings, now)
        finished = _finished_emails(anonymised)
        emails = await _count(database, tables.outbox, finished)
        tokens = await _count(database, tables.reply_tokens, _tokens(anonymised))
        kept = await _count(database, tables.kept_cvs, kept_cvs.expired(now))
        if not dry_run:
            await database.execute(tables.kept_cvs.delete().where(kept_cvs.expired(now)))
            if cv_requests:
                await database.execute(
                    tables.cv_files.update()
                    .where(tables.cv_files.c.request_id.in_(cv_requests))
                    .values(data=None, deleted_at=now)
                )
            if anonymised:
                await anonymise_requests(database, anonymised, now)
                # Queued emails hold the candidate's details too; finished (or cancelled) ones go.
                await database.execute(tables.outbox.delete().where(finished))
    return PurgeReport(tuple(cv_requests), tuple(anonymised), emails, tokens, kept, dry_run)


async def anonymise_requests(database: Database, request_ids: Sequence[str], now: dt.datetime) -> None:
    """Replace the candidate's details by placeholders, drop the CV and the reply
    tokens. The request itself stays, for the counts (`stats`) and the partner."""
    requests = tables.contact_requests
    await database.execute(
        requests.update()
        .where(requests.c.id.in_(request_ids))
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
        tables.cv_files.update()
        .where(tables.cv_files.c.request_id.in_(request_ids))
        .values(data=None, filename="cv", deleted_at=now)
    )
    await database.execute(tables.reply_tokens.delete().where(_tokens(request_ids)))


async def _due_cvs(database: Database, settings: Settings, now: dt.datetime) -> list[str]:
    cvs, outbox = tables.cv_files, tables.outbox
    # A CV goes once the email carrying it was delivered (or given up) long enough ago.
    delivered = sa.select(outbox.c.request_id).where(
        outbox.c.attach_cv.is_(True),
        outbox.c.status.in_(("sent", "failed")),
        sa.func.coalesce(outbox.c.sent_at, outbox.c.created_at)
        < now - dt.timedelta(days=settings.cv_retention_days),
    )
    query = (
        sa.select(cvs.c.request_id)
        .where(cvs.c.deleted_at.is_(None), cvs.c.request_id.in_(delivered))
        .order_by(cvs.c.request_id)
    )
    return [row[0] for row in await database.fetch_all(query)]


async def _due_requests(database: Database, settings: Settings, now: dt.datetime) -> list[str]:
    requests = tables.contact_requests
    expired = now - dt.timedelta(days=settings.personal_data_retention_days)
    query = (
        sa.select(requests.c.id)
        .where(requests.c.anonymised_at.is_(None), requests.c.updated_at < expired)
        .order_by(requests.c.id)
    )
    return [row[0] for row in await database.fetch_all(query)]


def _finished_emails(request_ids: Sequence[str]) -> sa.ColumnElement[bool]:
    outbox = tables.outbox
    return sa.and_(outbox.c.request_id.in_(request_ids), outbox.c.status.in_(("sent", "failed", CANCELLED)))


def _tokens(request_ids: Sequence[str]) -> sa.ColumnElement[bool]:
    return tables.reply_tokens.c.request_id.in_(request_ids)


async def _count(database: Database, table: sa.Table, where: sa.ColumnElement[bool]) -> int:
    return int(await database.fetch_val(sa.select(sa.func.count()).select_from(table).where(where)) or 0)
