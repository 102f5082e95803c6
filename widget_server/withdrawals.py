"""A candidate withdraws their request, from their follow-up page (SPEC section 12).

In one transaction: the request turns `withdrawn` (only from an open status,
so a second withdrawal, or one racing an answer, changes nothing); every email
of it that has not left is cancelled; its CV is deleted (less data kept); and,
when an email about it already reached the recruiter or CFA, they get a
one-line notice; its partner gets the `request.withdrawn` event. Its reply
links then say that the request was withdrawn.

The request row stays, with its email identity: quotas keep counting it, so
withdrawing and sending again frees nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from databases import Database

from . import emails, outbox, partner_events, tables
from .contact_requests import OPEN, WITHDRAWN, load
from .kinds import PRO_EMAILS
from .resources import write_transaction
from .settings import Settings

NOTICE = "withdrawn"
# The emails that showed the request to its recruiter or CFA.
_ABOUT_THE_REQUEST = (*PRO_EMAILS, "reminder")


@dataclass(frozen=True)
class Withdrawal:
    withdrawn: bool  # False: already withdrawn, or no longer open (answered, bounced)
    emails_cancelled: int = 0
    notice_queued: bool = False


async def withdraw(
    database: Database, settings: Settings, request_id: str, now: dt.datetime | None = None
) -> Withdrawal:
    now = now or dt.datetime.now(dt.UTC)
    requests = tables.contact_requests
    async with write_transaction(database):
        # This UPDATE locks the request's row: an email recorded as sent meanwhile
        # waits for it (`on_sent`), then sees the withdrawal and the notice queued here.
        withdrawn = await database.fetch_val(
            requests.update()
            .where(requests.c.id == request_id, requests.c.status.in_(OPEN))
            .values(status=WITHDRAWN, withdrawn_at=now, updated_at=now)
            .returning(requests.c.id)
        )
        if withdrawn is None:
            return Withdrawal(False)
        cancelled = await outbox.cancel_pending(database, request_id)
        await database.execute(
            tables.cv_files.update()
            .where(tables.cv_files.c.request_id == request_id, tables.cv_files.c.deleted_at.is_(None))
            .values(data=None, deleted_at=now)
        )
        noticed = await _tell_recipient(database, settings, request_id, now)
        await partner_events.emit(database, request_id, partner_events.WITHDRAWN, now=now)
    return Withdrawal(True, cancelled, noticed)


async def _tell_recipient(database: Database, settings: Settings, request_id: str, now: dt.datetime) -> bool:
    """Queue the one-line notice, once, if an email about the request reached
    its recruiter or CFA; threaded under the first one."""
    box = tables.outbox
    reached = await database.fetch_val(
        sa.select(box.c.message_id)
        .where(box.c.request_id == request_id, box.c.template.in_(_ABOUT_THE_REQUEST), box.c.status == "sent")
        .order_by(box.c.id)
        .limit(1)
    )
    if reached is None:
        return False
    told = await database.fetch_val(
        sa.select(sa.func.count())
        .select_from(box)
        .where(box.c.request_id == request_id, box.c.template == NOTICE)
    )
    stored = None if told else await load(database, request_id)
    if stored is None:
        return False
    row = stored.row
    message = emails.compose(
        settings,
        NOTICE,
        stored.context(settings.public_url),
        # To whom the request went, whoever the directory names now.
        to=emails.address(stored.view["contact_name"] or "", row["contact_email"]),
        in_reply_to=str(reached),
        now=now,
    )
    await outbox.enqueue(database, message, template=NOTICE, request_id=request_id, now=now)
    return True


def concerns(row: Mapping[str, Any]) -> bool:
    """Whether `on_sent`'s hook has anything to do for this outbox job."""
    return row["kind"] == outbox.EMAIL and row["template"] in _ABOUT_THE_REQUEST and bool(row["request_id"])


def on_sent(database: Database, settings: Settings) -> Callable[[Mapping[str, Any]], Awaitable[None]]:
    """For the outbox worker, in the transaction that records an email as sent:
    an email about a request that a worker was already sending when its
    candidate withdrew it got out after all; its recipient gets the notice too."""

    async def hook(row: Mapping[str, Any]) -> None:
        if not concerns(row):
            return
        requests = tables.contact_requests
        # The row lock waits for a withdrawal in progress (its UPDATE holds the
        # row): either it committed, and is seen here, or it comes after this
        # transaction and finds this email sent (SQLite: one writer at a time).
        status = await database.fetch_val(
            sa.select(requests.c.status).where(requests.c.id == row["request_id"]).with_for_update()
        )
        if status == WITHDRAWN:
            await _tell_recipient(database, settings, row["request_id"], dt.datetime.now(dt.UTC))

    return hook
