"""The outbox: emails are stored in the same transaction as the request they belong
to, and workers deliver them.

A worker claims due messages with one UPDATE (on PostgreSQL its subquery takes row
locks with SKIP LOCKED), so two workers never hold the same message. A claim is a
lease: the message of a worker that died returns to the queue when the lease runs
out. Delivery is therefore at least once — a worker that dies after the server took
a message but before recording it makes it go out again after the lease — and the
Message-ID, fixed at queue time, lets mail systems spot such a duplicate.

A row holds the message bytes and its envelope (`envelope_sender`, `recipient`),
both fixed when it is queued; the worker sends them as they are and never reads
an address back from the stored headers. A CV is not stored twice: it is added
to the bytes when sent (`emails.with_attachment`), without parsing them.

What a refusal means is decided once, here: a refused recipient is a bounce (the
`on_recipient_refused` hook marks the contact), a refused message only fails that
message, and an unavailable server leaves every message as it was — same attempts,
same due time — so the queue drains at the first poll after the server is back.
Failed messages keep their `failure_kind` for `stats` and the metrics.

A job of the outbox is an email or a partner webhook (`kind`, see `KINDS`): one
claim loop leases due jobs of every kind the worker has a courier for, and each
kind's courier delivers them (`EmailCourier` here, `webhooks.WebhookCourier`);
the outcomes — sent, retried with backoff, failed with a `failure_kind` — are
recorded the same way for both.

The worker loop also runs the periodic jobs it is given (the reminders), each
claimed by one worker at a time through `jobs.claim`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import sqlalchemy as sa
from databases import Database

from . import jobs, tables
from .emails import Outgoing, envelope_sender, with_attachment
from .mailer import (
    DeliveryError,
    MessageRefused,
    PermanentFailure,
    RecipientRefused,
    ServerUnavailable,
    TemporaryFailure,
    Transport,
    redact,
)
from .migrations import dialect_of
from .resources import write_transaction
from .settings import Settings

log = logging.getLogger("widget_server.outbox")

BATCH_SIZE = 20
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 3600.0

Clock = Callable[[], dt.datetime]
BounceHook = Callable[[Mapping[str, Any], str], Awaitable[None]]
SentHook = Callable[[Mapping[str, Any]], Awaitable[None]]
# Delivers one job, or raises a `DeliveryError` saying what went wrong.
Send = Callable[[Mapping[str, Any]], Awaitable[None]]

# `outbox.kind`.
EMAIL, WEBHOOK = "email", "webhook"
KINDS = (EMAIL, WEBHOOK)

# `outbox.failure_kind` of a failed email.
RECIPIENT_REFUSED = RecipientRefused.kind
MESSAGE_REFUSED = MessageRefused.kind
TOO_MANY_ATTEMPTS = "too_many_attempts"
FAILURE_KINDS = (RECIPIENT_REFUSED, MESSAGE_REFUSED, TOO_MANY_ATTEMPTS)
# The status of a message that will never be sent: its request was withdrawn.
CANCELLED = "cancelled"


class Courier(Protocol):
    """Delivers the outbox jobs of one `kind`."""

    kind: str
    max_attempts: int

    def session(self) -> AbstractAsyncContextManager[Send]:
        """A way to send a batch of jobs (one SMTP connection, one HTTP client)."""
        ...

    def describe(self, row: Mapping[str, Any]) -> str:
        """The job, for logs (never a full address)."""
        ...


_outbox = tables.outbox


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def enqueue(
    database: Database,
    outgoing: Outgoing,
    *,
    template: str,
    request_id: str | None,
    attach_cv: bool = False,
    now: dt.datetime | None = None,
) -> int:
    """Queue `outgoing` (its Message-ID already set) for delivery; returns the outbox
    id. Call it inside the transaction that stores what the message is about: a
    message refused here (`emails.EmailRefused`: a header that would not stay one
    header) rolls it all back."""
    row = email_row(outgoing, template=template, request_id=request_id, attach_cv=attach_cv, now=now)
    requests = tables.contact_requests
    # Every email about a test key's request stays in the test mailbox
    # (sandbox.py): decided here, once, from the request itself.
    row["test_mailbox"] = sa.func.coalesce(
        sa.select(requests.c.test).where(requests.c.id == request_id).scalar_subquery(), sa.false()
    )
    query = _outbox.insert().values(**row).returning(_outbox.c.id)
    return int(await database.fetch_val(query))


def email_row(
    outgoing: Outgoing,
    *,
    template: str,
    request_id: str | None,
    attach_cv: bool = False,
    test_mailbox: bool = False,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The outbox row of an email, due now (`enqueue`; the submission pipeline
    inserts its two at once). Raises `emails.EmailRefused` for a message that may
    not go out, ValueError for one composed wrong."""
    message_id = outgoing.message_id
    if not message_id:
        raise ValueError("set the Message-ID before queueing: it must not change on retries")
    if attach_cv and not outgoing.attachment_slot:
        raise ValueError("compose the message with attachment_slot=True to attach the CV")
    raw = outgoing.as_bytes()
    now = now or _utcnow()
    return {
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "kind": EMAIL,
        "request_id": request_id,
        "test_mailbox": test_mailbox,
        "template": template,
        # The envelope, fixed now (addresses hold no comma: `Outgoing.as_bytes`).
        "envelope_sender": outgoing.sender,
        "recipient": ", ".join(outgoing.recipients),
        "message_id": message_id,
        "raw": raw,
        "attach_cv": attach_cv,
    }


