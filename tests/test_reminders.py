"""One reminder after REMINDER_DAYS, with a controllable clock: never for an answered,
bouncing or opted-out request, never twice."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from tests import seed
from tests.smtp_server import SMTPServer
from tests.support import (
    application,
    appointment,
    body,
    deliver,
    eventually,
    form_fields,
    links,
    make_settings,
    path,
    smtp_client,
    submit_application,
)
from widget_server import bounces, delivery, reminders, tables, withdrawals
from widget_server.app import create_app
from widget_server.reminders import send_due_reminders
from widget_server.resources import create_database

DAY = dt.timedelta(days=1)


def remind(client: TestClient, now: dt.datetime) -> int:
    state = seed.state(client)
    return int(seed.run(client, send_due_reminders, state.database, state.settings, now))


def created_at(client: TestClient) -> dt.datetime:
    [row] = seed.fetch_all(client, sa.select(tables.contact_requests.c.created_at))
    created: dt.datetime = row["created_at"]
    return created


def ask_the_cfa(client: TestClient) -> None:
    seed.formation(client)
    response = client.post(
        "/api/v1/appointment-requests",
        json=appointment(),
        headers={"Authorization": f"Bearer {seed.api_key(client)}"},
    )
    assert response.status_code == 202
    assert deliver(client) == 2


def test_one_reminder_after_five_days_never_twice(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        start = created_at(client)
        assert remind(client, start + 5 * DAY - dt.timedelta(minutes=1)) == 0
        assert remind(client, start + 5 * DAY) == 1
        assert remind(client, start + 9 * DAY) == 0
        [row] = seed.fetch_all(client, tables.contact_requests.select())
        assert row["reminded_at"] == start + 5 * DAY and row["status"] == "delivered"
        deliver(client, now=start + 9 * DAY)
        reminder = smtp_server.received[-1]
        assert reminder.rcpt_tos == ["recrutement@boulangerie.example"]
        assert reminder.message["Subject"].startswith("Rappel : ")
        assert reminder.message["In-Reply-To"] == pro.message["Message-ID"]
        assert reminder.message["Reply-To"].addresses[0].addr_spec == "lea.moreau@example.org"
        assert reminder.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        [cv] = list(reminder.message.iter_attachments())
        assert cv.get_content() == seed.PDF
        # Fresh buttons: new tokens, the same actions, and they work.
        old, new = set(links(pro)), set(links(reminder))
        assert not {u for u in new if "/reply/" in u or "/optout/" in u} & old
        url = next(u for u in new if "/reply/" in u)
        page = client.get(path(url))
        assert page.status_code == 200 and 'name="answer"' in page.text
        unsubscribe = str(reminder.message["List-Unsubscribe"]).strip("<>")
        assert unsubscribe in new and unsubscribe not in old
    assert len(smtp_server.received) == 3


def test_no_reminder_before_the_first_email_arrived(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        response = client.post(
            "/api/v1/applications",
            json=application(),
            headers={"Authorization": f"Bearer {seed.api_key(client)}"},
        )
        assert response.status_code == 202
        start = created_at(client)
        # The mail server was down for a week: the first email is still queued.
        assert remind(client, start + 7 * DAY) == 0
        assert deliver(client, now=start + 7 * DAY) == 2
        assert remind(client, start + 7 * DAY) == 1


def test_a_cfa_is_reminded_too(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        ask_the_cfa(client)
        assert remind(client, created_at(client) + 6 * DAY) == 1
        deliver(client, now=created_at(client) + 6 * DAY)
    reminder = smtp_server.received[-1]
    assert reminder.rcpt_tos == ["rdv@cfa-commerce.example"]
    assert reminder.message["Subject"].startswith("Rappel : Demande de rendez-vous")
    text = body(reminder.message, "plain")
    assert "J'ai répondu par un autre canal" in text and "Le candidat est injoignable" in text
    assert list(reminder.message.iter_attachments()) == []


def test_no_reminder_for_an_answered_request(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        url = next(u for u in links(pro) if "/reply/" in u)
        client.post(path(url), data=form_fields(client.get(path(url)).text))
        assert remind(client, created_at(client) + 6 * DAY) == 0


def test_no_reminder_for_a_request_withdrawn_while_the_job_ran(
    tmp_path: Path, smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The candidate withdraws between the job's read of the due requests and its
    claim of one: the claim sees the withdrawal."""
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        submit_application(client, smtp_server)
        state = seed.state(client)
        read_due_page = reminders._due_page

        async def withdrawn_meanwhile(*args: Any) -> list[dict[str, Any]]:
            page = await read_due_page(*args)
            for row in page:
                assert (await withdrawals.withdraw(state.database, state.settings, row["id"])).withdrawn
            return page

        monkeypatch.setattr(reminders, "_due_page", withdrawn_meanwhile)
        assert remind(client, created_at(client) + 5 * DAY) == 0
        [row] = seed.fetch_all(client, tables.contact_requests.select())
        assert row["status"] == "withdrawn" and row["reminded_at"] is None
        templates = seed.fetch_all(client, sa.select(tables.outbox.c.template))
        assert "reminder" not in {t["template"] for t in templates}


