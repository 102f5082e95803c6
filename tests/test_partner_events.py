"""Partner events wired to the request's life, through the real pipeline: a real
SMTP server (delivered when it accepts the CFA's email, bounced when it refuses
the address) and the recruiter's quick reply (answered), each told to a real
HTTP receiver on 127.0.0.1, signed, with the status the API shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from tests import seed
from tests.smtp_server import SMTPServer
from tests.support import appointment, deliver, form_fields, links, path, smtp_client
from tests.webhook_receiver import Receiver, running


def _rdv(client: TestClient, key: str, **overrides: Any) -> str:
    response = client.post(
        "/api/v1/appointment-requests",
        json=appointment(**overrides),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _events(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    events = []
    for delivery in receiver.deliveries:
        payload = delivery.verify(secret)
        assert isinstance(payload, dict)
        events.append(payload)
    return events


def test_delivered_then_answered_are_told_with_the_status_the_api_shows(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with running() as receiver, smtp_client(tmp_path, smtp_server) as client:
        seed.formation(client)
        key, secret = seed.webhook_key(client, receiver.url)
        request_id = _rdv(client, key)
        assert receiver.deliveries == []  # nothing before the CFA's email is accepted
        deliver(client)
        [delivered] = _events(receiver, secret)
        assert delivered["type"] == "request.delivered"
        assert delivered["data"]["id"] == request_id and delivered["data"]["status"] == "delivered"
        assert delivered["data"]["delivered_at"] is not None and delivered["data"]["answer"] is None

        pro = smtp_server.received[0]
        unreachable = 'value="unreachable" checked'
        url = next(u for u in links(pro) if "/reply/" in u and unreachable in client.get(path(u)).text)
        fields = form_fields(client.get(path(url)).text)
        assert client.post(path(url), data=fields).status_code == 200
        deliver(client)
        [_, answered] = _events(receiver, secret)
        assert answered["type"] == "request.answered"
        assert answered["data"]["status"] == "answered"
        assert answered["data"]["answer"]["kind"] == "unreachable"
        assert answered["data"]["delivered_at"] == delivered["data"]["delivered_at"]
        shown = client.get(f"/api/v1/requests/{request_id}", headers={"Authorization": f"Bearer {key}"})
        assert shown.json() == answered["data"]
        # A second answer changes nothing and tells nothing.
        client.post(path(url), data=fields)
        deliver(client)
        assert len(receiver.deliveries) == 2


def test_a_refused_address_and_an_operator_report_are_told_as_bounced(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with running() as receiver, smtp_client(tmp_path, smtp_server) as client:
        seed.formation(client)
        seed.formation(client, "CME-0002", contact_email="rdv@autre-cfa.example")
        key, secret = seed.webhook_key(client, receiver.url)
        operator = seed.api_key(client, "ops", role="operator")
        smtp_server.answer("RCPT", "550 5.1.1 No such user")
        refused = _rdv(client, key)
        deliver(client)
        [bounced] = _events(receiver, secret)
        assert (bounced["type"], bounced["data"]["id"], bounced["data"]["status"]) == (
            "request.bounced",
            refused,
            "bounced",
        )
        assert bounced["data"]["delivered_at"] is None

        reported = _rdv(client, key, formation_id="CME-0002")
        deliver(client)
        response = client.post(
            "/api/v1/bounces",
            json={"email": "rdv@autre-cfa.example", "reason": "550 mailbox full for good"},
            headers={"Authorization": f"Bearer {operator}"},
        )
        assert response.status_code == 202
        deliver(client)
        types = [(e["type"], e["data"]["id"]) for e in _events(receiver, secret)]
        assert types == [
            ("request.bounced", refused),
            ("request.delivered", reported),
            ("request.bounced", reported),
        ]


def test_a_form_request_and_a_key_without_webhook_tell_no_one(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with running() as receiver, smtp_client(tmp_path, smtp_server) as client:
        seed.formation(client)
        _, _ = seed.webhook_key(client, receiver.url, caller="autre-site")
        plain = seed.api_key(client, "mon-site")
        _rdv(client, plain)
        deliver(client)
        assert len(smtp_server.received) == 2
    assert receiver.deliveries == []
