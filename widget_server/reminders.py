"""One reminder to the recruiter or CFA for a request still unanswered after
`REMINDER_DAYS`: never for an answered, bouncing or opted-out one, never twice.
A periodic job of the email workers (`serve`'s or `worker`'s, whichever claims it),
and `widget-server remind` (cron-safe): each reminder is claimed on its request."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from databases import Database

from . import eligibility, outbox, reply_tokens, tables
from .contact_requests import OPEN, StoredRequest, compose_pro_email
from .jobs import PeriodicJob
from .kinds import KINDS, PRO_EMAILS
from .resources import write_transaction
from .settings import Settings
from .targets import Target

log = logging.getLogger("widget_server.reminders")
PAGE_SIZE = 500


async def send_due_reminders(database: Database, settings: Settings, now: dt.datetime | None = None) -> int:
    """Queues the reminders that are due; returns how many.

    Due: delivered, unanswered, never reminded, older than REMINDER_DAYS. Whether
    the recruiter or CFA may still be written to is eligibility's answer (closed
    or expired offer, opt-out, bounce), asked for a page of requests at once."""
    now = now or dt.datetime.now(dt.UTC)
    sent = 0
    after: tuple[dt.datetime, str] | None = None
    # Page by page through every due request: ineligible ones stay due (an
    # opt-out may be undone) and must not hide the others behind them.
    while page := await _due_page(database, settings, now, after):
        after = (page[-1]["created_at"], page[-1]["id"])
        targets = {Target(r["target_kind"], r["target_ref"]) for r in page}
        verdicts = {
            v.target: v
            for v in await eligibility.check_many(
                database, targets, max_offer_applications=settings.offer_max_applications, today=now.date()
            )
        }
        for row in page:
            verdict = verdicts[Target(row["target_kind"], row["target_ref"])]
            # The reminder goes to whom the first email went: not when the
            # directory now names another contact. A test request holds a stand-in
            # address (sandbox.py): its reminder goes to the test mailbox anyway.
            if (
                verdict.eligible
                and verdict.record
                and (row["test"] or verdict.record["contact_email"] == row["contact_email"])
            ):
                sent += await _remind(database, settings, row, verdict.target, verdict.record, now)
    return sent


async def _due_page(
    database: Database, settings: Settings, now: dt.datetime, after: tuple[dt.datetime, str] | None
) -> list[dict[str, Any]]:
    requests, outbox_ = tables.contact_requests, tables.outbox
    query = (
        sa.select(requests, outbox_.c.message_id.label("first_message_id"))
        .select_from(
            # The first email to the recruiter or CFA, which the reminder is threaded under.
            requests.join(
                outbox_,
                sa.and_(
                    outbox_.c.request_id == requests.c.id,
                    outbox_.c.template.in_(PRO_EMAILS),
                    outbox_.c.status == "sent",
                ),
            )
        )
        .where(
            requests.c.status.in_(OPEN),
            requests.c.answered_at.is_(None),
            requests.c.reminded_at.is_(None),
            requests.c.anonymised_at.is_(None),
            requests.c.created_at <= now - dt.timedelta(days=settings.reminder_days),
        )
        .order_by(requests.c.created_at, requests.c.id)
        .limit(PAGE_SIZE)
    )
    if after is not None:
        query = query.where(
            sa.or_(
                requests.c.created_at > after[0],
                sa.and_(requests.c.created_at == after[0], requests.c.id > after[1]),
            )
        )
    return [dict(r._mapping) for r in await database.fetch_all(query)]


async def _remind(
    database: Database,
    settings: Settings,
    row: dict[str, Any],
    target: Target,
    record: Mapping[str, Any],
    now: dt.datetime,
) -> int:
    kind = KINDS[row["kind"]]
    stored = StoredRequest(row, kind, target, target.spec.describe(record, target.ref))
    tokens = reply_tokens.issue_set(
        row["id"],
        row["contact_email"],
        kind.actions_for(target.kind),
        ttl=dt.timedelta(days=kind.token_days),
        public_url=settings.public_url,
        now=now,
    )
    # Threaded under the first email.
    message = compose_pro_email(settings, stored, tokens, reminder_of=row["first_message_id"], now=now)
    requests = tables.contact_requests
    async with write_transaction(database):
        # Claimed atomically: two instances running this never remind twice, and a
        # request withdrawn or bounced since the page was read is not reminded.
        claimed = await database.fetch_val(
            requests.update()
            .where(
                requests.c.id == row["id"],
                requests.c.status.in_(OPEN),
                requests.c.reminded_at.is_(None),
                requests.c.answered_at.is_(None),
            )
            .values(reminded_at=now)
            .returning(requests.c.id)
        )
        if claimed is None:
            return 0
        await reply_tokens.store(database, tokens.rows)
        await outbox.enqueue(
            database, message, template="reminder", request_id=row["id"], attach_cv=kind.needs_cv, now=now
        )
    return 1


def job(database: Database, settings: Settings) -> PeriodicJob:
    """The reminders as a periodic job of the email workers."""

    async def run(now: dt.datetime) -> int:
        return await send_due_reminders(database, settings, now)

    return PeriodicJob("reminders", dt.timedelta(seconds=settings.reminders_every_seconds), run)
