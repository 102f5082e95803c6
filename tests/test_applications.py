"""POST /api/v1/applications: auth, validation, storage, quotas, idempotency."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from tests import seed
from tests.support import application, body, data_url, docx, email_anchors, make_settings
from widget_server import tables


@pytest.fixture
def key(client: TestClient) -> str:
    seed.offer(client)
    return seed.api_key(client)


def post(client: TestClient, key: str, body: dict[str, Any], **headers: str) -> Any:
    return client.post(
        "/api/v1/applications", json=body, headers={"Authorization": f"Bearer {key}", **headers}
    )


def outbox_messages(client: TestClient) -> list[tuple[dict[str, Any], EmailMessage]]:
    rows = seed.fetch_all(client, sa.select(tables.outbox).order_by(tables.outbox.c.id))
    return [(row, message_from_bytes(row["raw"], policy=policy.default)) for row in rows]


def test_json_application_is_stored_with_its_cv_and_two_queued_emails(client: TestClient, key: str) -> None:
    response = post(client, key, application())
    assert response.status_code == 202, response.text
    request_id = response.json()["id"]
    assert response.json()["status"] == "received"

    [stored] = seed.fetch_all(client, tables.contact_requests.select())
    assert stored["id"] == request_id
    assert stored["caller"] == "mon-site"
    assert stored["phone"] == "+33612345678"
    assert stored["contact_email"] == "recrutement@boulangerie.example"
    [cv] = seed.fetch_all(client, tables.cv_files.select())
    assert cv["data"] == seed.PDF and cv["content_type"] == "application/pdf"
    assert cv["filename"] == "CV-Lea.pdf"

    (pro_row, pro), (ack_row, ack) = outbox_messages(client)
    assert pro_row["attach_cv"] and not ack_row["attach_cv"]
    assert pro["To"].addresses[0].addr_spec == "recrutement@boulangerie.example"
    assert pro["Reply-To"].addresses[0].addr_spec == "lea.moreau@example.org"
    assert pro["Auto-Submitted"] == "auto-generated"
    assert pro["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Vendeur·se en boulangerie" in pro["Subject"]
    html = body(pro, "html")
    text = body(pro, "plain")
    for label in ("Répondre au candidat", "Refuser la candidature"):
        assert label in html and label in text
    assert "http://testserver/reply/" in html
    assert "candidatures spontanées" not in html  # an offer, not a spontaneous application
    assert "fonts.googleapis" not in html
    assert ack["To"].addresses[0].addr_spec == "lea.moreau@example.org"
    assert "10 jours" in body(ack, "plain")

    tokens = seed.fetch_all(client, tables.reply_tokens.select())
    # The recruiter's buttons, and the candidate's follow-up link.
    assert sorted(t["action"] for t in tokens) == ["accept", "filled", "followup", "optout", "refuse"]
    assert all(t["request_id"] == request_id for t in tokens)
    [offer] = seed.fetch_all(client, tables.offers.select())
    assert offer["application_count"] == 1


def test_spontaneous_application_has_the_opt_out_button(client: TestClient) -> None:
    seed.company(client)
    key = seed.api_key(client)
    response = post(client, key, application(offer_id=None, siret=seed.SIRET))
    assert response.status_code == 202, response.text
    (_, pro), _ = outbox_messages(client)
    html = body(pro, "html")
    assert "Ne plus recevoir de candidatures spontanées" in html
    assert "candidature spontanée" in html
    # Secondary: a smaller plain link after the answers, not a third button under "Refuser".
    found = email_anchors(pro)
    answers = [a for a in found if "/reply/" in a["href"]]
    assert [a["text"] for a in answers] == ["Répondre au candidat", "Refuser la candidature"]
    assert all(a["button"] for a in answers)
    optout = next(a for a in found if a["text"] == "Ne plus recevoir de candidatures spontanées")
    assert not optout["button"] and optout["size"] < min(a["size"] for a in answers)
    assert found.index(optout) > max(found.index(a) for a in answers)
    text = body(pro, "plain")
    answer_lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert [line.split(" : ")[0] for line in answer_lines] == [
        "- Répondre au candidat",
        "- Refuser la candidature",
    ]
    lines = text.splitlines()
    secondary = next(
        i for i, line in enumerate(lines) if "Ne plus recevoir de candidatures spontanées :" in line
    )
    assert secondary > lines.index(answer_lines[-1]) + 1 and lines[secondary - 1] == ""  # separated


def test_multipart_application_with_a_docx(client: TestClient, key: str) -> None:
    fields = application(cv=None, cv_filename=None)
    response = client.post(
        "/api/v1/applications",
        data=fields,
        files={"cv": ("mon cv.docx", docx(), "application/octet-stream")},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 202, response.text
    [cv] = seed.fetch_all(client, tables.cv_files.select())
    assert cv["filename"] == "mon-cv.docx"
    assert cv["content_type"].endswith("wordprocessingml.document")


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc"])
def test_missing_or_bad_key_is_401(client: TestClient, key: str, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.post("/api/v1/applications", json=application(), headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert seed.fetch_all(client, tables.contact_requests.select()) == []


def test_revoked_key_is_401(client: TestClient, key: str) -> None:
    from widget_server import callers

    prefix = key.split("_")[1]
    assert seed.run(client, callers.revoke_key, seed.state(client).database, prefix)
    assert post(client, key, application()).status_code == 401


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "someone@yopmail.com"}, "email"),
        ({"phone": "12"}, "phone"),
        ({"phone": "08 99 23 45 67"}, "phone"),  # premium rate
        ({"last_name": "x" * 51}, "last_name"),
        ({"first_name": ""}, "first_name"),
        ({"first_name": "Jean\r\nBcc: evil@example.com"}, "first_name"),
        ({"message": "m" * 3001}, "message"),
        ({"cv": None}, "cv"),
        ({"cv": "data:application/pdf;base64,@@@"}, "cv"),
        ({"offer_id": None}, "offer_id"),
        ({"siret": seed.SIRET}, "offer_id"),  # both targets given
    ],
)
def test_bad_fields_are_422_naming_the_field(
    client: TestClient, key: str, overrides: dict[str, Any], field: str
) -> None:
    response = post(client, key, application(**overrides))
    assert response.status_code == 422, response.text
    body = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in body["errors"]]
    assert seed.fetch_all(client, tables.contact_requests.select()) == []
    assert seed.fetch_all(client, tables.outbox.select()) == []


def test_every_bad_field_is_reported_at_once(client: TestClient, key: str) -> None:
    response = post(client, key, application(email="x", phone="1", first_name=""))
    assert {e["field"] for e in response.json()["errors"]} == {"email", "phone", "first_name"}


def test_cv_type_is_checked_by_content_not_by_name(client: TestClient, key: str) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    response = post(client, key, application(cv=data_url(png), cv_filename="cv.pdf"))
    assert response.status_code == 415
    assert response.json()["errors"][0]["field"] == "cv"


def test_cv_over_3_mb_is_413(client: TestClient, key: str) -> None:
    big = seed.PDF + b"0" * (3 * 1024 * 1024)
    response = post(client, key, application(cv=data_url(big)))
    assert response.status_code == 413
    assert response.json()["code"] == "cv_too_large"


def test_body_over_5_mb_is_refused_before_reading(client: TestClient, key: str) -> None:
    response = client.post(
        "/api/v1/applications",
        content=b"{" + b" " * (5 * 1024 * 1024 + 1),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


def test_chunked_body_over_the_limit_is_413(client: TestClient, key: str) -> None:
    def chunks() -> Any:
        for _ in range(6):
            yield b" " * (1024 * 1024)

    response = client.post(
        "/api/v1/applications",
        content=chunks(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413


def test_wrong_content_type_is_415_and_bad_json_400(client: TestClient, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    assert (
        client.post(
            "/api/v1/applications", content=b"a=b", headers={**auth, "Content-Type": "text/plain"}
        ).status_code
        == 415
    )
    assert (
        client.post(
            "/api/v1/applications", content=b"{nope", headers={**auth, "Content-Type": "application/json"}
        ).status_code
        == 400
    )
    assert client.post("/api/v1/applications", json=[1, 2], headers=auth).status_code == 400


def test_unknown_offer_is_404(client: TestClient, key: str) -> None:
    response = post(client, key, application(offer_id="NOPE-42"))
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_target"


@pytest.mark.parametrize(
    ("prepare", "reason"),
    [
        (lambda c: seed.offer(c, "CLOSED-1", status="closed"), "closed"),
        (lambda c: seed.offer(c, "CLOSED-1", application_count=80), "closed"),
        (lambda c: seed.offer(c, "CLOSED-1", contact_email=None), "no_contact"),
    ],
)
def test_ineligible_offer_is_409_with_reason(client: TestClient, key: str, prepare: Any, reason: str) -> None:
    prepare(client)
    response = post(client, key, application(offer_id="CLOSED-1"))
    assert response.status_code == 409
    assert response.json()["code"] == reason


def test_opted_out_company_is_409_opted_out(client: TestClient, key: str) -> None:
    seed.company(client)
    seed.insert(client, tables.contacts, email="contact@garage-durand.example", company_opt_out_at=seed.NOW)
    response = post(client, key, application(offer_id=None, siret=seed.SIRET))
    assert response.status_code == 409
    assert response.json()["code"] == "opted_out"


def test_three_applications_per_target_then_409(client: TestClient, key: str) -> None:
    for _ in range(3):
        assert post(client, key, application()).status_code == 202
    response = post(client, key, application())
    assert response.status_code == 409
    assert response.json()["code"] == "duplicate"
    other = post(client, key, application(email="autre@example.org"))
    assert other.status_code == 202


def test_idempotency_key_replays_without_creating_twice(client: TestClient, key: str) -> None:
    first = post(client, key, application(), **{"Idempotency-Key": "abc-123"})
    second = post(client, key, application(), **{"Idempotency-Key": "abc-123"})
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert len(seed.fetch_all(client, tables.contact_requests.select())) == 1
    assert len(seed.fetch_all(client, tables.outbox.select())) == 2
    changed = post(client, key, application(message="autre"), **{"Idempotency-Key": "abc-123"})
    assert changed.status_code == 422
    assert changed.json()["code"] == "idempotency_key_reused"


def test_message_is_escaped_in_the_html_email(client: TestClient, key: str) -> None:
    payload = '<script>alert("x")</script>\nligne 2'
    assert post(client, key, application(message=payload)).status_code == 202
    (_, pro), _ = outbox_messages(client)
    html = body(pro, "html")
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert" in html
    assert "ligne 2" in html


def test_rate_limit_is_429_with_retry_after(tmp_path: Path) -> None:
    from widget_server.app import create_app

    settings = make_settings(tmp_path, RATE_LIMIT="2/minute")
    with TestClient(create_app(settings)) as client:
        seed.offer(client)
        key = seed.api_key(client)
        codes = [post(client, key, application(email=f"c{i}@example.org")).status_code for i in range(3)]
        assert codes == [202, 202, 429]
        response = post(client, key, application())
        assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    ("setting", "emails", "told"),
    [
        # One candidate, three offers of one company: the candidate's own daily quota.
        ("APPLICATIONS_PER_DAY", ["a@example.org"] * 3, "Vous avez envoyé beaucoup de candidatures"),
        # Three candidates through one partner site to one company: the site's quota.
        (
            "CALLER_APPLICATIONS_PER_COMPANY_PER_DAY",
            ["a@example.org", "b@example.org", "c@example.org"],
            "Cette entreprise a reçu beaucoup de candidatures",
        ),
    ],
)
def test_daily_quotas_answer_429_with_retry_after(
    tmp_path: Path, setting: str, emails: list[str], told: str
) -> None:
    from widget_server.app import create_app

    with TestClient(create_app(make_settings(tmp_path, **{setting: "2"}))) as client:
        for offer_id in ("O-1", "O-2", "O-3"):  # one company, three offers
            seed.offer(client, offer_id)
        key = seed.api_key(client)
        codes = [
            post(client, key, application(offer_id=f"O-{i + 1}", email=email)).status_code
            for i, email in enumerate(emails[:2])
        ]
        assert codes == [202, 202]
        response = post(client, key, application(offer_id="O-3", email=emails[2]))
        assert response.status_code == 429
        assert response.json()["code"] == "quota"
        # Which quota was hit: each case must trip its own, not the other.
        assert told in response.json()["detail"]
        assert 0 < int(response.headers["retry-after"]) <= 86400
