"""The service's outbox worker, assembled: emails through the transport the
settings name (SMTP or the dev mailbox), partner webhooks, a request turning
`delivered` (and its partner told) when its first email to the recruiter or CFA
is accepted (or, if its candidate withdrew it meanwhile, a notice following it),
bounces handled, and reminders as its periodic job."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from databases import Database

from . import bounces, outbox, partner_events, reminders, tables, withdrawals
from .contact_requests import DELIVERED, RECEIVED
from .kinds import PRO_EMAILS
from .mailer import transport_from_settings
from .settings import Settings
from .webhooks import WebhookCourier


def create_worker(database: Database, settings: Settings, **options: Any) -> outbox.Worker:
    """`options` go to `outbox.Worker` (batch size, clock…)."""
    return outbox.Worker(
        database,
        transport_from_settings(settings),
        settings,
        couriers=[WebhookCourier(database, settings)],
        on_recipient_refused=bounces.on_recipient_refused(database, settings),
        on_sent=on_sent(database, settings),
        on_sent_applies=sent_hook_applies,
        periodic_jobs=[reminders.job(database, settings)],
        **options,
    )


def _delivers(row: Mapping[str, Any]) -> bool:
    """A request's first email to the recruiter or CFA: the request turns `delivered`."""
    return row["kind"] == outbox.EMAIL and row["template"] in PRO_EMAILS and bool(row["request_id"])


def sent_hook_applies(row: Mapping[str, Any]) -> bool:
    """Whether `on_sent`'s hook has anything to do for this job: when it has not,
    the worker records the job as sent with one statement, no transaction."""
    return withdrawals.concerns(row) or _delivers(row)


def on_sent(database: Database, settings: Settings) -> Callable[[Mapping[str, Any]], Awaitable[None]]:
    """The outbox worker's hook for a message the mail server accepted (called in
    the transaction that records it as sent)."""
    withdrawn_meanwhile = withdrawals.on_sent(database, settings)

    async def hook(row: Mapping[str, Any]) -> None:
        await withdrawn_meanwhile(row)
        if not _delivers(row):
            return
        requests = tables.contact_requests
        now = dt.datetime.now(dt.UTC)
        # Only from `received`: an answer or a bounce recorded meanwhile stays.
        delivered = await database.fetch_val(
            requests.update()
            .where(requests.c.id == row["request_id"], requests.c.status == RECEIVED)
            .values(status=DELIVERED, delivered_at=now, updated_at=now)
            .returning(requests.c.id)
        )
        if delivered is not None:
            await partner_events.emit(database, row["request_id"], partner_events.DELIVERED, now=now)

    return hook