async def enqueue_webhook(
    database: Database,
    *,
    webhook_id: str,
    event: str,
    body: bytes,
    api_key_id: int,
    partner: str,
    request_id: str | None,
    now: dt.datetime,
) -> int:
    """Queue a webhook: `body` and `webhook_id` are what every attempt sends; the
    endpoint and secret are the key's at send time (`webhooks`)."""
    return await _insert(
        database,
        now,
        kind=WEBHOOK,
        request_id=request_id,
        template=event,
        recipient=partner,
        api_key_id=api_key_id,
        message_id=webhook_id,
        raw=body,
        attach_cv=False,
    )


async def _insert(database: Database, now: dt.datetime, **job: Any) -> int:
    """Store a job of either kind, due now."""
    query = (
        _outbox.insert()
        .values(status="pending", attempts=0, next_attempt_at=now, created_at=now, **job)
        .returning(_outbox.c.id)
    )
    return int(await database.fetch_val(query))


async def cancel_pending(database: Database, request_id: str) -> int:
    """Cancel the emails of a request that have not left (its candidate withdrew
    it); returns how many. Its partner's webhooks still go. One UPDATE, so a
    worker either claimed an email before (it is `sending`, and may go out) or
    never will. Call it inside the transaction that records why."""
    cancelled = await database.fetch_all(
        _outbox.update()
        .where(_outbox.c.request_id == request_id, _outbox.c.kind == EMAIL, _outbox.c.status == "pending")
        .values(status=CANCELLED, lease_owner=None, lease_until=None)
        .returning(_outbox.c.id)
    )
    return len(cancelled)


async def failures_by_kind(database: Database) -> dict[str, int]:
    """Failed emails by `failure_kind` (every kind present, zero included);
    those failed before kinds were recorded count as `unclassified`."""
    kind = sa.func.coalesce(_outbox.c.failure_kind, "unclassified")
    rows = await database.fetch_all(
        sa.select(kind.label("kind"), sa.func.count().label("count"))
        .where(_outbox.c.status == "failed", _outbox.c.kind == EMAIL)
        .group_by(kind)
    )
    counts = dict.fromkeys(FAILURE_KINDS, 0)
    counts.update({str(r._mapping["kind"]): int(r._mapping["count"]) for r in rows})
    return counts


def backoff_seconds(attempts: int, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base·2^(n-1))],
    at least one second so a message never spins."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0))
    return max(1.0, rng.uniform(0, ceiling))


class EmailCourier:
    """The outbox courier of emails: the bytes and envelope queued go out as they
    are (same Message-ID, recipients never read from headers), the CV added."""

    kind = EMAIL

    def __init__(self, database: Database, transport: Transport, settings: Settings) -> None:
        self.database = database
        self.transport = transport
        self.max_attempts = settings.outbox_max_attempts
        # For rows queued before the envelope sender was stored with them.
        self._default_sender = envelope_sender(settings)

    def describe(self, row: Mapping[str, Any]) -> str:
        return f"message {row['message_id']} ({row['template']}) to {_domains(row)}"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Send]:
        async with self.transport.session() as sender:

            async def send(row: Mapping[str, Any]) -> None:
                if row["test_mailbox"]:
                    # A test request's email (fixed at queue time): it arrives in the
                    # test mailbox, the outbox row itself, and never reaches a transport.
                    return
                data = bytes(row["raw"])
                if row["attach_cv"]:
                    data = await self._with_cv(row, data)
                await sender.send(
                    row.get("envelope_sender") or self._default_sender,
                    str(row["recipient"]).split(", "),
                    data,
                )

            yield send

    async def _with_cv(self, row: Mapping[str, Any], data: bytes) -> bytes:
        cv_files = tables.cv_files
        cv = await self.database.fetch_one(
            sa.select(cv_files).where(cv_files.c.request_id == row["request_id"])
        )
        if cv is None or cv._mapping["deleted_at"] is not None or cv._mapping["data"] is None:
            log.warning("message %s: the CV is gone, sending without it", row["message_id"])
            return data
        try:
            return with_attachment(
                data,
                str(cv._mapping["filename"]),
                str(cv._mapping["content_type"]),
                bytes(cv._mapping["data"]),
            )
        except ValueError:
            log.warning("message %s: no room for the CV, sending without it", row["message_id"])
            return data


