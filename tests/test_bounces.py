"""The bounce webhook: a mail provider reports a hard bounce; the contact turns
ineligible and each candidate still waiting on it is told, once."""

from __future__ import annotations

import asyncio
import html
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests import seed
from tests.smtp_server import Received, SMTPServer
from tests.support import (
    application,
    appointment,
    body,
    deliver,
    form_fields,
    links,
    path,
    smtp_client,
    submit_application,
)
from widget_server import bounces, tables
from widget_server.database import writer_lock
from widget_server.withdrawals import withdraw


def report(client: TestClient, key: str | None, body: Any) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post("/api/v1/bounces", json=body, headers=headers)


def operator(client: TestClient) -> str:
    return seed.api_key(client, "postmaster", "operator")


def told(smtp: SMTPServer) -> list[Received]:
    return [r for r in smtp.received if r.message["X-LBA-Template"] == "delivery_failed"]


def test_bounce_webhook_needs_an_operator_key(client: TestClient) -> None:
    body = {"email": "rh@example.org", "reason": "550 user unknown"}
    assert report(client, None, body).status_code == 401
    assert report(client, "not-a-key", body).status_code == 401
    assert report(client, seed.api_key(client), body).status_code == 403
    assert seed.fetch_all(client, tables.contacts.select()) == []
    assert report(client, operator(client), body).status_code == 202
    assert [c["email"] for c in seed.fetch_all(client, tables.contacts.select())] == ["rh@example.org"]


def test_a_reason_with_nul_or_a_lone_surrogate_is_stored_clean(client: TestClient) -> None:
    # PostgreSQL refuses both in text (found by the API fuzz test on PostgreSQL: a 500).
    response = client.post(
        "/api/v1/bounces",
        content=b'{"email": "rh@example.org", "reason": "550\\u0000 user\\udf24 unknown"}',
        headers={"Authorization": f"Bearer {operator(client)}", "Content-Type": "application/json"},
    )
    assert response.status_code == 202, response.text
    [contact] = seed.fetch_all(client, tables.contacts.select())
    assert contact["bounce_reason"] == "550 user unknown"


