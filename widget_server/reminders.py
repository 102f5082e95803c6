"""One reminder to the recruiter or CFA for a request still unanswered after
`REMINDER_DAYS`: never for an answered, bouncing or opted-out one, never twice.
A periodic job of the email workers (`serve`'s or `worker`'s, whichever claims it),
and `widget-server remind` (cron-safe): each reminder is claimed on its request."""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
from databases import Database

from . import outbox, reply_tokens, tables
from .contact_requests import compose_pro_email, load
from .jobs import PeriodicJob
from .kinds import PRO_EMAILS
from .optout import is_opted_out
from .resources import write_transaction
from .settings import Settings

log = logging.getLogger("widget_server.reminders")


async def send_due_reminders(database: Database, settings: Settings, now: dt.datetime | None = None) -> int:
    """Queues the reminders that are due; returns how many."""
    now = now or dt.datetime.now(dt.UTC)
    requests, contacts, offers = tables.contact_requests, tables.contacts, tables.offers
    # Filtered in SQL as far as possible, so that requests which will never be
    # reminded (opted out, first email undelivered) cannot fill the batch forever;
    # `is_opted_out` below stays the authority.
    delivered = sa.exists().where(
        tables.outbox.c.request_id == requests.c.id,
        tables.outbox.c.template.in_(PRO_EMAILS),
        tables.outbox.c.status == "sent",
    )
    closed = sa.exists().where(offers.c.offer_id == requests.c.target_ref, offers.c.status == "closed")
    due = await database.fetch_all(
        sa.select(requests.c.id)
        .select_from(requests.outerjoin(contacts, contacts.c.email == requests.c.contact_email))
        .where(
            requests.c.status == "sent",
            requests.c.answered_at.is_(None),
            requests.c.reminded_at.is_(None),
            requests.c.anonymised_at.is_(None),
            requests.c.created_at <= now - dt.timedelta(days=settings.reminder_days),
            contacts.c.bounced_at.is_(None),
            delivered,
            sa.or_(
                sa.and_(requests.c.target_kind == "company", contacts.c.company_opt_out_at.is_(None)),
                sa.and_(requests.c.target_kind == "formation", contacts.c.formation_opt_out_at.is_(None)),
                sa.and_(requests.c.target_kind == "offer", ~closed),
            ),
        )
        .order_by(requests.c.created_at)
        .limit(500)
    )
    sent = 0
    for (request_id,) in (tuple(r._mapping.values()) for r in due):
        stored = await load(database, request_id)
        if stored is None or await is_opted_out(database, stored, stored.row["contact_email"]):
            continue
        row, kind = stored.row, stored.kind
        # No reminder of an email that never arrived (mail server down for days):
        # it comes once the first one is delivered.
        first = await _delivered_pro_message_id(database, row["id"], kind.pro_email)
        if first is None:
            continue
        tokens = reply_tokens.issue_set(
            row["id"],
            row["contact_email"],
            kind.actions_for(stored.target.kind),
            ttl=dt.timedelta(days=kind.token_days),
            public_url=settings.public_url,
            now=now,
        )
        # Threaded under the first email.
        message = compose_pro_email(settings, stored, tokens, reminder_of=first, now=now)
        async with write_transaction(database):
            # Claimed atomically: two instances running this never remind twice.
            claimed = await database.fetch_val(
                requests.update()
                .where(
                    requests.c.id == row["id"],
                    requests.c.reminded_at.is_(None),
                    requests.c.answered_at.is_(None),
                )
                .values(reminded_at=now)
                .returning(requests.c.id)
            )
            if claimed is None:
                continue
            await reply_tokens.store(database, tokens.rows)
            await outbox.enqueue(
                database, message, template="reminder", request_id=row["id"], attach_cv=kind.needs_cv, now=now
            )
        sent += 1
    return sent


async def _delivered_pro_message_id(database: Database, request_id: str, template: str) -> str | None:
    outbox_ = tables.outbox
    value = await database.fetch_val(
        sa.select(outbox_.c.message_id).where(
            outbox_.c.request_id == request_id, outbox_.c.template == template, outbox_.c.status == "sent"
        )
    )
    return str(value) if value else None


def job(database: Database, settings: Settings) -> PeriodicJob:
    """The reminders as a periodic job of the email workers."""

    async def run(now: dt.datetime) -> int:
        return await send_due_reminders(database, settings, now)

    return PeriodicJob("reminders", dt.timedelta(seconds=settings.reminders_every_seconds), run)
