"""Rendez-vous apprentissage: POST /api/v1/appointment-requests and the hosted page."""

from __future__ import annotations

import datetime as dt
import re
from email import message_from_bytes, policy
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from tests import seed
from tests.support import appointment, body, form_token
from widget_server import contact_requests, tables
from widget_server.kinds import RDV, TOPICS


@pytest.fixture
def key(client: TestClient) -> str:
    seed.formation(client)
    return seed.api_key(client)


def post(client: TestClient, key: str, body: dict[str, Any]) -> Any:
    return client.post("/api/v1/appointment-requests", json=body, headers={"Authorization": f"Bearer {key}"})


def test_request_is_stored_and_both_emails_queued(client: TestClient, key: str) -> None:
    response = post(client, key, appointment())
    assert response.status_code == 202, response.text
    [stored] = seed.fetch_all(client, tables.contact_requests.select())
    assert stored["kind"] == "rdv" and stored["role"] == "student"
    assert stored["topics"] == '["places", "horaires"]'
    assert stored["siret"] == seed.CFA_SIRET
    rows = seed.fetch_all(client, sa.select(tables.outbox).order_by(tables.outbox.c.id))
    assert [r["template"] for r in rows] == ["rdv_pro", "rdv_ack"]
    assert not any(r["attach_cv"] for r in rows)
    pro = message_from_bytes(rows[0]["raw"], policy=policy.default)
    ack = message_from_bytes(rows[1]["raw"], policy=policy.default)
    pro_html = body(pro, "html")
    for text in (
        "Places disponibles",
        "Horaires / rythme de la formation",
        "Répondre au candidat",
        "J&#39;ai répondu par un autre canal",
        "Le candidat est injoignable",
        "Ne plus recevoir de demandes de rendez-vous",
        "06 98 76 54 32",
    ):
        assert text in pro_html, text
    assert pro["Reply-To"].addresses[0].addr_spec == "yanis.benali@example.org"
    assert pro["List-Unsubscribe"].startswith("<http://testserver/optout/")
    ack_text = body(ack, "plain")
    assert "CFA du Commerce de Bordeaux" in ack_text
    assert "01 99 00 12 34" in ack_text  # the CFA's phone
    # The CFA's buttons (the candidate's follow-up link is tested in test_followup).
    tokens = seed.fetch_all(
        client, tables.reply_tokens.select().where(tables.reply_tokens.c.action != "followup")
    )
    assert sorted(t["action"] for t in tokens) == ["optout", "other_channel", "reply", "unreachable"]
    expiry = tokens[0]["expires_at"] - tokens[0]["created_at"]
    assert expiry == dt.timedelta(days=60)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"topics": []}, "topics"),
        ({"topics": ["places", "nope"]}, "topics"),
        ({"topics": "places"}, None),  # one code as a bare string is accepted
        ({"role": "teacher"}, "role"),
        ({"role": None}, "role"),
        ({"topics": ["autre"], "message": None}, "message"),
        ({"topics": ["autre"], "message": "   "}, "message"),
        ({"formation_id": None}, "formation_id"),
    ],
)
def test_rdv_fields_are_checked(
    client: TestClient, key: str, overrides: dict[str, Any], field: str | None
) -> None:
    response = post(client, key, appointment(**overrides))
    if field is None:
        assert response.status_code == 202, response.text
        return
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


def test_autre_with_a_message_is_accepted(client: TestClient, key: str) -> None:
    response = post(client, key, appointment(topics=["autre"], message="Accessible en fauteuil ?"))
    assert response.status_code == 202