def test_each_waiting_candidate_is_told_once(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        key = seed.api_key(client)
        for body in (
            application(),
            application(first_name="Tom", last_name="Petit", email="tom.petit@example.org"),
        ):
            response = client.post(
                "/api/v1/applications", json=body, headers={"Authorization": f"Bearer {key}"}
            )
            assert response.status_code == 202
        deliver(client)
        acks = {
            r.rcpt_tos[0]: str(r.message["Message-ID"])
            for r in smtp_server.received
            if r.message["X-LBA-Template"] == "candidature_ack"
        }
        # The recruiter answered Tom before the address died: Tom has nothing to be told.
        tom_pro = next(r for r in smtp_server.received if "Tom Petit" in str(r.message["Subject"]))
        url = next(u for u in links(tom_pro) if "/reply/" in u)
        client.post(path(url), data=form_fields(client.get(path(url)).text))

        body = {"bounces": [{"email": "Recrutement@Boulangerie.example", "reason": "5.1.1"}]}
        first = report(client, operator(client), body)
        assert first.status_code == 202
        assert first.json() == {"recorded": 1, "candidates_told": 1}
        assert report(client, operator(client), body).json()["candidates_told"] == 0

        eligibility = client.get("/api/v1/eligibility", params={"target": f"offer:{seed.OFFER_ID}"})
        assert eligibility.json()["results"][0]["reason"] == "bounced"
        refused = client.post(
            "/api/v1/applications",
            headers={"Authorization": f"Bearer {key}"},
            json=application(email="zoe@example.org"),
        )
        assert refused.status_code == 409 and refused.json()["code"] == "bounced"
        statuses = {r["email"]: r["status"] for r in seed.fetch_all(client, tables.contact_requests.select())}
        assert statuses == {"lea.moreau@example.org": "bounced", "tom.petit@example.org": "answered"}
        deliver(client)

    [message] = told(smtp_server)
    assert message.rcpt_tos == ["lea.moreau@example.org"]
    assert message.message["In-Reply-To"] == acks["lea.moreau@example.org"]


def test_rdv_candidate_gets_the_cfa_phone(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.formation(client)
        client.post(
            "/api/v1/appointment-requests",
            json=appointment(),
            headers={"Authorization": f"Bearer {seed.api_key(client)}"},
        )
        deliver(client)
        response = report(
            client,
            operator(client),
            {"email": "rdv@cfa-commerce.example", "reason": "mailbox does not exist"},
        )
        assert response.json() == {"recorded": 1, "candidates_told": 1}
        eligibility = client.get("/api/v1/eligibility", params={"target": f"formation:{seed.FORMATION_ID}"})
        assert eligibility.json()["results"][0]["reason"] == "bounced"
        [contact] = seed.fetch_all(client, tables.contacts.select())
        assert contact["bounce_reason"] == "mailbox does not exist"
        deliver(client)
    [message] = told(smtp_server)
    assert message.rcpt_tos == ["yanis.benali@example.org"]
    text = body(message.message, "plain")
    assert "01 99 00 12 34" in text


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"email": "nope"}, 422, "email"),
        ({"bounces": [{"email": "a@example.org"}, {"email": ""}]}, 422, "bounces[1].email"),
        ({"bounces": [{"email": "a@example.org"}, "b@example.org"]}, 422, "bounces[1].email"),
        ({"bounces": []}, 400, None),
        ([1, 2], 400, None),
    ],
)
def test_bad_reports_are_refused_whole(client: TestClient, body: Any, status: int, field: str | None) -> None:
    response = report(client, operator(client), body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    if field:
        assert field in [e["field"] for e in response.json()["errors"]]
    assert seed.fetch_all(client, tables.contacts.select()) == []


def test_a_body_that_is_not_json_is_a_problem(client: TestClient) -> None:
    response = client.post(
        "/api/v1/bounces",
        content=b"email=a@example.org",
        headers={"Authorization": f"Bearer {operator(client)}"},
    )
    assert response.status_code == 400
    assert "JSON" in html.unescape(response.json()["detail"])


# --- a bounce racing a withdrawal, on the real database -----------------------------


async def _waits_for_a_lock(database: Any, withdrawal: asyncio.Task[Any]) -> bool:
    """Whether the withdrawal ended, or waits for the bounce's transaction: on
    PostgreSQL a backend waiting for a row lock; on SQLite, for the writer lock."""
    if withdrawal.done():
        return True
    if database.url.dialect != "sqlite":
        query = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return bool(await database.fetch_val(query))
    return bool(getattr(writer_lock(database), "_waiters", None))


def test_a_withdrawal_during_a_bounce_is_either_one_never_both(
    tmp_path: Path, smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bounce is held right after it picked the request (where the old
    read-then-write code had only read it); the candidate withdraws meanwhile.
    One of them wins: a bounced request is not withdrawn too, and a candidate
    who withdrew is not told about a bounce."""
    picked, go = asyncio.Event(), asyncio.Event()
    tell = bounces._tell_candidate

    async def held_tell(*args: Any) -> None:
        picked.set()
        await go.wait()
        await tell(*args)

    monkeypatch.setattr(bounces, "_tell_candidate", held_tell)
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        submit_application(client, smtp_server)
        [request_id] = [row["id"] for row in seed.fetch_all(client, tables.contact_requests.select())]
        state = seed.state(client)

        async def race() -> tuple[int, bool]:
            database, settings = state.database, state.settings
            bounce = asyncio.create_task(
                bounces.record_bounce(database, settings, "recrutement@boulangerie.example", "550")
            )
            await asyncio.wait_for(picked.wait(), 10)
            withdrawal = asyncio.create_task(withdraw(database, settings, request_id))
            deadline = time.monotonic() + 10
            while not await _waits_for_a_lock(database, withdrawal):
                assert time.monotonic() < deadline, "the withdrawal neither ended nor waited"
                await asyncio.sleep(0.01)
            go.set()
            return await bounce, (await withdrawal).withdrawn

        told_count, withdrawn = seed.run(client, race)
        [row] = seed.fetch_all(client, tables.contact_requests.select())
        templates = [r["template"] for r in seed.fetch_all(client, tables.outbox.select())]
    # The bounce picked the request first: it wins, the withdrawal finds it closed.
    assert (told_count, withdrawn) == (1, False)
    assert (row["status"], row["withdrawn_at"]) == ("bounced", None)
    assert templates.count("delivery_failed") == 1 and "withdrawn" not in templates