@pytest.mark.parametrize("column", ["bounced_at", "formation_opt_out_at"])
def test_no_reminder_for_a_bouncing_or_opted_out_cfa(
    tmp_path: Path, smtp_server: SMTPServer, column: str
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        ask_the_cfa(client)
        seed.insert(client, tables.contacts, email="rdv@cfa-commerce.example", **{column: seed.NOW})
        assert remind(client, created_at(client) + 6 * DAY) == 0


def test_no_reminder_after_a_reported_bounce(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        ask_the_cfa(client)
        state = seed.state(client)
        seed.run(
            client,
            bounces.record_bounce,
            state.database,
            state.settings,
            "rdv@cfa-commerce.example",
            "550 5.1.1",
        )
        assert remind(client, created_at(client) + 6 * DAY) == 0


@pytest.mark.parametrize("target", ["company", "offer"])
def test_no_reminder_once_the_recruiter_opted_out(
    tmp_path: Path, smtp_server: SMTPServer, target: str
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        if target == "company":
            seed.company(client)
            pro = submit_application(client, smtp_server, offer_id=None, siret=seed.SIRET)
        else:
            seed.offer(client)
            pro = submit_application(client, smtp_server)  # opting out closes the offer
        client.post(
            path(str(pro.message["List-Unsubscribe"]).strip("<>")),
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert remind(client, created_at(client) + 6 * DAY) == 0
        [row] = seed.fetch_all(client, tables.contact_requests.select())
        assert row["reminded_at"] is None


def test_the_remind_command_is_safe_to_run_from_cron(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from widget_server import cli

    settings = make_settings(tmp_path, REMINDER_DAYS="1")
    with TestClient(create_app(settings)) as client:
        seed.offer(client)
        response = client.post(
            "/api/v1/applications",
            json=application(),
            headers={"Authorization": f"Bearer {seed.api_key(client)}"},
        )
        assert response.status_code == 202
        deliver(client)  # to the development mailbox: no SMTP_URL here
        requests = tables.contact_requests
        seed.run(
            client,
            seed.state(client).database.execute,
            requests.update().values(created_at=dt.datetime.now(dt.UTC) - 2 * DAY),
        )
    for name in ("DATABASE_URL", "VAR_DIR", "SECRET_KEY", "REMINDER_DAYS"):
        monkeypatch.setenv(name, str(getattr(settings, name.lower())))
    assert cli.main(["remind"]) == 0
    assert "Reminders queued: 1" in capsys.readouterr().out
    assert cli.main(["remind"]) == 0
    assert "Reminders queued: 0" in capsys.readouterr().out


def test_no_reminder_for_an_offer_that_expired(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client, expires_on=(dt.datetime.now(dt.UTC) + 3 * DAY).date())
        submit_application(client, smtp_server)
        start = created_at(client)
        # Expired on day 3, due on day 5: no reminder for an offer no longer open.
        assert remind(client, start + 6 * DAY) == 0
        [row] = seed.fetch_all(client, tables.contact_requests.select())
        assert row["reminded_at"] is None


def test_ineligible_requests_never_hide_the_due_ones_behind_them(
    tmp_path: Path, smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from widget_server import reminders

    monkeypatch.setattr(reminders, "PAGE_SIZE", 1)
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client, "OLD", contact_email="parti@ailleurs.example")
        seed.offer(client)
        key = seed.api_key(client)
        for offer_id in ("OLD", seed.OFFER_ID):
            response = client.post(
                "/api/v1/applications",
                json=application(offer_id=offer_id),
                headers={"Authorization": f"Bearer {key}"},
            )
            assert response.status_code == 202
        deliver(client)
        seed.run(
            client,
            seed.state(client).database.execute,
            sa.text("UPDATE offers SET status = 'closed' WHERE offer_id = 'OLD'"),
        )
        latest = max(r["created_at"] for r in seed.fetch_all(client, tables.contact_requests.select()))
        assert remind(client, latest + 6 * DAY) == 1
        reminded = {
            r["target_ref"]
            for r in seed.fetch_all(client, tables.contact_requests.select())
            if r["reminded_at"]
        }
        assert reminded == {seed.OFFER_ID}


def test_reminders_are_a_job_of_the_email_worker_claimed_once_across_workers(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        submit_application(client, smtp_server)
        later = created_at(client) + 6 * DAY
        state = seed.state(client)

        async def three_workers() -> list[int]:
            # Separate connection pools, as three processes would have.
            databases = [state.database]
            for _ in range(2):
                other = create_database(state.settings)
                await other.connect()
                databases.append(other)
            try:
                workers = [
                    delivery.create_worker(db, state.settings, clock=lambda: later) for db in databases
                ]
                return list(await asyncio.gather(*(w.run_due_jobs() for w in workers)))
            finally:
                for other in databases[1:]:
                    await other.disconnect()

        assert sorted(seed.run(client, three_workers)) == [0, 0, 1]  # one worker ran the job
        # Not due again within its period, whichever worker asks.
        same_time = delivery.create_worker(state.database, state.settings, clock=lambda: later)
        assert seed.run(client, same_time.run_due_jobs) == 0
        # Due again a period later, but the reminder itself is claimed on its request.
        again = delivery.create_worker(
            state.database, state.settings, clock=lambda: later + dt.timedelta(hours=1)
        )
        assert seed.run(client, again.run_due_jobs) == 1
        reminders = seed.fetch_all(
            client, sa.select(tables.outbox.c.id).where(tables.outbox.c.template == "reminder")
        )
        assert len(reminders) == 1


def test_a_running_worker_sends_the_reminder_without_serve(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:  # OUTBOX_WORKER=false: serve sends nothing
        seed.offer(client)
        submit_application(client, smtp_server)
        later = created_at(client) + 6 * DAY
        state = seed.state(client)
        worker = delivery.create_worker(state.database, state.settings, clock=lambda: later)

        async def run_until_reminded() -> None:
            worker.start()
            try:
                await eventually(
                    lambda: any(str(r.message["Subject"]).startswith("Rappel") for r in smtp_server.received),
                    "the reminder",
                )
            finally:
                await worker.stop()

        seed.run(client, run_until_reminded)
    [reminder] = [r for r in smtp_server.received if str(r.message["Subject"]).startswith("Rappel")]
    assert reminder.rcpt_tos == ["recrutement@boulangerie.example"]
