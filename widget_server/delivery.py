"""The service's email worker, assembled: the outbox worker with the transport the
settings name (SMTP or the dev mailbox), a request turning `delivered` when its
first email to the recruiter or CFA is accepted (or, if its candidate withdrew
it meanwhile, a notice following it), bounces handled, and reminders as its
periodic job."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from databases import Database

from . import bounces, outbox, reminders, tables, withdrawals
from .contact_requests import DELIVERED, RECEIVED
from .kinds import PRO_EMAILS
from .mailer import transport_from_settings
from .settings import Settings


def create_worker(database: Database, settings: Settings, **options: Any) -> outbox.Worker:
    """`options` go to `outbox.Worker` (batch size, clock…)."""
    return outbox.Worker(
        database,
        transport_from_settings(settings),
        settings,
        on_recipient_refused=bounces.on_recipient_refused(database, settings),
        on_sent=on_sent(database, settings),
        periodic_jobs=[reminders.job(database, settings)],
        **options,
    )


def on_sent(database: Database, settings: Settings) -> Callable[[Mapping[str, Any]], Awaitable[None]]:
    """The outbox worker's hook for a message the mail server accepted."""
    withdrawn_meanwhile = withdrawals.on_sent(database, settings)

    async def hook(row: Mapping[str, Any]) -> None:
        await withdrawn_meanwhile(row)
        if row["template"] not in PRO_EMAILS or not row["request_id"]:
            return
        requests = tables.contact_requests
        # Only from `received`: an answer or a bounce recorded meanwhile stays.
        await database.execute(
            requests.update()
            .where(requests.c.id == row["request_id"], requests.c.status == RECEIVED)
            .values(status=DELIVERED, updated_at=dt.datetime.now(dt.UTC))
        )

    return hook
