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
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any, Protocol, cast

import sqlalchemy as sa
from databases import Database

from . import jobs, tables
from .database import fetch_tuples
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
Ready = Callable[[], Awaitable[None]]


class SendWhen(Protocol):
    """An email courier's `Send`: with `ready`, no recipient of the message reaches
    the server before `ready()` has returned (`mailer.Transport.send_when`)."""

    def __call__(self, row: Mapping[str, Any], ready: Ready | None = None, /) -> Awaitable[None]: ...


class _NotRecorded(Exception):
    """The previous job's outcome could not be recorded: this one must not go."""


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
    async def session(self) -> AsyncIterator[SendWhen]:
        async with self.transport.session() as sender:

            async def send(row: Mapping[str, Any], ready: Ready | None = None, /) -> None:
                if row["test_mailbox"]:
                    # A test request's email (fixed at queue time): it arrives in the
                    # test mailbox, the outbox row itself, and never reaches a transport.
                    return
                data = bytes(row["raw"])
                if row["attach_cv"]:
                    data = await self._with_cv(row, data)
                envelope = (
                    row.get("envelope_sender") or self._default_sender,
                    str(row["recipient"]).split(", "),
                )
                if ready is None:
                    await sender.send(*envelope, data)
                else:
                    await sender.send_when(ready, *envelope, data)

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
        on_sent_applies: Callable[[Mapping[str, Any]], bool] | None = None,
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
        # False for a job `on_sent` would do nothing for: recorded without a transaction.
        self.on_sent_applies = on_sent_applies
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
        # The email session (one SMTP connection) kept between batches: `run_once(keep_open=True)`.
        self._kept = AsyncExitStack()
        self._kept_send: Send | None = None

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
        try:
            await self._run(stop)
        finally:
            await self.close_sessions()
        log.info("email worker %s stopped", self.worker_id)

    async def _run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Cleared before the batch, so a wake() during the batch is not lost.
            self._wakeup.clear()
            await self.run_due_jobs()
            try:
                # The SMTP connection is kept while batches follow each other;
                # run_once closes it when it finds nothing to do or fails.
                handled = await self.run_once(keep_open=True)
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
        limit = limit or self.batch_size
        locking = dialect_of(self.database) == "postgresql"

        def first(name: str, condition: sa.ColumnElement[bool]) -> Any:
            # The first `limit` due jobs of one status, read in the order of the
            # `outbox_due (status, next_attempt_at)` index, which ends the read
            # after them whatever the queue's depth (an OR of both statuses, or
            # `id` in this ORDER BY, made every claim read and sort every due
            # job). Jobs due at the same time come in the index's order: by id
            # on SQLite, about as inserted on PostgreSQL.
            query = (
                sa.select(_outbox.c.id, _outbox.c.next_attempt_at)
                .where(condition, _outbox.c.kind.in_(list(self.couriers)))
                .order_by(_outbox.c.next_attempt_at)
                .limit(limit)
            )
            return (query.with_for_update(skip_locked=True) if locking else query).cte(name)

        pending = first(
            "due_pending", sa.and_(_outbox.c.status == "pending", _outbox.c.next_attempt_at <= now)
        )
        expired = first("due_expired", sa.and_(_outbox.c.status == "sending", _outbox.c.lease_until < now))
        both = sa.union_all(sa.select(pending), sa.select(expired)).subquery("due")
        due = sa.select(both.c.id).order_by(both.c.next_attempt_at, both.c.id).limit(limit)
        query = (
            _outbox.update()
            .where(_outbox.c.id.in_(due))
            .values(status="sending", lease_owner=self.worker_id, lease_until=now + self._lease)
            .returning(*_outbox.c)
        )
        rows = [dict(row._mapping) for row in await self.database.fetch_all(query)]
        rows.sort(key=lambda row: (row["next_attempt_at"], row["id"]))
        return rows

    async def run_once(self, *, keep_open: bool = False) -> int:
        """Claim a batch of due jobs and try each once; returns how many were tried,
        their outcomes recorded. With `keep_open`, the email session (one SMTP
        connection) stays open for the next batch, until a batch finds nothing to
        do, fails or finds the server unavailable, or `close_sessions()`."""
        try:
            # One connection for the whole batch (SQLite would otherwise open one per query).
            async with self.database.connection():
                rows = await self.claim()
                tried = await self._deliver_batch(rows) if rows else 0
        except BaseException:
            await self.close_sessions()
            raise
        if not (keep_open and tried and self.server_unavailable is None):
            await self.close_sessions()
        return tried

    async def close_sessions(self) -> None:
        """Ends the email session kept between batches (QUIT), if any."""
        kept, self._kept, self._kept_send = self._kept, AsyncExitStack(), None
        await kept.aclose()

    async def _session(self, courier: Courier, batch: AsyncExitStack) -> Send:
        """The courier's session for this batch: the email one is kept (see run_once)."""
        if courier.kind != EMAIL:
            return await batch.enter_async_context(courier.session())
        if self._kept_send is None:
            self._kept_send = await self._kept.enter_async_context(courier.session())
        return self._kept_send

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
            async with AsyncExitStack() as batch:
                for kind, group in by_kind.items():
                    courier = self.couriers[kind]
                    send = await self._session(courier, batch)
                    tried += await self._deliver_group(courier, send, group, untried, deadline)
        except asyncio.CancelledError:
            # The job in flight keeps its lease (it may have been sent); the others go back.
            await self._release(untried)
            raise
        await self._release(untried)  # past the deadline
        return tried

    async def _deliver_group(
        self,
        courier: Courier,
        send: Send,
        rows: Sequence[dict[str, Any]],
        untried: list[dict[str, Any]],
        deadline: dt.datetime,
    ) -> int:
        """Each job tried in turn. An email's outcome is recorded while the next
        email starts (SMTP MAIL), and committed before that email's first
        recipient reaches the server (`SendWhen`): a worker that dies at any point
        leaves at most the one message the server took last unrecorded, as when
        each outcome was recorded before the next send."""
        tried = 0
        recorder = _Recorder(self.database)
        pipelined = isinstance(courier, EmailCourier)
        try:
            for index, row in enumerate(rows):
                if self._clock() >= deadline:
                    break
                untried.remove(row)
                if not pipelined:
                    await recorder.recorded()
                try:
                    record = await self._attempt(courier, send, row, recorder.recorded if pipelined else None)
                except ServerUnavailable as exc:
                    await recorder.recorded()
                    await self._wait_for_server(rows[index:], exc)
                    for waiting in rows[index + 1 :]:
                        untried.remove(waiting)
                    return tried
                # Outcomes are written one at a time, in order.
                await recorder.recorded()
                recorder.record(record)
                tried += 1
                if courier.kind == EMAIL:
                    self._server_back()
        finally:
            # Every outcome written before the batch ends (its failure, if any, raised).
            await recorder.close()
        return tried

    async def _attempt(
        self, courier: Courier, send: Send, row: dict[str, Any], ready: Ready | None
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        """Tries `row` once; returns how to record the outcome."""
        try:
            if ready is None:
                await send(row)
            else:
                await cast(SendWhen, send)(row, ready)
        except (ServerUnavailable, _NotRecorded):
            raise  # not this message's fault: the batch waits for the server, or stops
        except TemporaryFailure as exc:
            return partial(self._retry, courier, row, exc)
        except RecipientRefused as exc:
            return partial(self._bounced, courier, row, exc)
        except PermanentFailure as exc:
            return partial(self._refused, courier, row, exc)
        except Exception as exc:
            log.exception("%s: unexpected error", courier.describe(row))
            return partial(self._retry, courier, row, TemporaryFailure(f"{type(exc).__name__}: {exc}"))
        return partial(self._sent, courier, row)

    # --- outcomes -------------------------------------------------------------
    # Each update only applies while this worker still holds the lease.

    async def _update(self, row: Mapping[str, Any], **values: Any) -> bool:
        statement = _outcome_statement(self.database, tuple(values))
        if statement is not None:
            # The SQL written once per dialect and set of columns: no statement
            # to build, compile and bind per job (the asyncpg one prepared once).
            sql, processors = statement
            args = [process(values[name]) if process else values[name] for name, process in processors]
            args += [row["id"], self.worker_id]
            rows = await fetch_tuples(self.database, {self.database.url.dialect: sql}, args)
        else:
            rows = None
        if rows is None:  # a backend without `fetch_tuples`
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
            rows = await self.database.fetch_all(query)
        updated = bool(rows)
        if not updated:
            log.warning("%s: lease lost before the outcome was recorded", row["message_id"])
        return updated

    async def _sent(self, courier: Courier, row: Mapping[str, Any]) -> None:
        hook = self.on_sent
        if hook is None or (self.on_sent_applies is not None and not self.on_sent_applies(row)):
            # Nothing else changes: one statement, no transaction.
            await self._update(row, status="sent", sent_at=self._clock())
            log.info("%s: sent", courier.describe(row))
            return
        # The job and what it changes (a request turning delivered, and its
        # partner's event) are recorded together.
        try:
            async with write_transaction(self.database):
                if await self._update(row, status="sent", sent_at=self._clock()):
                    await hook(row)
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


_OUTCOME_STATEMENTS: dict[tuple[str, tuple[str, ...]], tuple[str, list[tuple[str, Any]]] | None] = {}


def _outcome_statement(
    database: Database, columns: tuple[str, ...]
) -> tuple[str, list[tuple[str, Any]]] | None:
    """`UPDATE outbox SET <columns>, no lease WHERE id AND lease_owner AND status
    'sending' RETURNING id` in the driver's own SQL, and each column's bind
    processor (the one SQLAlchemy would apply); None for another dialect."""
    dialect = database._backend._dialect
    key = (type(dialect).__qualname__, columns)
    if key not in _OUTCOME_STATEMENTS:
        if dialect.name == "sqlite":
            marks = ["?"] * (len(columns) + 2)
        elif dialect.name == "postgresql":
            marks = [f"${n}" for n in range(1, len(columns) + 3)]
        else:
            _OUTCOME_STATEMENTS[key] = None
            return None
        sets = "".join(f", {name} = {mark}" for name, mark in zip(columns, marks, strict=False))
        sql = (
            f"UPDATE outbox SET lease_owner = NULL, lease_until = NULL{sets} "
            f"WHERE id = {marks[-2]} AND lease_owner = {marks[-1]} AND status = 'sending' RETURNING id"
        )
        processors = [(name, _outbox.c[name].type.bind_processor(dialect)) for name in columns]
        _OUTCOME_STATEMENTS[key] = (sql, processors)
    return _OUTCOME_STATEMENTS[key]


class _Recorder:
    """Writes a batch's outcomes one at a time, in order, on a task (and a
    database connection) of its own, while the worker goes on sending."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._queue: asyncio.Queue[tuple[Callable[[], Awaitable[None]], asyncio.Future[None]] | None] = (
            asyncio.Queue()
        )
        self._task: asyncio.Task[None] | None = None
        self._last: asyncio.Future[None] | None = None

    def record(self, write: Callable[[], Awaitable[None]]) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-recorder")
        self._last = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((write, self._last))

    async def recorded(self) -> None:
        """Returns once every outcome given is written; raises `_NotRecorded` if
        the last one could not be."""
        if self._last is None:
            return
        try:
            # Shielded: a worker cancelled while waiting still records what it sent.
            await asyncio.shield(self._last)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _NotRecorded(str(exc)) from exc

    async def close(self) -> None:
        """Waits for the outcomes given, then ends the task; raises the last
        one's failure, if any."""
        if self._task is None:
            return
        self._queue.put_nowait(None)
        await asyncio.shield(self._task)
        if self._last is not None:
            self._last.result()

    async def _run(self) -> None:
        async with self._database.connection():
            while (job := await self._queue.get()) is not None:
                write, done = job
                try:
                    await write()
                except Exception as exc:
                    done.set_exception(exc)
                else:
                    done.set_result(None)


def _text(failure: DeliveryError) -> str:
    return str(failure)[:1000]


def _domains(row: Mapping[str, Any]) -> str:
    return ", ".join("@" + address.rpartition("@")[2] for address in str(row["recipient"]).split(", "))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
