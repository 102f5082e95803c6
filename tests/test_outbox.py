"""The outbox worker against a real SMTP server (aiosmtpd on 127.0.0.1): delivery,
retries with backoff, refusals, outages, dead workers, concurrent workers, CVs."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from databases import Database

from tests import seed
from tests.smtp_server import Accounts, SMTPServer, free_port, running
from tests.support import eventually, make_settings, wait_until, within
from tests.support import on_database as run
from widget_server import delivery, emails, jobs, kinds, mailer, outbox, tables, withdrawals
from widget_server.mailer import PermanentFailure, SMTPConfig, TemporaryFailure, Transport, parse_smtp_url
from widget_server.resources import create_database
from widget_server.settings import Settings

T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
PDF = seed.PDF


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def move_to(self, when: dt.datetime) -> None:
        self.now = when

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def settings_for(tmp_path: Path, server_url: str, **overrides: str) -> Settings:
    return make_settings(
        tmp_path,
        SMTP_URL=server_url,
        OUTBOX_WORKER="false",
        MAIL_FROM="La bonne alternance <noreply@lba.example>",
        **overrides,
    )


def message(
    to: str = "recrutement@boulangerie.example", subject: str = "Nouvelle candidature"
) -> EmailMessage:
    msg = EmailMessage(policy=emails.SMTP_POLICY)
    msg["From"] = "La bonne alternance <noreply@lba.example>"
    msg["To"] = f"Boulangerie Martin <{to}>"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="lba.example")
    msg.set_content("Bonjour,\nLéa Moreau vous écrit au sujet de l'offre « Vendeur·se ».\n")
    msg.add_alternative("<p>Léa Moreau vous écrit.</p>", subtype="html")
    return msg


def outgoing(msg: EmailMessage, *, attachment_slot: bool = False) -> emails.Outgoing:
    """`msg` with its envelope: from the service, to the address of its `To`."""
    if attachment_slot:
        msg.make_mixed()
    return emails.Outgoing(
        msg, "noreply@lba.example", (msg["To"].addresses[0].addr_spec,), attachment_slot=attachment_slot
    )


async def queue(database: Database, *messages: EmailMessage, **options: Any) -> list[int]:
    ids = []
    async with database.transaction():
        for msg in messages:
            ids.append(
                await outbox.enqueue(
                    database,
                    outgoing(msg, attachment_slot=options.get("attach_cv", False)),
                    template=options.get("template", "candidature_pro"),
                    request_id=options.get("request_id", "req-1"),
                    attach_cv=options.get("attach_cv", False),
                    now=T0,
                )
            )
    return ids


async def row(database: Database, outbox_id: int) -> dict[str, Any]:
    found = await database.fetch_one(sa.select(tables.outbox).where(tables.outbox.c.id == outbox_id))
    assert found is not None
    return dict(found._mapping)


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def worker(
    database: Database, settings: Settings, clock: Callable[[], dt.datetime], **options: Any
) -> outbox.Worker:
    return outbox.Worker(
        database,
        options.pop("transport", None) or mailer.transport_from_settings(settings),
        settings,
        clock=clock,
        **options,
    )


def test_a_message_is_delivered_once_with_headers_and_body_intact(tmp_path: Path) -> None:
    msg = message(subject="Léa Moreau candidate à « Vendeur·se en boulangerie »")
    with running() as server:
        settings = settings_for(tmp_path, server.url)

        async def scenario(database: Database) -> None:
            [outbox_id] = await queue(database, msg)
            clock = Clock()
            assert await worker(database, settings, clock).run_once() == 1
            assert await worker(database, settings, clock).run_once() == 0
            stored = await row(database, outbox_id)
            assert (stored["status"], stored["attempts"], stored["sent_at"]) == ("sent", 0, T0)
            assert stored["lease_owner"] is None

        run(settings, scenario)
    [received] = server.received
    assert received.mail_from == "noreply@lba.example"
    assert received.rcpt_tos == ["recrutement@boulangerie.example"]
    assert received.message["Message-ID"] == msg["Message-ID"]
    assert received.message["Subject"] == "Léa Moreau candidate à « Vendeur·se en boulangerie »"
    assert text_of(received.message) == text_of(msg)
    html_part = received.message.get_body(("html",))
    assert html_part is not None
    assert "Léa Moreau vous écrit." in html_part.get_content()


def test_queued_messages_are_7_bit_and_reach_a_server_without_8bitmime(tmp_path: Path) -> None:
    msg = message(subject="Léa candidate")
    assert outgoing(msg).as_bytes().isascii()
    with running(eight_bit=False) as server:
        settings = settings_for(tmp_path, server.url)

        async def scenario(database: Database) -> None:
            await queue(database, msg)
            assert await worker(database, settings, Clock()).run_once() == 1

        run(settings, scenario)
    [received] = server.received
    assert received.data.isascii()
    assert text_of(received.message) == text_of(msg)
    assert received.message["Message-ID"] == msg["Message-ID"]


def test_8_bit_bytes_are_refused_for_good_by_a_server_without_8bitmime() -> None:
    data = "Subject: é\r\n\r\nLéa\r\n".encode()
    with running(eight_bit=False) as server:
        transport = mailer.SMTPTransport(SMTPConfig(server.host, server.port, "none"))
        with pytest.raises(PermanentFailure, match="8BITMIME"):
            asyncio.run(transport.send("noreply@lba.example", ["rh@boulangerie.example"], data))
    assert server.received == []


def test_temporary_refusals_are_retried_after_backoff_and_delivered_once(tmp_path: Path) -> None:
    msg = message()
    with running() as server:
        server.answer("RCPT", "451 4.3.0 Mailbox busy, try again later", times=2)
        settings = settings_for(tmp_path, server.url)

        async def scenario(database: Database) -> None:
            [outbox_id] = await queue(database, msg)
            clock = Clock()
            work = worker(database, settings, clock)
            for attempt, ceiling in ((1, 30), (2, 60)):
                assert await work.run_once() == 1
                stored = await row(database, outbox_id)
                assert (stored["status"], stored["attempts"]) == ("pending", attempt)
                assert stored["last_error"].startswith("451 ")
                wait = (stored["next_attempt_at"] - clock.now).total_seconds()
                assert 1 <= wait <= ceiling
                clock.advance(wait - 0.5)
                assert await work.run_once() == 0  # not due yet
                clock.move_to(stored["next_attempt_at"])
            assert await work.run_once() == 1
            stored = await row(database, outbox_id)
            assert (stored["status"], stored["attempts"]) == ("sent", 2)

        run(settings, scenario)
    assert server.message_ids() == [msg["Message-ID"]]


@pytest.mark.parametrize(
    ("command", "reply", "kind"),
    [
        ("RCPT", "550 5.1.1 <recrutement@boulangerie.example>: Recipient address rejected", "recipient"),
        ("RCPT", "550 No such user here", "recipient"),
        ("RCPT", "551 User not local", "recipient"),
        ("RCPT", "553 Mailbox name not allowed", "recipient"),
        ("DATA", "550 5.1.1 User unknown (checked after the data)", "recipient"),
        ("DATA", "552 5.3.4 Message too big for system", "message"),
        ("DATA", "554 5.7.1 Message refused: content", "message"),
        ("DATA", "554 Transaction failed", "message"),
        ("DATA", "550 Message rejected", "message"),
        ("DATA", "553 5.1.8 Sender address domain does not exist", "message"),
        ("RCPT", "550 5.7.1 Relaying denied", "message"),
        ("RCPT", "552 Too many recipients", "message"),
    ],
)
def test_only_a_refused_recipient_is_a_bounce_other_refusals_fail_one_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, command: str, reply: str, kind: str
) -> None:
    calls: list[tuple[Mapping[str, Any], str]] = []

    async def hook(failed: Mapping[str, Any], error: str) -> None:
        calls.append((failed, error))

    msg = message()
    with running() as server:
        server.answer(command, reply)
        settings = settings_for(tmp_path, server.url)

        async def scenario(database: Database) -> dict[str, int]:
            [outbox_id] = await queue(database, msg, template="candidature_pro", request_id="req-9")
            work = worker(database, settings, Clock(), on_recipient_refused=hook)
            assert await work.run_once() == 1
            assert await work.run_once() == 0
            stored = await row(database, outbox_id)
            assert (stored["status"], stored["attempts"]) == ("failed", 1)
            assert stored["last_error"] == reply
            assert stored["failure_kind"] == f"{kind}_refused"
            return await outbox.failures_by_kind(database)

        with caplog.at_level(logging.WARNING, logger="widget_server.outbox"):
            failures = run(settings, scenario)
    assert server.received == []
    assert failures == {
        "recipient_refused": int(kind == "recipient"),
        "message_refused": int(kind == "message"),
        "too_many_attempts": 0,
    }
    # The log line names the message and gives the server's answer (addresses redacted).
    [line] = [r for r in caplog.records if msg["Message-ID"] in r.getMessage()]
    assert mailer.redact(reply) in line.getMessage()
    if kind == "message":
        assert calls == []  # the contact stays eligible, nobody is told
        assert line.levelno == logging.ERROR and "not a bounce" in line.getMessage()
        return
    assert line.levelno == logging.WARNING and "bounce" in line.getMessage()
    [(failed, error)] = calls
    assert error == reply
    assert failed["message_id"] == msg["Message-ID"]
    assert (failed["template"], failed["request_id"], failed["recipient"], failed["status"]) == (
        "candidature_pro",
        "req-9",
        "recrutement@boulangerie.example",
        "failed",
    )


def test_a_failing_hook_is_logged_and_the_worker_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def hook(failed: Mapping[str, Any], error: str) -> None:
        raise RuntimeError("bounce handler broke")

    refused, accepted = message("nobody@nowhere.example"), message()
    with running() as server:
        server.answer("RCPT", "550 5.1.1 No such user")
        settings = settings_for(tmp_path, server.url)

        async def scenario(database: Database) -> None:
            await queue(database, refused, accepted)
            assert await worker(database, settings, Clock(), on_recipient_refused=hook).run_once() == 2

        with caplog.at_level(logging.ERROR, logger="widget_server.outbox"):
            run(settings, scenario)
    assert server.message_ids() == [accepted["Message-ID"]]
    assert any("hook failed" in r.message and r.exc_info for r in caplog.records)


def test_an_outage_leaves_the_messages_as_they_were_and_they_go_at_the_next_poll(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    settings = settings_for(tmp_path, f"smtp://127.0.0.1:{port}", OUTBOX_MAX_ATTEMPTS="2")
    first, second = message(), message("contact@garage-durand.example")
    server = SMTPServer(port)

    async def scenario(database: Database) -> None:
        ids = await queue(database, first, second)
        clock = Clock()
        work = worker(database, settings, clock)
        for _ in range(3):  # more polls than OUTBOX_MAX_ATTEMPTS: an outage uses none up
            assert await work.run_once() == 0
            assert work.server_unavailable is not None
            for outbox_id in ids:
                stored = await row(database, outbox_id)
                # Untouched: no attempt counted, no backoff, no lease kept.
                assert (stored["status"], stored["attempts"]) == ("pending", 0)
                assert (stored["next_attempt_at"], stored["lease_owner"]) == (T0, None)
                assert "connect" in stored["last_error"].lower() or "refused" in stored["last_error"].lower()
            clock.advance(settings.outbox_poll_seconds)
        server.start()
        try:
            # The server is back: the very next poll sends everything.
            assert await work.run_once() == 2
        finally:
            server.stop()
        assert work.server_unavailable is None
        assert [(await row(database, i))["status"] for i in ids] == ["sent", "sent"]

    with caplog.at_level(logging.WARNING, logger="widget_server.outbox"):
        run(settings, scenario)
    assert sorted(server.message_ids()) == sorted([first["Message-ID"], second["Message-ID"]])
    # One alert for the outage, not one per poll or per message; one when it ends.
    assert [r.levelno for r in caplog.records if "SMTP server" in r.getMessage()] == [
        logging.ERROR,
        logging.WARNING,
    ]


def test_a_running_worker_drains_the_queue_when_the_server_restarts_on_its_port(tmp_path: Path) -> None:
    server = SMTPServer().start()
    settings = settings_for(tmp_path, server.url, OUTBOX_POLL_SECONDS="0.05")
    before, during = message(), [message(f"contact{n}@example.org") for n in range(5)]

    async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
        for _ in range(400):  # bounded: 20 s at most
            if await condition():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting until {what}")

    async def statuses(database: Database) -> list[tuple[str, int]]:
        rows = await database.fetch_all(sa.select(tables.outbox.c.status, tables.outbox.c.attempts))
        return [(r._mapping["status"], r._mapping["attempts"]) for r in rows]

    async def scenario(database: Database) -> None:
        nonlocal server
        work = worker(database, settings, _utcnow_clock())
        await queue(database, before)
        work.start()
        try:
            await until(lambda: _true(len(server.received) == 1), "the first message arrives")
            server.stop()
            ids = await queue(database, *during)
            work.wake()
            await until(lambda: _true(work.server_unavailable is not None), "the worker sees the outage")
            # Polls go by (each claims and puts back); the messages keep their attempts and due time.
            for outbox_id in ids:
                stored = await row(database, outbox_id)
                assert stored["status"] in {"pending", "sending"}
                assert (stored["attempts"], stored["next_attempt_at"]) == (0, T0)
            server = SMTPServer(server.port).start()

            async def drained() -> bool:
                return set(await statuses(database)) == {("sent", 0)}

            await until(drained, "the queue drains after the restart")
        finally:
            await work.stop()
            server.stop()

    run(settings, scenario)
    assert sorted(server.message_ids()) == sorted(m["Message-ID"] for m in during)


def _utcnow_clock() -> Callable[[], dt.datetime]:
    return lambda: dt.datetime.now(dt.UTC)


async def _true(value: bool) -> bool:
    return value


def test_a_dead_workers_message_returns_to_the_queue_when_its_lease_ends(tmp_path: Path) -> None:
    msg = message()
    with running() as server:
        settings = settings_for(tmp_path, server.url, OUTBOX_LEASE_SECONDS="120")

        async def scenario(database: Database) -> None:
            [outbox_id] = await queue(database, msg)
            clock = Clock()
            dead = worker(database, settings, clock, worker_id="dead")
            assert [r["id"] for r in await dead.claim()] == [outbox_id]  # ...and then it dies
            other = worker(database, settings, clock, worker_id="other")
            assert await other.run_once() == 0
            clock.advance(119)
            assert await other.run_once() == 0
            clock.advance(2)
            assert await other.run_once() == 1
            stored = await row(database, outbox_id)
            assert (stored["status"], stored["lease_owner"]) == ("sent", None)

        run(settings, scenario)
    assert server.message_ids() == [msg["Message-ID"]]


class BlockingTransport(Transport):
    """Never finishes sending: a worker stuck (or killed) in the middle of a send."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def send(self, sender: str, recipients: Sequence[str], data: bytes) -> None:
        self.entered.set()
        await asyncio.Event().wait()


