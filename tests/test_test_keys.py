"""Test keys: requests stored and flagged as tests, every one of their emails kept
in the key's test mailbox (never SMTP, never a real recruiter, also in production),
reply links that work, and nothing that counts against real people or real figures."""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from starlette.testclient import TestClient

from tests import seed
from tests.smtp_server import SMTPServer
from tests.support import PRODUCTION, application, appointment, deliver, form_fields, make_settings
from tests.webhook_receiver import running as running_receiver
from widget_server import callers, cli, contacts, partner_events, tables
from widget_server.app import create_app
from widget_server.contact_requests import STAND_IN_CONTACT
from widget_server.operator_page import figures
from widget_server.reminders import send_due_reminders
from widget_server.stats import stats

REAL_RECRUITER = "recrutement@boulangerie.example"  # seed.offer's contact


def make_test_key(client: TestClient, caller: str = "mon-site") -> str:
    create = functools.partial(callers.create_key, test=True)
    return str(seed.run(client, create, seed.state(client).database, caller))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def apply(client: TestClient, key: str, **overrides: Any) -> Any:
    return client.post("/api/v1/applications", json=application(**overrides), headers=bearer(key))


def mailbox(client: TestClient, key: str, **params: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/test-mailbox", params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


def local(url: str) -> str:
    """The path of a link of the service, for TestClient (whatever PUBLIC_URL is)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def request_row(client: TestClient, request_id: str) -> dict[str, Any]:
    [row] = seed.fetch_all(
        client, tables.contact_requests.select().where(tables.contact_requests.c.id == request_id)
    )
    return row


def smtp_app(tmp_path: Path, smtp: SMTPServer, **overrides: str) -> TestClient:
    return TestClient(create_app(make_settings(tmp_path, SMTP_URL=smtp.url, **overrides)))


# --- where the emails go -----------------------------------------------------------


def test_a_test_key_request_sends_nothing_over_smtp_and_lands_in_its_test_mailbox(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_app(tmp_path, smtp_server) as client:
        seed.offer(client)
        key = make_test_key(client)
        assert key.startswith("lba_test_")
        response = apply(client, key)
        assert response.status_code == 202, response.text
        request_id = response.json()["id"]
        assert deliver(client) == 2
        assert smtp_server.received == []
        row = request_row(client, request_id)
        assert row["test"] is True and row["status"] == "delivered"  # stored like any other

        messages = mailbox(client, key)
        assert sorted(m["template"] for m in messages) == ["candidature_ack", "candidature_pro"]
        assert {m["request_id"] for m in messages} == {request_id}
        [pro] = [m for m in messages if m["template"] == "candidature_pro"]
        assert "Léa Moreau" in pro["text"] and "Je suis motivée" in pro["text"]
        assert any("/reply/" in link["href"] for link in pro["links"])
        assert pro["attachments"] == [
            {"filename": "CV-Lea.pdf", "content_type": "application/pdf", "size": len(seed.PDF)}
        ]
        # The real recruiter's address is nowhere: not in the mailbox, not in what was stored.
        assert STAND_IN_CONTACT in pro["to"]
        assert REAL_RECRUITER not in json.dumps(messages)
        assert row["contact_email"] == STAND_IN_CONTACT
        # The recruiter's links (the candidate's follow-up link is to the candidate).
        tokens = seed.fetch_all(
            client, tables.reply_tokens.select().where(tables.reply_tokens.c.action != "followup")
        )
        assert tokens and {t["contact_email"] for t in tokens} == {STAND_IN_CONTACT}
        assert mailbox(client, key, request_id=request_id) == messages


def test_a_live_key_still_sends_over_smtp_beside_a_test_key(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_app(tmp_path, smtp_server) as client:
        seed.offer(client)
        assert apply(client, make_test_key(client)).status_code == 202
        live = apply(client, seed.api_key(client), email="noe.petit@example.org")
        assert live.status_code == 202
        deliver(client)
        assert sorted(r.rcpt_tos[0] for r in smtp_server.received) == [
            "noe.petit@example.org",
            REAL_RECRUITER,
        ]
        assert request_row(client, live.json()["id"])["test"] is False
        outbox = seed.fetch_all(client, tables.outbox.select())
        assert all(o["status"] == "sent" for o in outbox)
        assert sorted(o["test_mailbox"] for o in outbox) == [False, False, True, True]


def test_the_whole_loop_from_the_test_mailbox_answer_and_reminder(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_app(tmp_path, smtp_server) as client:
        seed.formation(client)
        key = make_test_key(client)
        response = client.post("/api/v1/appointment-requests", json=appointment(), headers=bearer(key))
        assert response.status_code == 202
        request_id = response.json()["id"]
        deliver(client)
        [pro] = [m for m in mailbox(client, key) if m["template"] == "rdv_pro"]
        ack = next(m for m in mailbox(client, key) if m["template"] == "rdv_ack")

        # A reminder of a test request goes to the test mailbox too.
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        state = seed.state(client)
        assert seed.run(client, send_due_reminders, state.database, state.settings, later) == 1
        deliver(client, now=later)
        [reminder] = [m for m in mailbox(client, key) if m["template"] == "reminder"]
        assert reminder["in_reply_to"] == pro["message_id"] and STAND_IN_CONTACT in reminder["to"]

        replies = [link["href"] for link in pro["links"] if "/reply/" in link["href"]]
        [reply] = [u for u in replies if 'value="reply" checked' in client.get(local(u)).text]
        page = client.get(local(reply)).text
        answered = client.post(
            local(reply), data={**form_fields(page), "message_reply": "Oui, il reste 3 places."}
        )
        assert answered.status_code == 200 and "Votre réponse a été envoyée" in answered.text
        deliver(client)

        assert smtp_server.received == []
        assert request_row(client, request_id)["status"] == "answered"
        [answer] = [m for m in mailbox(client, key) if m["template"] == "answer_reply"]
        assert "il reste 3 places" in answer["text"]
        assert answer["in_reply_to"] == ack["message_id"]
        assert "rdv@cfa-commerce.example" not in json.dumps(mailbox(client, key))


def test_webhooks_of_a_test_key_fire_and_its_status_says_test(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_app(tmp_path, smtp_server) as client, running_receiver() as receiver:
        seed.offer(client)
        made = seed.run(
            client,
            functools.partial(callers.create, test=True, webhook_url=receiver.url),
            seed.state(client).database,
            "mon-site",
        )
        assert made.webhook_secret is not None
        request_id = apply(client, made.key).json()["id"]
        deliver(client)
        [pro] = [m for m in mailbox(client, made.key) if m["template"] == "candidature_pro"]
        [accept] = [
            link["href"]
            for link in pro["links"]
            if "/reply/" in link["href"] and 'value="accept" checked' in client.get(local(link["href"])).text
        ]
        assert client.post(local(accept), data=form_fields(client.get(local(accept)).text)).status_code == 200
        deliver(client)

        assert smtp_server.received == []
        events = [delivery.verify(made.webhook_secret) for delivery in receiver.deliveries]
        assert [e["type"] for e in events] == ["request.delivered", "request.answered"]  # type: ignore[index]
        assert all(e["data"]["id"] == request_id and e["data"]["test"] is True for e in events)  # type: ignore[index]
        status = client.get(f"/api/v1/requests/{request_id}", headers=bearer(made.key)).json()
        assert status["status"] == "answered" and status["test"] is True
        live = apply(client, seed.api_key(client), email="noe.petit@example.org").json()["id"]
        assert client.get(f"/api/v1/requests/{live}", headers=bearer(seed.api_key(client))).status_code == 404
        live_key = seed.api_key(client, "autre-site")
        other = apply(client, live_key, email="jade.roux@example.org").json()["id"]
        assert client.get(f"/api/v1/requests/{other}", headers=bearer(live_key)).json()["test"] is False


def test_a_test_request_withdrawn_from_its_follow_up_link_tells_only_the_test_mailbox(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_app(tmp_path, smtp_server) as client, running_receiver() as receiver:
        seed.offer(client)
        made = seed.run(
            client,
            functools.partial(callers.create, test=True, webhook_url=receiver.url),
            seed.state(client).database,
            "mon-site",
        )
        assert made.webhook_secret is not None
        request_id = apply(client, made.key).json()["id"]
        deliver(client)
        [ack] = [m for m in mailbox(client, made.key) if m["template"] == "candidature_ack"]
        [followup] = {link["href"] for link in ack["links"] if "/suivi/" in link["href"]}
        confirm = client.get(local(followup) + "/retirer")
        check = re.search(r'name="check" value="([^"]+)"', confirm.text)
        assert confirm.status_code == 200 and check
        assert client.post(local(followup) + "/retirer", data={"check": check.group(1)}).status_code == 200
        deliver(client)

        assert smtp_server.received == []
        assert request_row(client, request_id)["status"] == "withdrawn"
        [notice] = [m for m in mailbox(client, made.key) if m["template"] == "withdrawn"]
        assert STAND_IN_CONTACT in notice["to"] and "retiré" in notice["subject"]
        events = [delivery.verify(made.webhook_secret) for delivery in receiver.deliveries]
        assert [e["type"] for e in events] == ["request.delivered", "request.withdrawn"]  # type: ignore[index]


def test_production_has_no_dev_mailbox_yet_test_keys_work(tmp_path: Path, smtp_server: SMTPServer) -> None:
    settings = make_settings(tmp_path, **{**PRODUCTION, "SMTP_URL": smtp_server.url}, OUTBOX_WORKER="false")
    with TestClient(create_app(settings), base_url="https://widget.example") as client:
        assert client.get("/dev/mailbox").status_code == 404
        assert client.get("/dev/api/mailbox").status_code == 404
        seed.offer(client)
        key = make_test_key(client)
        assert apply(client, key).status_code == 202
        deliver(client)
        assert smtp_server.received == []
        [pro] = [m for m in mailbox(client, key) if m["template"] == "candidature_pro"]
        [accept] = [
            link["href"]
            for link in pro["links"]
            if "/reply/" in link["href"] and 'value="accept" checked' in client.get(local(link["href"])).text
        ]
        assert accept.startswith("https://widget.example/reply/")
        page = client.get(local(accept)).text
        assert client.post(local(accept), data=form_fields(page)).status_code == 200
        deliver(client)
        assert smtp_server.received == []
        assert mailbox(client, key)[0]["template"] == "answer_accept"


# --- who reads a test mailbox --------------------------------------------------------


def test_another_key_cannot_read_a_test_mailbox(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_app(tmp_path, smtp_server) as client:
        seed.offer(client)
        key = make_test_key(client)
        request_id = apply(client, key).json()["id"]
        deliver(client)
        assert len(mailbox(client, key)) == 2

        for other in (make_test_key(client, "autre-site"), make_test_key(client)):  # same partner too
            assert mailbox(client, other) == []
            response = client.get(
                "/api/v1/test-mailbox", params={"request_id": request_id}, headers=bearer(other)
            )
            assert response.status_code == 404
            assert response.json()["code"] == "unknown_request"

        live = client.get("/api/v1/test-mailbox", headers=bearer(seed.api_key(client)))
        assert live.status_code == 403 and live.json()["code"] == "not_a_test_key"
        assert client.get("/api/v1/test-mailbox").status_code == 401
        prefix = key.split("_")[2]
        assert seed.run(client, callers.revoke_key, seed.state(client).database, prefix)
        assert client.get("/api/v1/test-mailbox", headers=bearer(key)).status_code == 401


@pytest.mark.parametrize("request_id", ["\x00", "a\x00b", "é" * 20, "A" * 20, "0" * 5000, "../x"])
def test_a_malformed_request_id_is_a_404_never_a_500(client: TestClient, request_id: str) -> None:
    # PostgreSQL refuses a NUL in text: ids are checked before any query.
    key = make_test_key(client)
    response = client.get("/api/v1/test-mailbox", params={"request_id": request_id}, headers=bearer(key))
    assert response.status_code == 404 and response.json()["code"] == "unknown_request"
    response = client.get(f"/api/v1/requests/{quote(request_id, safe='')}", headers=bearer(key))
    assert response.status_code == 404


# --- nothing counts against real people or real figures -------------------------------


def test_test_requests_count_apart_from_real_quotas_and_take_no_offer_place(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, OFFER_MAX_APPLICATIONS="2"))) as client:
        seed.offer(client)
        key = make_test_key(client)
        for _ in range(3):  # APPLICATIONS_PER_TARGET: the quotas apply among tests…
            assert apply(client, key).status_code == 202
        assert apply(client, key).json()["code"] == "duplicate"
        # …and took none of the offer's two places, nor the candidate's real allowance.
        [offer] = seed.fetch_all(client, tables.offers.select())
        assert offer["application_count"] == 0
        live = seed.api_key(client)
        assert apply(client, live).status_code == 202
        [offer] = seed.fetch_all(client, tables.offers.select())
        assert offer["application_count"] == 1


def test_an_idempotency_key_of_a_test_key_never_answers_for_the_live_key(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path))) as client:
        seed.offer(client)
        headers = {"Idempotency-Key": "commande-42"}
        tested = client.post(
            "/api/v1/applications", json=application(), headers={**headers, **bearer(make_test_key(client))}
        )
        real = client.post(
            "/api/v1/applications", json=application(), headers={**headers, **bearer(seed.api_key(client))}
        )
        assert tested.status_code == real.status_code == 202
        assert real.json()["id"] != tested.json()["id"]
        assert request_row(client, real.json()["id"])["test"] is False


def test_test_keys_have_their_own_rate_limit(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, API_KEY_RATE_LIMIT="2/minute"))) as client:
        seed.offer(client)
        key = make_test_key(client)
        assert [apply(client, key, email=f"c{n}@example.org").status_code for n in range(3)] == [
            202,
            202,
            429,
        ]
        assert apply(client, seed.api_key(client)).status_code == 202

    # Reading statuses with a test key does not spend the live key's allowance either.
    with TestClient(create_app(make_settings(tmp_path / "2", API_KEY_RATE_LIMIT="2/minute"))) as client:
        seed.offer(client)
        key = make_test_key(client)
        request_id = apply(client, key).json()["id"]
        assert client.get(f"/api/v1/requests/{request_id}", headers=bearer(key)).status_code == 200
        assert client.get(f"/api/v1/requests/{request_id}", headers=bearer(key)).status_code == 429
        assert apply(client, seed.api_key(client)).status_code == 202


def test_opting_out_through_a_test_request_changes_nothing_real(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path))) as client:
        seed.offer(client)
        seed.company(client)
        key = make_test_key(client)
        assert apply(client, key, offer_id=None, siret=seed.SIRET).status_code == 202
        assert apply(client, key, email="noe.petit@example.org").status_code == 202
        deliver(client)
        for pro in (m for m in mailbox(client, key) if m["template"] == "candidature_pro"):
            [optout] = {link["href"] for link in pro["links"] if "/optout/" in link["href"]}
            assert client.post(local(optout)).status_code == 200
        deliver(client)
        [offer] = seed.fetch_all(client, tables.offers.select())
        assert offer["closed_reason"] is None
        assert seed.fetch_all(client, tables.contacts.select()) == []
        confirmations = [m for m in mailbox(client, key) if m["template"] == "optout_confirmed"]
        assert len(confirmations) == 2  # played: the confirmations reach the test mailbox

        # The undo link of a test confirmation does not clear a real opt-out either.
        now = dt.datetime.now(dt.UTC)
        seed.run(
            client,
            contacts.mark,
            seed.state(client).database,
            "contact@garage-durand.example",
            {"company_opt_out_at": now},
        )
        for confirmation in confirmations:
            [undo] = {link["href"] for link in confirmation["links"] if "/optout/" in link["href"]}
            assert client.post(local(undo)).status_code == 200
        [contact] = seed.fetch_all(client, tables.contacts.select())
        assert contact["company_opt_out_at"] is not None


def test_stats_operator_figures_and_metrics_leave_test_requests_out(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path))) as client:
        seed.offer(client)
        assert apply(client, make_test_key(client)).status_code == 202
        assert apply(client, seed.api_key(client), email="noe.petit@example.org").status_code == 202
        deliver(client)
        database = seed.state(client).database
        text = seed.run(client, stats, database)
        assert "candidature  delivered         1" in text
        assert "Test requests (test keys, left out of every figure here): 1" in text
        emails = text.split("Emails by status:\n")[1].split("Failed emails by kind:\n")[0]
        assert emails.split() == ["sent", "2"]
        weeks = seed.run(client, figures, database).weeks
        assert sum(week.requests.get("candidature", 0) for week in weeks) == 1
        metrics = client.get("/metrics").text
        assert 'widget_outbox_messages{kind="candidature_pro",status="sent"} 1.0' in metrics


def test_webhooks_of_test_keys_are_left_out_of_the_webhook_figures(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path))) as client:
        seed.offer(client)
        database = seed.state(client).database
        hook = "http://127.0.0.1:9/hooks"
        test_key = seed.run(
            client, functools.partial(callers.create, test=True, webhook_url=hook), database, "mon-site"
        ).key
        live_key, _ = seed.webhook_key(client, hook)
        ids = [
            apply(client, key, email=email).json()["id"]
            for key, email in ((test_key, "lea.moreau@example.org"), (live_key, "noe.petit@example.org"))
        ]

        async def delivered() -> None:
            now = dt.datetime.now(dt.UTC)
            for request_id in ids:
                await partner_events.emit(database, request_id, partner_events.DELIVERED, now=now)

        seed.run(client, delivered)
        metrics = client.get("/metrics").text
        assert 'widget_webhooks{event="request.delivered",status="pending"} 1.0' in metrics
        # The queue is the queue: a test key's webhook is sent for real, and waits as any other.
        assert "widget_webhooks_pending 2.0" in metrics
        text = seed.run(client, stats, database)
        webhooks = text.split("Partner webhooks by status:\n")[1].split("Emails by status:\n")[0]
        assert webhooks.split() == ["pending", "1"]


# --- the command line -------------------------------------------------------------------


def test_keys_create_test_and_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SECRET_KEY", "k")
    assert cli.main(["keys", "create", "mon-site", "--test"]) == 0
    out = capsys.readouterr().out
    [key] = [line for line in out.splitlines() if line.startswith("lba_")]
    assert key.startswith("lba_test_") and "/api/v1/test-mailbox" in out
    assert cli.main(["keys", "create", "mon-site"]) == 0
    capsys.readouterr()
    assert cli.main(["keys", "create", "ops", "--test", "--role", "operator"]) == 2
    assert "Only a partner key" in capsys.readouterr().err
    assert cli.main(["keys", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[3] for line in listing] == ["test", "live"]
    assert key.split("_")[2] in listing[0]