def test_multipart_is_not_accepted_for_rdv(client: TestClient, key: str) -> None:
    response = client.post(
        "/api/v1/appointment-requests",
        data=appointment(topics=None),
        files={"x": ("a.txt", b"a")},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 415


def submit_at(client: TestClient, moment: dt.datetime, **overrides: Any) -> Any:
    """Submits through the pipeline with a chosen clock, to test the 4-day rule at its edges."""
    submission = contact_requests.Submission(
        kind=RDV, fields=appointment(**overrides), caller="mon-site", caller_origin="key"
    )
    return seed.run(client, contact_requests.submit, seed.state(client), submission, moment)


def test_one_request_per_person_per_formation_per_four_days(client: TestClient, key: str) -> None:
    from widget_server.problems import Problem

    start = dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.UTC)
    submit_at(client, start)
    with pytest.raises(Problem) as refused:
        submit_at(client, start + dt.timedelta(days=4) - dt.timedelta(seconds=1))
    assert refused.value.status == 409 and refused.value.code == "duplicate"
    assert "6 novembre 2026 à 11 h 00" in refused.value.detail  # Paris time
    assert refused.value.extra["retry_after"] == "2026-11-06T10:00:00+00:00"
    submit_at(client, start + dt.timedelta(days=4))  # exactly 4 days later: allowed again
    # Another person, or another formation, is not concerned.
    seed.formation(client, "CME-0002")
    submit_at(client, start + dt.timedelta(hours=1), formation_id="CME-0002")
    submit_at(client, start + dt.timedelta(hours=1), email="autre@example.org")


def test_second_request_through_the_api_is_409_in_french(client: TestClient, key: str) -> None:
    assert post(client, key, appointment()).status_code == 202
    response = post(client, key, appointment(topics=["frais"]))
    assert response.status_code == 409
    assert response.json()["code"] == "duplicate"
    assert "à partir du" in response.json()["detail"]


@pytest.mark.parametrize(
    ("column", "reason"), [("formation_opt_out_at", "opted_out"), ("bounced_at", "bounced")]
)
def test_opted_out_or_bouncing_cfa_is_409(client: TestClient, key: str, column: str, reason: str) -> None:
    seed.insert(client, tables.contacts, email="rdv@cfa-commerce.example", **{column: seed.NOW})
    response = post(client, key, appointment())
    assert response.status_code == 409
    assert response.json()["code"] == reason


def test_company_opt_out_does_not_stop_rdv(client: TestClient, key: str) -> None:
    seed.insert(client, tables.contacts, email="rdv@cfa-commerce.example", company_opt_out_at=seed.NOW)
    assert post(client, key, appointment()).status_code == 202


# --- the hosted page -------------------------------------------------------------

PAGE = "/widget/v1/rdv"


def test_page_shows_the_training_topics_and_roles(client: TestClient) -> None:
    seed.formation(client)
    response = client.get(PAGE, params={"formation_id": seed.FORMATION_ID})
    assert response.status_code == 200
    html = response.text
    assert "BTS Management commercial opérationnel" in html
    assert "CFA du Commerce de Bordeaux · Bordeaux" in html
    for code, _ in TOPICS:
        assert f'value="{code}"' in html
    assert 'value="student"' in html and 'value="parent"' in html
    assert 'name="cv"' not in html


def test_page_post_without_javascript(client: TestClient) -> None:
    seed.formation(client)
    page = client.get(PAGE, params={"formation_id": seed.FORMATION_ID, "caller": "site"}).text
    token = form_token(page)
    data = {
        "form_token": token,
        "formation_id": seed.FORMATION_ID,
        "caller": "site",
        **appointment(formation_id=None, topics=None, message=None),
    }
    # "Autre" without a message: the error comes back, the ticked topics stay ticked.
    response = client.post(PAGE, data={**data, "topics": ["places", "autre"]})
    assert response.status_code == 422
    assert 'id="message-error"' in response.text
    assert re.search(r'value="autre" id="topic-autre" checked', response.text)
    assert re.search(r'value="places" id="topic-places" checked', response.text)
    assert re.search(r'value="student" checked', response.text)
    token = form_token(response.text)
    response = client.post(
        PAGE, data={**data, "form_token": token, "topics": ["autre"], "message": "Y a-t-il un internat ?"}
    )
    assert response.status_code == 200, response.text
    assert "Votre demande a bien été envoyée" in response.text
    assert "01 99 00 12 34" in response.text
    [stored] = seed.fetch_all(client, tables.contact_requests.select())
    assert stored["message"] == "Y a-t-il un internat ?"