def test_a_cancelled_worker_keeps_the_message_in_flight_and_releases_the_others(tmp_path: Path) -> None:
    messages = [message(f"contact{n}@example.org") for n in range(3)]
    with running() as server:
        settings = settings_for(tmp_path, server.url, OUTBOX_LEASE_SECONDS="120")

        async def scenario(database: Database) -> None:
            ids = await queue(database, *messages)
            clock = Clock()
            blocking = BlockingTransport()
            stuck = worker(database, settings, clock, transport=blocking, worker_id="stuck")
            task = asyncio.create_task(stuck.run_once())
            await asyncio.wait_for(blocking.entered.wait(), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            in_flight = await row(database, ids[0])
            assert (in_flight["status"], in_flight["lease_owner"]) == ("sending", "stuck")
            other = worker(database, settings, clock)
            assert await other.run_once() == 2
            assert (await row(database, ids[0]))["status"] == "sending"
            clock.advance(121)
            assert await other.run_once() == 1

        run(settings, scenario)
    ids = [m["Message-ID"] for m in messages]
    assert server.message_ids() == [*ids[1:], ids[0]]


def test_two_workers_at_once_never_send_a_message_twice(tmp_path: Path) -> None:
    messages = [message(f"contact{n}@example.org") for n in range(40)]
    with running() as server:
        settings = settings_for(tmp_path, server.url)

        async def scenario(database: Database) -> None:
            await queue(database, *messages)
            # Separate connection pools, as two processes would have.
            second_database = create_database(settings)
            await second_database.connect()
            try:
                clock = Clock()
                workers = [
                    worker(database, settings, clock, batch_size=3),
                    worker(second_database, settings, clock, batch_size=3),
                ]

                async def drain(work: outbox.Worker) -> int:
                    total = 0
                    for _ in range(100):
                        handled = await work.run_once()
                        if not handled:
                            return total
                        total += handled
                    raise AssertionError("the worker never ran out of messages")

                counts = await asyncio.gather(*(drain(w) for w in workers))
            finally:
                await second_database.disconnect()
            assert sum(counts) == 40
            statuses = await database.fetch_all(sa.select(tables.outbox.c.status))
            assert {r._mapping["status"] for r in statuses} == {"sent"}

        run(settings, scenario)
    assert sorted(server.message_ids()) == sorted(m["Message-ID"] for m in messages)


def test_the_cv_is_attached_at_send_time(tmp_path: Path) -> None:
    msg = message()
    with running() as server:
        settings = settings_for(tmp_path, server.url)

        async def scenario(database: Database) -> None:
            await database.execute(
                tables.cv_files.insert().values(
                    request_id="req-1",
                    filename="CV Léa Moreau.pdf",
                    content_type="application/pdf",
                    size=len(PDF),
                    data=PDF,
                )
            )
            [outbox_id] = await queue(database, msg, attach_cv=True, request_id="req-1")
            assert PDF not in (await row(database, outbox_id))["raw"]
            assert await worker(database, settings, Clock()).run_once() == 1

        run(settings, scenario)
    [received] = server.received
    [attachment] = list(received.message.iter_attachments())
    assert attachment.get_filename() == "CV Léa Moreau.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == PDF
    assert text_of(received.message) == text_of(msg)
    assert received.message["Message-ID"] == msg["Message-ID"]


def test_a_deleted_cv_is_left_out_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with running() as server:
        settings = settings_for(tmp_path, server.url)

        async def scenario(database: Database) -> None:
            await database.execute(
                tables.cv_files.insert().values(
                    request_id="req-1",
                    filename="cv.pdf",
                    content_type="application/pdf",
                    size=len(PDF),
                    data=None,
                    deleted_at=T0,
                )
            )
            await queue(database, message(), attach_cv=True, request_id="req-1")
            assert await worker(database, settings, Clock()).run_once() == 1

        with caplog.at_level(logging.WARNING, logger="widget_server.outbox"):
            run(settings, scenario)
    [received] = server.received
    assert list(received.message.iter_attachments()) == []
    assert any("CV is gone" in r.message for r in caplog.records)


def test_a_message_is_given_up_after_max_attempts(tmp_path: Path) -> None:
    calls: list[str] = []

    async def hook(failed: Mapping[str, Any], error: str) -> None:
        calls.append(error)

    with running() as server:
        server.answer("RCPT", "452 4.2.2 Mailbox full", times=10)
        settings = settings_for(tmp_path, server.url, OUTBOX_MAX_ATTEMPTS="3")

        async def scenario(database: Database) -> None:
            [outbox_id] = await queue(database, message())
            clock = Clock()
            work = worker(database, settings, clock, on_recipient_refused=hook)
            for _ in range(3):
                assert await work.run_once() == 1
                clock.advance(outbox.BACKOFF_CAP_SECONDS)
            assert await work.run_once() == 0
            stored = await row(database, outbox_id)
            assert (stored["status"], stored["attempts"]) == ("failed", 3)
            assert stored["last_error"] == "452 4.2.2 Mailbox full"
            assert stored["failure_kind"] == "too_many_attempts"

        run(settings, scenario)
    assert server.received == []
    assert calls == []  # a full mailbox is not a bounce


class WatchedWorker(outbox.Worker):
    """A worker that tells when a batch found nothing to do: from then on it
    waits for `wake()` or its next poll."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle = asyncio.Event()

    async def run_once(self, *, keep_open: bool = False) -> int:
        handled = await super().run_once(keep_open=keep_open)
        if not handled:
            self.idle.set()
        return handled


def test_the_worker_wakes_up_when_told_and_stops_cleanly(tmp_path: Path) -> None:
    first, second = message(), message("contact@garage-durand.example")
    with running() as server:
        settings = settings_for(tmp_path, server.url, OUTBOX_POLL_SECONDS="600")

        async def scenario(database: Database) -> None:
            work = WatchedWorker(database, mailer.transport_from_settings(settings), settings)
            await queue(database, first)
            work.start()
            await eventually(lambda: len(server.received) == 1, "the first message")
            # Asleep now, with its next poll 10 minutes away: only wake() brings it back.
            await within(work.idle.wait(), "the worker to find nothing more to do")
            await queue(database, second)
            work.wake()
            await eventually(lambda: len(server.received) == 2, "the second message")
            await work.stop()

        run(settings, scenario)
    assert server.message_ids() == [first["Message-ID"], second["Message-ID"]]


def test_login_over_a_real_server(tmp_path: Path) -> None:
    accounts = Accounts("robot@lba.example", "s3cr:et@")
    with running(accounts=accounts) as server:
        url = f"smtp://robot%40lba.example:s3cr%3Aet%40@127.0.0.1:{server.port}"
        settings = settings_for(tmp_path, url)
        wrong = settings.replace(smtp_url=url.replace("s3cr", "nope"))

        async def scenario(database: Database) -> None:
            [outbox_id] = await queue(database, message())
            clock = Clock()
            assert await worker(database, wrong, clock).run_once() == 0
            stored = await row(database, outbox_id)
            assert (stored["status"], stored["attempts"], stored["next_attempt_at"]) == ("pending", 0, T0)
            assert "login refused" in stored["last_error"]
            # Once the login is fixed the message goes at once: the failed login cost it nothing.
            assert await worker(database, settings, clock).run_once() == 1
            assert (await row(database, outbox_id))["status"] == "sent"

        run(settings, scenario)
    assert set(accounts.attempts) == {"robot@lba.example"}  # the login was percent-decoded
    [received] = server.received
    assert received.login == "robot@lba.example"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://relay.internal", SMTPConfig("relay.internal", 25, "none")),
        ("smtp://127.0.0.1:2525", SMTPConfig("127.0.0.1", 2525, "none")),
        (
            "smtp+starttls://user%40example.org:p%40ss%3Aw%2Fd@mail.example.org:587",
            SMTPConfig("mail.example.org", 587, "starttls", "user@example.org", "p@ss:w/d"),
        ),
        (
            "smtp+starttls://apikey:secret@smtp.example.net",
            SMTPConfig("smtp.example.net", 587, "starttls", "apikey", "secret"),
        ),
        ("smtps://u:p@mail.example.org", SMTPConfig("mail.example.org", 465, "tls", "u", "p")),
    ],
)
def test_smtp_urls_are_parsed(url: str, expected: SMTPConfig) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize("url", ["http://mail.example.org", "smtp://", "mail.example.org:25"])
def test_bad_smtp_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="SMTP_URL"):
        parse_smtp_url(url)


def test_smtp_transport_uses_the_url_and_hides_the_password(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        SMTP_URL="smtps://robot:hunter2@mail.example.org",
        MAIL_FROM="Service <noreply@lba.example>",
        PUBLIC_URL="https://widget.example",
    )
    transport = mailer.transport_from_settings(settings)
    assert isinstance(transport, mailer.SMTPTransport)
    client = transport.client()
    assert (client.hostname, client.port, client.use_tls) == ("mail.example.org", 465, True)
    assert (transport.config.username, transport.config.password) == ("robot", "hunter2")
    assert transport.local_hostname == "widget.example"
    assert "hunter2" not in repr(transport.config)


def test_queueing_needs_a_message_id(tmp_path: Path) -> None:
    msg = message()
    del msg["Message-ID"]
    settings = settings_for(tmp_path, "smtp://127.0.0.1:1")

    async def scenario(database: Database) -> None:
        with pytest.raises(ValueError, match="Message-ID"):
            await outbox.enqueue(database, outgoing(msg), template="ack", request_id=None)

    run(settings, scenario)


def test_temporary_failure_text_keeps_code_and_redaction_hides_addresses() -> None:
    failure = TemporaryFailure("Mailbox busy for <lea.moreau@example.org>", code=451)
    assert str(failure) == "451 Mailbox busy for <lea.moreau@example.org>"
    assert mailer.redact(str(failure)) == "451 Mailbox busy for <…@example.org>"


def test_the_worker_command_delivers_and_stops_on_sigterm(tmp_path: Path) -> None:
    msg = message()
    with running() as server:
        settings = settings_for(tmp_path, server.url)
        run(settings, lambda database: queue(database, msg))
        environ = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "SMTP_URL": server.url,
            "VAR_DIR": str(settings.var_dir),
            "SECRET_KEY": "test",
            "LOG_LEVEL": "WARNING",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "widget_server.cli", "worker"],
            cwd=tmp_path,
            env=environ,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(
                lambda: server.received or process.poll() is not None, "the worker to deliver", seconds=20
            )
            process.send_signal(signal.SIGTERM)
            _, errors = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0, errors
    assert server.message_ids() == [msg["Message-ID"]]


def test_a_periodic_job_runs_once_per_period_and_is_not_asked_for_at_every_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path, "smtp://127.0.0.1:1")
    runs: list[dt.datetime] = []
    claims: list[str] = []

    async def tick(now: dt.datetime) -> int:
        runs.append(now)
        return 1

    job = jobs.PeriodicJob("tick", dt.timedelta(minutes=5), tick)
    claim = jobs.claim

    async def counted_claim(*args: Any, **kwargs: Any) -> bool:
        claims.append(args[2])
        return await claim(*args, **kwargs)

    monkeypatch.setattr(jobs, "claim", counted_claim)

    async def scenario(database: Database) -> None:
        clock = Clock()
        first = worker(database, settings, clock, periodic_jobs=[job], worker_id="first")
        second = worker(database, settings, clock, periodic_jobs=[job], worker_id="second")
        assert await first.run_due_jobs() == 1
        assert await second.run_due_jobs() == 0  # not due: the first one ran it
        clock.advance(60)
        assert await first.run_due_jobs() == 0
        assert await second.run_due_jobs() == 0
        assert claims == ["first", "second"]  # both knew it was not due yet: no query
        clock.advance(240)
        assert await second.run_due_jobs() == 1
        assert await first.run_due_jobs() == 0

    run(settings, scenario)
    assert runs == [T0, T0 + dt.timedelta(minutes=5)]


# --- #11: the record of one email overlapping the next send, the connection kept ---


def test_each_email_is_recorded_sent_before_the_next_ones_recipient_reaches_the_server(
    tmp_path: Path,
) -> None:
    """A worker killed once the server saw a message's RCPT has recorded every
    message before it: none of them goes out twice (tests/test_scale_out.py kills
    a worker held there)."""
    messages = [message(f"contact{n}@example.org") for n in range(3)]
    with running() as server:
        settings = settings_for(tmp_path, server.url)
        seen_at_rcpt: list[set[str]] = []

        async def statuses_of_received(address: str) -> None:
            # In the server's thread and loop, on a connection of its own: what a
            # worker killed right now would leave in the database.
            received = [str(r.message["Message-ID"]) for r in server.received]
            reader = Database(settings.database_url)
            await reader.connect()
            try:
                rows = await reader.fetch_all(
                    sa.select(tables.outbox.c.status).where(tables.outbox.c.message_id.in_(received))
                )
            finally:
                await reader.disconnect()
            seen_at_rcpt.append({str(r._mapping["status"]) for r in rows})

        server.handler.on_recipient = statuses_of_received

        async def slow_hook(row: Mapping[str, Any]) -> None:
            # Inside the write transaction of a message's record: a worker that let
            # the next RCPT go before the commit would show it here.
            before = len(seen_at_rcpt)
            for _ in range(30):
                if len(seen_at_rcpt) > before:
                    break
                await asyncio.sleep(0.01)

        async def scenario(database: Database) -> None:
            await queue(database, *messages)
            assert await worker(database, settings, Clock(), on_sent=slow_hook).run_once() == 3

        run(settings, scenario)
    assert server.message_ids() == [m["Message-ID"] for m in messages]
    # At each RCPT, every message the server had taken was recorded sent.
    assert seen_at_rcpt == [set(), {"sent"}, {"sent"}]


def test_an_email_does_not_go_when_the_previous_one_could_not_be_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = [message(f"contact{n}@example.org") for n in range(3)]
    with running() as server:
        settings = settings_for(tmp_path, server.url)

        async def scenario(database: Database) -> None:
            ids = await queue(database, *messages)
            work = worker(database, settings, Clock())
            update = work._update

            async def failing(row: Mapping[str, Any], **values: Any) -> bool:
                if row["id"] == ids[0] and values.get("status") == "sent":
                    raise RuntimeError("the database went away")
                return await update(row, **values)

            monkeypatch.setattr(work, "_update", failing)
            with pytest.raises(RuntimeError, match="the database went away"):
                await work.run_once()
            # The second message's transaction was dropped before its recipient.
            assert [(await row(database, i))["status"] for i in ids] == ["sending"] * 3

        run(settings, scenario)
    assert server.message_ids() == [messages[0]["Message-ID"]]


def test_batches_that_follow_each_other_share_one_connection(tmp_path: Path) -> None:
    messages = [message(f"contact{n}@example.org") for n in range(5)]
    with running() as server:
        settings = settings_for(tmp_path, server.url)

        async def scenario(database: Database) -> None:
            await queue(database, *messages)
            work = worker(database, settings, Clock(), batch_size=2)
            assert [await work.run_once(keep_open=True) for _ in range(3)] == [2, 2, 1]
            assert server.handler.quits == 0
            # Nothing left: the connection is closed (as `run_forever` does when idle).
            assert await work.run_once(keep_open=True) == 0
            assert server.handler.quits == 1

        run(settings, scenario)
    assert len(server.message_ids()) == 5
    assert len(set(server.handler.peers)) == 1


def test_without_keep_open_each_batch_has_its_connection(tmp_path: Path) -> None:
    messages = [message(f"contact{n}@example.org") for n in range(4)]
    with running() as server:
        settings = settings_for(tmp_path, server.url)

        async def scenario(database: Database) -> None:
            await queue(database, *messages)
            work = worker(database, settings, Clock(), batch_size=2)
            assert [await work.run_once(), await work.run_once()] == [2, 2]
            assert server.handler.quits == 2

        run(settings, scenario)
    assert len(set(server.handler.peers)) == 2


def test_a_kept_connection_that_fails_its_noop_is_replaced_without_costing_an_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mailer, "IDLE_CHECK_SECONDS", 0.0)  # every reuse is checked
    messages = [message(f"contact{n}@example.org") for n in range(2)]
    with running() as server:
        settings = settings_for(tmp_path, server.url)
        server.answer("NOOP", "421 4.4.2 Idle too long, closing")

        async def scenario(database: Database) -> None:
            ids = await queue(database, *messages)
            assert await worker(database, settings, Clock()).run_once() == 2
            for outbox_id in ids:
                stored = await row(database, outbox_id)
                assert (stored["status"], stored["attempts"]) == ("sent", 0)

        run(settings, scenario)
    assert server.message_ids() == [m["Message-ID"] for m in messages]
    assert len(set(server.handler.peers)) == 2


def test_a_kept_connection_the_server_closed_between_batches_is_replaced(tmp_path: Path) -> None:
    messages = [message(f"contact{n}@example.org") for n in range(4)]
    server = SMTPServer().start()
    settings = settings_for(tmp_path, server.url)
    restarted: list[SMTPServer] = []
    stopped: list[SMTPServer] = []

    async def scenario(database: Database) -> None:
        ids = await queue(database, *messages)
        work = worker(database, settings, Clock(), batch_size=2)
        assert await work.run_once(keep_open=True) == 2
        server.stop()
        stopped.append(server)
        restarted.append(SMTPServer(server.port).start())
        try:
            assert await work.run_once(keep_open=True) == 2
            await work.close_sessions()
        finally:
            restarted[0].stop()
        for outbox_id in ids:
            stored = await row(database, outbox_id)
            assert (stored["status"], stored["attempts"]) == ("sent", 0)

    try:
        run(settings, scenario)
    finally:
        if not stopped:
            server.stop()
    assert len(server.message_ids()) == 2 and len(restarted[0].message_ids()) == 2


def test_the_sent_hook_is_skipped_only_for_jobs_it_does_nothing_for(tmp_path: Path) -> None:
    """`delivery.sent_hook_applies` lets the worker record a job without a
    transaction: for each job it says no to, the hook must touch nothing."""

    class NoDatabase:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the hook used the database ({name}) for a job it was said not to apply to")

    settings = settings_for(tmp_path, "smtp://127.0.0.1:25")
    hook = delivery.on_sent(NoDatabase(), settings)  # type: ignore[arg-type]
    templates = {
        *kinds.PRO_EMAILS,
        *(k.ack_email for k in kinds.KINDS.values()),
        "reminder",
        withdrawals.NOTICE,
        "delivery_failed",
        "optout_confirmed",
        "answer_interested",
        "partner.delivered",
    }

    async def hook_on(job: Mapping[str, Any]) -> None:
        await hook(job)

    applies = {}
    for kind, template, request_id in itertools.product(outbox.KINDS, templates, [None, "", "req-1"]):
        job = {"kind": kind, "template": template, "request_id": request_id, "message_id": "<m@x>"}
        applies[kind, template, request_id] = delivery.sent_hook_applies(job)
        if not applies[kind, template, request_id]:
            asyncio.run(hook_on(job))
    for template in [*kinds.PRO_EMAILS, "reminder"]:
        assert applies[outbox.EMAIL, template, "req-1"]


def test_a_claim_takes_the_earliest_due_jobs_of_both_statuses_in_due_order(tmp_path: Path) -> None:
    """Pending jobs whose time has come and jobs whose worker's lease ran out, the
    earliest due first, whatever their status; nothing not yet due, nothing
    leased to a live worker."""
    with running() as server:
        settings = settings_for(tmp_path, server.url, OUTBOX_LEASE_SECONDS="60")

        async def scenario(database: Database) -> None:
            ids = await queue(database, *(message(f"contact{n}@example.org") for n in range(8)))
            due = [T0 + dt.timedelta(seconds=s) for s in (50, 10, 40, 20, 30, 60, 5, 1000)]
            for outbox_id, when in zip(ids, due, strict=True):
                await database.execute(
                    tables.outbox.update().where(tables.outbox.c.id == outbox_id).values(next_attempt_at=when)
                )
            # ids[1] (due at +10) and ids[6] (+5): leased by workers, one dead (lease over), one alive.
            for outbox_id, lease_until in (
                (ids[1], T0 + dt.timedelta(seconds=70)),
                (ids[6], T0 + dt.timedelta(seconds=500)),
            ):
                await database.execute(
                    tables.outbox.update()
                    .where(tables.outbox.c.id == outbox_id)
                    .values(status="sending", lease_owner="another", lease_until=lease_until)
                )
            clock = Clock()
            clock.advance(100)
            claimed = await worker(database, settings, clock).claim(limit=4)
            # Due by +100: +10 (lease over), +20, +30, +40, +50, +60; +5 is leased, +1000 not due.
            assert [r["id"] for r in claimed] == [ids[1], ids[3], ids[4], ids[2]]
            assert {r["lease_owner"] for r in claimed} != {"another"}

        run(settings, scenario)