class Worker:
    """Delivers due outbox jobs, a batch at a time: emails through `transport`,
    the other kinds through `couriers` (the service's worker: `delivery.create_worker`)."""

    def __init__(
        self,
        database: Database,
        transport: Transport,
        settings: Settings,
        *,
        couriers: Sequence[Courier] = (),
        on_recipient_refused: BounceHook | None = None,
        on_sent: SentHook | None = None,
        periodic_jobs: Sequence[jobs.PeriodicJob] = (),
        clock: Clock | None = None,
        worker_id: str | None = None,
        batch_size: int = BATCH_SIZE,
        rng: random.Random | None = None,
    ) -> None:
        self.database = database
        self.transport = transport
        # Only jobs of these kinds are claimed: a worker never takes a job it cannot deliver.
        self.couriers: dict[str, Courier] = {
            c.kind: c for c in (EmailCourier(database, transport, settings), *couriers)
        }
        self.on_recipient_refused = on_recipient_refused
        self.on_sent = on_sent
        self.periodic_jobs = tuple(periodic_jobs)
        self._jobs_due: dict[str, dt.datetime] = {}
        # Set while the SMTP server cannot be used: the failure that says so.
        self.server_unavailable: ServerUnavailable | None = None
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.batch_size = batch_size
        self._clock = clock or _utcnow
        self._rng = rng or random.Random()
        self._lease = dt.timedelta(seconds=settings.outbox_lease_seconds)
        self._poll_seconds = settings.outbox_poll_seconds
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- running ------------------------------------------------------------

    def wake(self) -> None:
        """Look for due messages now rather than at the next poll (e.g. right after
        a request was stored). Safe to call from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed() or _running_loop() is loop:
            self._wakeup.set()
        else:
            loop.call_soon_threadsafe(self._wakeup.set)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set: batch after batch while there is work, then
        wait `OUTBOX_POLL_SECONDS` or until `wake()`."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()  # bound to this loop; the first batch runs at once anyway
        log.info("email worker %s started (%s)", self.worker_id, type(self.transport).__name__)
        while not stop.is_set():
            # Cleared before the batch, so a wake() during the batch is not lost.
            self._wakeup.clear()
            await self.run_due_jobs()
            try:
                handled = await self.run_once()
            except Exception:
                log.exception("email worker %s: batch failed", self.worker_id)
                handled = 0
            # While the server is unavailable, try again at the next poll, not at once.
            if handled and self.server_unavailable is None:
                continue
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wakeup.wait())]
            _, pending = await asyncio.wait(
                waits, timeout=self._poll_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            for waiting in pending:
                waiting.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        log.info("email worker %s stopped", self.worker_id)

    def start(self) -> None:
        """Run `run_forever` as a background task of the current event loop."""
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.run_forever(self._stop), name="outbox-worker")

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Let the current message finish (up to `grace_seconds`), then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        try:
            await asyncio.wait_for(task, grace_seconds)
        except TimeoutError:
            log.warning("email worker %s cancelled while sending", self.worker_id)

    # --- periodic jobs --------------------------------------------------------

    async def run_due_jobs(self) -> int:
        """Run the periodic jobs that are due and that this worker claims first;
        returns how many ran. A failing job is logged and runs again when next due."""
        ran = 0
        for job in self.periodic_jobs:
            now = self._clock()
            # Not before it is due (as last read): no write to the database at every poll.
            if now < self._jobs_due.get(job.name, now):
                continue
            try:
                async with self.database.connection():
                    claimed = await jobs.claim(self.database, job, self.worker_id, now, lease=self._lease)
                    try:
                        done = await job.run(now) if claimed else 0
                    finally:
                        if claimed:
                            await jobs.release(self.database, job, self.worker_id)
                        self._jobs_due[job.name] = await jobs.due_at(self.database, job) or now
                if not claimed:
                    continue
            except Exception:
                log.exception("email worker %s: job %s failed", self.worker_id, job.name)
                continue
            ran += 1
            if done:
                log.info("job %s: %d done", job.name, done)
        return ran

    # --- one batch ----------------------------------------------------------

    async def claim(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Lease up to `limit` due jobs to this worker: pending ones whose time
        has come, and those whose previous worker's lease ran out."""
        now = self._clock()
        due = (
            sa.select(_outbox.c.id)
            .where(
                _outbox.c.kind.in_(list(self.couriers)),
                sa.or_(
                    sa.and_(_outbox.c.status == "pending", _outbox.c.next_attempt_at <= now),
                    sa.and_(_outbox.c.status == "sending", _outbox.c.lease_until < now),
                ),
            )
            .order_by(_outbox.c.next_attempt_at, _outbox.c.id)
            .limit(limit or self.batch_size)
        )
        if dialect_of(self.database) == "postgresql":
            due = due.with_for_update(skip_locked=True)
        query = (
            _outbox.update()
            .where(_outbox.c.id.in_(due))
            .values(status="sending", lease_owner=self.worker_id, lease_until=now + self._lease)
            .returning(*_outbox.c)
        )
        rows = [dict(row._mapping) for row in await self.database.fetch_all(query)]
        rows.sort(key=lambda row: (row["next_attempt_at"], row["id"]))
        return rows

    async def run_once(self) -> int:
        """Claim a batch of due jobs and try each once; returns how many were tried."""
        # One connection for the whole batch (SQLite would otherwise open one per query).
        async with self.database.connection():
            rows = await self.claim()
            if not rows:
                return 0
            return await self._deliver_batch(rows)

    async def _deliver_batch(self, rows: Sequence[dict[str, Any]]) -> int:
        """Each kind's jobs through its courier's session, one kind after the other."""
        # Stop well before the lease ends, so no other worker takes a job while
        # this one may still be sending it; the rest goes back to the queue.
        deadline = self._clock() + self._lease / 2
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_kind.setdefault(row["kind"], []).append(row)
        untried = list(rows)
        tried = 0
        try:
            for kind, group in by_kind.items():
                tried += await self._deliver_group(self.couriers[kind], group, untried, deadline)
        except asyncio.CancelledError:
            # The job in flight keeps its lease (it may have been sent); the others go back.
            await self._release(untried)
            raise
        await self._release(untried)  # past the deadline
        return tried

    async def _deliver_group(
        self,
        courier: Courier,
        rows: Sequence[dict[str, Any]],
        untried: list[dict[str, Any]],
        deadline: dt.datetime,
    ) -> int:
        tried = 0
        async with courier.session() as send:
            for index, row in enumerate(rows):
                if self._clock() >= deadline:
                    break
                untried.remove(row)
                try:
                    await self._deliver(courier, send, row)
                except ServerUnavailable as exc:
                    await self._wait_for_server(rows[index:], exc)
                    for waiting in rows[index + 1 :]:
                        untried.remove(waiting)
                    return tried
                tried += 1
                if courier.kind == EMAIL:
                    self._server_back()
        return tried

    async def _deliver(self, courier: Courier, send: Send, row: dict[str, Any]) -> None:
        try:
            await send(row)
        except ServerUnavailable:
            raise  # not this message's fault: the batch waits for the server
        except TemporaryFailure as exc:
            await self._retry(courier, row, exc)
        except RecipientRefused as exc:
            await self._bounced(courier, row, exc)
        except PermanentFailure as exc:
            await self._refused(courier, row, exc)
        except Exception as exc:
            log.exception("%s: unexpected error", courier.describe(row))
            await self._retry(courier, row, TemporaryFailure(f"{type(exc).__name__}: {exc}"))
        else:
            await self._sent(courier, row)

    # --- outcomes -------------------------------------------------------------
    # Each update only applies while this worker still holds the lease.

    async def _update(self, row: Mapping[str, Any], **values: Any) -> bool:
        query = (
            _outbox.update()
            .where(
                _outbox.c.id == row["id"],
                _outbox.c.lease_owner == self.worker_id,
                _outbox.c.status == "sending",
            )
            .values(lease_owner=None, lease_until=None, **values)
            .returning(_outbox.c.id)
        )
        updated = await self.database.fetch_val(query) is not None
        if not updated:
            log.warning("%s: lease lost before the outcome was recorded", row["message_id"])
        return updated

    async def _sent(self, courier: Courier, row: Mapping[str, Any]) -> None:
        # The job and what it changes (a request turning delivered, and its
        # partner's event) are recorded together.
        try:
            async with write_transaction(self.database):
                if await self._update(row, status="sent", sent_at=self._clock()) and self.on_sent is not None:
                    await self.on_sent(row)
        except Exception:
            log.exception("%s: the sent hook failed, recorded as sent without it", courier.describe(row))
            await self._update(row, status="sent", sent_at=self._clock())
        log.info("%s: sent", courier.describe(row))

    async def _retry(self, courier: Courier, row: Mapping[str, Any], failure: TemporaryFailure) -> None:
        attempts = row["attempts"] + 1
        if attempts >= courier.max_attempts:
            await self._update(
                row,
                status="failed",
                failure_kind=TOO_MANY_ATTEMPTS,
                attempts=attempts,
                last_error=_text(failure),
            )
            log.error(
                "%s: given up after %d attempts: %s",
                courier.describe(row),
                attempts,
                redact(str(failure)),
            )
            return
        delay = backoff_seconds(attempts, self._rng)
        await self._update(
            row,
            status="pending",
            attempts=attempts,
            last_error=_text(failure),
            next_attempt_at=self._clock() + dt.timedelta(seconds=delay),
        )
        log.warning(
            "%s: attempt %d failed, retry in %.0f s: %s",
            courier.describe(row),
            attempts,
            delay,
            redact(str(failure)),
        )

    async def _bounced(self, courier: Courier, row: Mapping[str, Any], failure: RecipientRefused) -> None:
        error = _text(failure)
        failed = await self._update(
            row,
            status="failed",
            failure_kind=RECIPIENT_REFUSED,
            attempts=row["attempts"] + 1,
            last_error=error,
        )
        if not failed:
            return
        log.warning("%s: recipient refused (bounce): %s", courier.describe(row), redact(error))
        if self.on_recipient_refused is None:
            return
        try:
            await self.on_recipient_refused({**row, "status": "failed", "last_error": error}, error)
        except Exception:
            log.exception("message %s: the bounce hook failed", row["message_id"])

    async def _refused(self, courier: Courier, row: Mapping[str, Any], failure: PermanentFailure) -> None:
        # An email's address may be fine: the contact stays eligible, but someone should look.
        error = _text(failure)
        failed = await self._update(
            row,
            status="failed",
            failure_kind=MESSAGE_REFUSED if courier.kind == EMAIL else failure.kind,
            attempts=row["attempts"] + 1,
            last_error=error,
        )
        if failed:
            log.error(
                "%s: %s: %s",
                courier.describe(row),
                "message refused, not a bounce (the contact stays eligible)"
                if courier.kind == EMAIL
                else f"refused for good ({failure.kind})",
                redact(error),
            )

    async def _wait_for_server(self, rows: Sequence[Mapping[str, Any]], failure: ServerUnavailable) -> None:
        """Put `rows` back in the queue as they were (attempts, due time): they go as
        soon as the server answers again, at the next poll."""
        ids = [row["id"] for row in rows]
        await self.database.execute(
            _outbox.update()
            .where(
                _outbox.c.id.in_(ids), _outbox.c.lease_owner == self.worker_id, _outbox.c.status == "sending"
            )
            .values(status="pending", lease_owner=None, lease_until=None, last_error=_text(failure))
        )
        if self.server_unavailable is None:
            log.error(
                "email worker %s: SMTP server unavailable, messages wait for it (trying every %g s): %s",
                self.worker_id,
                self._poll_seconds,
                redact(str(failure)),
            )
        self.server_unavailable = failure

    def _server_back(self) -> None:
        if self.server_unavailable is not None:
            self.server_unavailable = None
            log.warning("email worker %s: SMTP server available again", self.worker_id)

    async def _release(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        ids = [row["id"] for row in rows]
        await self.database.execute(
            _outbox.update()
            .where(
                _outbox.c.id.in_(ids), _outbox.c.lease_owner == self.worker_id, _outbox.c.status == "sending"
            )
            .values(status="pending", lease_owner=None, lease_until=None)
        )


def _text(failure: DeliveryError) -> str:
    return str(failure)[:1000]


def _domains(row: Mapping[str, Any]) -> str:
    return ", ".join("@" + address.rpartition("@")[2] for address in str(row["recipient"]).split(", "))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
