"""Noncharacters and other code points no email can carry (#9 item 2): U+FFFE and
U+FFFF used to crash the MJML rendering (500) on both POST endpoints and on the
quick-reply POST. Free text is cleaned before rendering; names refuse them; any
rendering failure left is a 422, never a 500, and nothing is stored."""

from __future__ import annotations

import json
import re
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
    deliver,
    form_fields,
    links,
    path,
    smtp_client,
    submit_application,
)
from widget_server import emails, tables

UNRENDERABLE = ["\ufffe", "\uffff", "\ufdd0", "\U0010ffff", "\x00", "\x0b", "\ud800", "\u2028"]


def api_post(client: TestClient, url: str, body: dict[str, Any]) -> Any:
    key = seed.api_key(client)
    return client.post(
        url,
        # ASCII JSON, so that a lone surrogate travels as a \\ud800 escape.
        content=json.dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )


def text_of(received: Any) -> str:
    return str(received.message.get_body(("plain",)).get_content())


def html_of(received: Any) -> str:
    return str(received.message.get_body(("html",)).get_content())


def assert_clean(text: str) -> None:
    for char in UNRENDERABLE:
        assert char not in text


def outbox_count(client: TestClient) -> int:
    return len(seed.fetch_all(client, sa.select(tables.outbox.c.id)))


@pytest.mark.parametrize("char", UNRENDERABLE)
def test_an_application_message_is_cleaned_and_sent(
    tmp_path: Path, smtp_server: SMTPServer, char: str
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        response = api_post(client, "/api/v1/applications", application(message=f"Motivée{char} !"))
        assert response.status_code == 202, response.text
        assert deliver(client) == 2
    pro = smtp_server.received[0]
    assert "Motivée !" in text_of(pro) and "Motivée !" in html_of(pro)
    assert_clean(text_of(pro))


@pytest.mark.parametrize("char", ["\ufffe", "\uffff"])
def test_an_appointment_message_is_cleaned_and_sent(
    tmp_path: Path, smtp_server: SMTPServer, char: str
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.formation(client)
        body = appointment(topics=["autre"], message=f"Une question{char}{char} ?")
        response = api_post(client, "/api/v1/appointment-requests", body)
        assert response.status_code == 202, response.text
        assert deliver(client) == 2
    assert "Une question ?" in text_of(smtp_server.received[0])


@pytest.mark.parametrize("url", ["/api/v1/applications", "/api/v1/appointment-requests"])
@pytest.mark.parametrize("char", ["\ufffe", "\uffff"])
def test_a_name_with_a_noncharacter_is_a_422_on_both_api_endpoints(
    tmp_path: Path, smtp_server: SMTPServer, url: str, char: str
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        seed.formation(client)
        body = application if "applications" in url else appointment
        response = api_post(client, url, body(last_name=f"Moreau{char}"))
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == ["last_name"]
        assert outbox_count(client) == 0


def _form(client: TestClient, url: str, params: dict[str, str]) -> dict[str, Any]:
    page = client.get(url, params=params)
    token = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert token is not None
    return {
        "form_token": token.group(1),
        "last_name": "Moreau",
        "first_name": "Léa",
        "email": "lea.moreau@example.org",
        "phone": "06 12 34 56 78",
        **params,
    }


@pytest.mark.parametrize("char", ["\ufffe", "\uffff"])
def test_both_form_pages_clean_the_message_and_refuse_the_name(
    tmp_path: Path, smtp_server: SMTPServer, char: str
) -> None:
    cv = {"cv": ("cv.pdf", seed.PDF, "application/pdf")}
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        seed.formation(client)
        candidature = _form(client, "/widget/v1/candidature", {"offer_id": seed.OFFER_ID})
        rdv = _form(client, "/widget/v1/rdv", {"formation_id": seed.FORMATION_ID})
        rdv.update(role="student", topics="autre")

        refused = client.post(
            "/widget/v1/candidature", data={**candidature, "first_name": f"Léa{char}"}, files=cv
        )
        assert refused.status_code == 422
        assert "caractères non acceptés" in refused.text
        refused = client.post("/widget/v1/rdv", data={**rdv, "first_name": f"Léa{char}"})
        assert refused.status_code == 422
        assert outbox_count(client) == 0

        sent = client.post(
            "/widget/v1/candidature", data={**candidature, "message": f"Bonjour{char} !"}, files=cv
        )
        assert sent.status_code == 200 and "bien été envoyée" in sent.text
        sent = client.post("/widget/v1/rdv", data={**rdv, "message": f"Une question{char} ?"})
        assert sent.status_code == 200, sent.text
        assert deliver(client) == 4
    texts = [text_of(r) for r in smtp_server.received]
    assert any("Bonjour !" in t for t in texts) and any("Une question ?" in t for t in texts)
    for text in texts:
        assert_clean(text)


@pytest.mark.parametrize("char", ["\ufffe", "\uffff", "\x00"])
def test_the_reply_post_cleans_the_answer(tmp_path: Path, smtp_server: SMTPServer, char: str) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        accept = next(
            path(u)
            for u in links(pro)
            if "/reply/" in u and 'value="accept" checked' in client.get(path(u)).text
        )
        fields = form_fields(client.get(accept).text)
        fields["message_accept"] = f"Venez nous voir{char} lundi{char}."
        response = client.post(accept, data=fields)
        assert response.status_code == 200, response.text
        assert deliver(client) == 1
    answer = smtp_server.received[-1]
    assert "Venez nous voir lundi." in text_of(answer) and "Venez nous voir lundi." in html_of(answer)


def test_a_rendering_failure_is_a_422_not_a_500() -> None:
    # What the cleaning would let through, should it ever miss something.
    with pytest.raises(emails.EmailRefused) as refused:
        emails.render("answer", _answer_context("Bonjour\ufffe"))
    assert refused.value.status == 422
    with pytest.raises(emails.EmailRefused):
        emails.render("answer", _answer_context("Bonjour\ud800"))


def _answer_context(message: str) -> dict[str, Any]:
    return {
        "operator_name": "Service",
        "public_url": "http://testserver",
        "kind": "candidature",
        "request_id": "r1",
        "caller": "mon-site",
        "candidate": {
            "first_name": "Léa",
            "last_name": "Moreau",
            "email": "lea@example.org",
            "phone": "+33612345678",
            "role": None,
        },
        "message": None,
        "topics": [],
        "target": {"kind": "offer", "name": "Vendeur", "company_name": "Boulangerie", "city": "Lyon"},
        "spontaneous": False,
        "sent_on": seed.NOW,
        "reminder": False,
        "answer": {"subject": "Suite", "headline": "Bonne nouvelle", "intro": "", "outro": ""},
        "answer_message": message,
        "reasons": [],
        "pro_email": None,
        "pro_phone": None,
    }
