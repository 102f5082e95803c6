"""The outbox worker's overlap of one email's record with the next email's send,
and its SMTP connection kept between batches (#11): what a dead or failing worker
may leave behind stays what it was when each outcome was recorded before the next
send. Against a real SMTP server (aiosmtpd on 127.0.0.1), on the test database."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from databases import Database

from tests.smtp_server import SMTPServer, running
from tests.support import on_database as run
from tests.test_outbox import T0, Clock, message, queue, row, settings_for, worker
from widget_server import delivery, kinds, mailer, outbox, tables, withdrawals


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
