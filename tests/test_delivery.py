"""From a submission to what arrives at a real SMTP server, for both request kinds:
headers, both parts, the CV, escaping, threading material, bounces."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests import seed
from tests.smtp_server import SMTPServer
from tests.support import application, appointment, body, deliver, smtp_client
from widget_server import tables
from widget_server.stats import stats


def links(text: str) -> list[str]:
    return re.findall(r'https?://[^\s"<>)]+', text)


def test_application_reaches_the_recruiter_with_cv_and_the_candidate(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        key = seed.api_key(client)
        response = client.post(
            "/api/v1/applications",
            headers={"Authorization": f"Bearer {key}"},
            json=application(message='<script>alert("x")</script>'),
        )
        assert response.status_code == 202
        assert deliver(client) == 2

    pro, ack = smtp_server.received
    assert pro.rcpt_tos == ["recrutement@boulangerie.example"]
    assert pro.mail_from == "noreply@labonnealternance.example"
    message = pro.message
    assert message["Reply-To"] == "Léa Moreau <lea.moreau@example.org>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe"].startswith("<http://testserver/optout/")
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "CV-Lea.pdf"
    assert attachment.get_content() == seed.PDF
    html = body(message, "html")
    text = body(message, "plain")
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert '<script>alert("x")</script>' in text  # plain text shows it as typed, harmlessly
    reply_links = [u for u in links(text) if "/reply/" in u]
    assert len(reply_links) == 2 and all(u in html for u in reply_links)
    # The first thing a recruiter reads is who applied to what, then the buttons.
    assert (
        html.index("candidate à votre offre")
        < html.index("Répondre au candidat")
        < html.index("CV en pièce jointe")
    )
    assert ack.rcpt_tos == ["lea.moreau@example.org"]
    assert "Votre candidature a bien été envoyée" in ack.message["Subject"]
    assert not list(ack.message.iter_attachments())


def test_rdv_reaches_the_cfa_and_the_candidate(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.formation(client)
        key = seed.api_key(client)
        response = client.post(
            "/api/v1/appointment-requests", json=appointment(), headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 202
        assert deliver(client) == 2
    pro, ack = smtp_server.received
    assert pro.rcpt_tos == ["rdv@cfa-commerce.example"]
    assert "Places disponibles" in body(pro.message, "plain")
    assert not list(pro.message.iter_attachments())
    assert ack.rcpt_tos == ["yanis.benali@example.org"]
    assert "01 99 00 12 34" in body(ack.message, "plain")


def test_recruiter_address_refused_marks_bounce_and_tells_the_candidate(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    smtp_server.answer("RCPT", "550 5.1.1 No such user")
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        key = seed.api_key(client)
        client.post("/api/v1/applications", headers={"Authorization": f"Bearer {key}"}, json=application())
        deliver(client)
        [contact] = seed.fetch_all(client, tables.contacts.select())
        assert contact["email"] == "recrutement@boulangerie.example"
        assert contact["bounced_at"] is not None and "550" in contact["bounce_reason"]
        [request] = seed.fetch_all(client, tables.contact_requests.select())
        assert request["status"] == "bounced"
        eligibility = client.get("/api/v1/eligibility", params={"target": f"offer:{seed.OFFER_ID}"})
        assert eligibility.json()["results"][0]["reason"] == "bounced"
        statuses = seed.fetch_all(
            client, sa.select(tables.outbox.c.template, tables.outbox.c.status).order_by(tables.outbox.c.id)
        )
        assert statuses == [
            {"template": "candidature_pro", "status": "failed"},
            {"template": "candidature_ack", "status": "sent"},
            {"template": "delivery_failed", "status": "sent"},
        ]
    told = [r for r in smtp_server.received if r.message["X-LBA-Template"] == "delivery_failed"]
    assert len(told) == 1 and told[0].rcpt_tos == ["lea.moreau@example.org"]
    assert "n'a pas pu être remise" in told[0].message["Subject"]


def test_rdv_bounce_gives_the_candidate_the_cfa_phone(tmp_path: Path, smtp_server: SMTPServer) -> None:
    smtp_server.answer("RCPT", "550 5.1.1 No such user")
    with smtp_client(tmp_path, smtp_server) as client:
        seed.formation(client)
        key = seed.api_key(client)
        client.post(
            "/api/v1/appointment-requests", json=appointment(), headers={"Authorization": f"Bearer {key}"}
        )
        deliver(client)
    [told] = [r for r in smtp_server.received if r.message["X-LBA-Template"] == "delivery_failed"]
    assert "01 99 00 12 34" in body(told.message, "plain")


def test_candidate_address_refused_blames_no_contact(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        key = seed.api_key(client)
        client.post("/api/v1/applications", headers={"Authorization": f"Bearer {key}"}, json=application())
        assert deliver(client, batches=1, batch_size=1) == 1  # the recruiter's address is fine
        smtp_server.answer("RCPT", "550 5.1.1 No such user")  # the candidate's is not
        deliver(client)
        assert seed.fetch_all(client, tables.contacts.select()) == []
        [request] = seed.fetch_all(client, tables.contact_requests.select())
        assert request["status"] == "delivered"  # the recruiter got it


@pytest.mark.parametrize(
    "reply", ["552 5.3.4 Message too big for system", "554 5.7.1 Message refused: content"]
)
def test_a_refused_message_is_not_a_bounce(tmp_path: Path, smtp_server: SMTPServer, reply: str) -> None:
    smtp_server.answer("DATA", reply)  # the recruiter's email is the first one sent
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        key = seed.api_key(client)
        client.post("/api/v1/applications", headers={"Authorization": f"Bearer {key}"}, json=application())
        deliver(client)
        # The contact stays eligible and the candidate is not told anything went wrong.
        assert seed.fetch_all(client, tables.contacts.select()) == []
        [request] = seed.fetch_all(client, tables.contact_requests.select())
        assert request["status"] == "received"  # the recruiter's email never arrived
        eligibility = client.get("/api/v1/eligibility", params={"target": f"offer:{seed.OFFER_ID}"})
        assert eligibility.json()["results"][0]["eligible"] is True
        failed = seed.fetch_all(
            client,
            sa.select(tables.outbox.c.template, tables.outbox.c.failure_kind).where(
                tables.outbox.c.status == "failed"
            ),
        )
        assert failed == [{"template": "candidature_pro", "failure_kind": "message_refused"}]
        summary = seed.run(client, stats, seed.state(client).database)
    assert re.search(r"message_refused\s+1\n", summary)
    assert [r.message["X-LBA-Template"] for r in smtp_server.received] == ["candidature_ack"]
