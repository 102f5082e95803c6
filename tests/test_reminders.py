"""One reminder after REMINDER_DAYS, with a controllable clock; and the bounce webhook."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from tests import seed
from tests.smtp_server import SMTPServer
from tests.test_appointments import appointment
from tests.test_delivery import deliver, smtp_client
from tests.test_replies import form_fields, links, path, submit_application
from widget_server import tables
from widget_server.reminders import send_due_reminders


def remind(client: TestClient, now: dt.datetime) -> int:
    state = client.app.state  # type: ignore[attr-defined]
    return int(seed.run(client, send_due_reminders, state.database, state.settings, now))


def created_at(client: TestClient) -> dt.datetime:
    [row] = seed.fetch_all(client, sa.select(tables.contact_requests.c.created_at))
    return row["created_at"]  # type: ignore[no-any-return]


def test_one_reminder_after_five_days_never_twice(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        submit_application(client, smtp_server)
        start = created_at(client)
        assert remind(client, start + dt.timedelta(days=5) - dt.timedelta(minutes=1)) == 0
        assert remind(client, start + dt.timedelta(days=5)) == 1
        assert remind(client, start + dt.timedelta(days=9)) == 0
        deliver(client, now=start + dt.timedelta(days=9))
        reminder = smtp_server.received[-1]
        assert reminder.rcpt_tos == ["recrutement@boulangerie.example"]
        assert reminder.message["Subject"].startswith("Rappel : ")
        assert reminder.message["List-Unsubscribe"]
        # Its buttons are fresh tokens that work.
        url = next(u for u in links(reminder) if "/reply/" in u)
        page = client.get(path(url))
        assert page.status_code == 200 and 'name="answer"' in page.text
    assert len(smtp_server.received) == 3


def test_no_reminder_for_an_answered_request(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        url = next(u for u in links(pro) if "/reply/" in u)
        client.post(path(url), data=form_fields(client.get(path(url)).text))
        assert remind(client, created_at(client) + dt.timedelta(days=6)) == 0


@pytest.mark.parametrize("column", ["bounced_at", "formation_opt_out_at"])
def test_no_reminder_for_a_bouncing_or_opted_out_cfa(
    tmp_path: Path, smtp_server: SMTPServer, column: str
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.formation(client)
        key = seed.api_key(client)
        client.post("/api/v1/appointment-requests", json=appointment(),
                    headers={"Authorization": f"Bearer {key}"})
        seed.insert(client, tables.contacts, email="rdv@cfa-commerce.example",
                    **{column: seed.NOW})
        assert remind(client, created_at(client) + dt.timedelta(days=6)) == 0


def test_remind_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    from widget_server import cli

    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SECRET_KEY", "k")
    assert cli.main(["remind"]) == 0
    assert "Reminders queued: 0" in capsys.readouterr().out


# --- the bounce webhook ------------------------------------------------------------


def report(client: TestClient, key: str | None, body: Any) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post("/api/v1/bounces", json=body, headers=headers)


def test_bounce_webhook_needs_an_operator_key(client: TestClient) -> None:
    body = {"email": "rh@example.org", "reason": "550 user unknown"}
    assert report(client, None, body).status_code == 401
    assert report(client, seed.api_key(client), body).status_code == 403
    assert seed.fetch_all(client, tables.contacts.select()) == []


def test_bounce_webhook_tells_each_waiting_candidate_once(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        submit_application(client, smtp_server)
        operator = seed.api_key(client, "postmaster", "operator")
        body = {"bounces": [{"email": "Recrutement@Boulangerie.example", "reason": "5.1.1"}]}
        first = report(client, operator, body)
        assert first.status_code == 202 and first.json() == {"recorded": 1, "candidates_told": 1}
        assert report(client, operator, body).json()["candidates_told"] == 0
        reason = client.get("/api/v1/eligibility", params={"target": f"offer:{seed.OFFER_ID}"})
        assert reason.json()["results"][0]["reason"] == "bounced"
        deliver(client)
    told = [r for r in smtp_server.received if r.message["X-LBA-Template"] == "delivery_failed"]
    assert len(told) == 1 and told[0].rcpt_tos == ["lea.moreau@example.org"]


@pytest.mark.parametrize("body", [{"email": "nope"}, {"bounces": [{"email": ""}]}, {"bounces": []},
                                  [1, 2]])
def test_bounce_webhook_rejects_bad_input(client: TestClient, body: Any) -> None:
    response = report(client, seed.api_key(client, "postmaster", "operator"), body)
    assert response.status_code in (400, 422)
    assert response.headers["content-type"] == "application/problem+json"
