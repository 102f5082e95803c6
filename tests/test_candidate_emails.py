"""What candidates read: the acknowledgement is a copy of what they sent (said
naturally whatever they sent), with the privacy and follow-up links; a positive
answer says how to reach the recruiter or the CFA."""

from __future__ import annotations

import datetime as dt
import html
from email.message import EmailMessage
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests import seed
from tests.email_kinds import html_links, parse
from tests.support import application, appointment, body, form_fields, path
from widget_server import emails, tables
from widget_server.contact_requests import request_context
from widget_server.kinds import KINDS

PRIVACY_URL = "http://testserver/confidentialite"


def queued(client: TestClient, template: str) -> list[EmailMessage]:
    rows = seed.fetch_all(client, tables.outbox.select().order_by(tables.outbox.c.id))
    return [parse(bytes(r["raw"])) for r in rows if r["template"] == template]


def submit(client: TestClient, url: str, request: dict[str, Any]) -> None:
    key = seed.api_key(client)
    response = client.post(url, json=request, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 202, response.text


def both_parts(message: EmailMessage) -> tuple[str, str]:
    """The text part and the HTML part, its entities decoded (`&#39;`: `'`)."""
    return body(message), html.unescape(body(message, "html"))


def test_the_acknowledgement_is_a_copy_of_the_application(client: TestClient) -> None:
    seed.offer(client)
    message = "Je suis motivée !\nDisponible dès lundi."
    submit(client, "/api/v1/applications", application(message=message, cv_filename="Mon CV 2026.pdf"))
    [ack] = queued(client, "candidature_ack")
    text, page = both_parts(ack)
    assert "Le recruteur a reçu vos coordonnées, votre CV et votre message :" in text
    assert "Le recruteur a reçu vos coordonnées, votre CV et votre message :" in page
    assert "Votre CV : Mon-CV-2026.pdf" in text  # the name as the recruiter receives it
    assert "Mon-CV-2026.pdf" in page
    assert "Je suis motivée !\r\nDisponible dès lundi." in text
    assert "Je suis motivée !<br />Disponible dès lundi." in page
    for part in (text, page):
        assert "lea.moreau@example.org" in part and "06 12 34 56 78" in part
    assert PRIVACY_URL in html_links(ack) and f"Vos données personnelles : {PRIVACY_URL}" in text
    # The follow-up link, in both parts, after what happens next.
    [followup] = [u for u in html_links(ack) if "/suivi/" in u]
    assert followup in text and text.index("Et maintenant ?") < text.index(followup)


def test_without_a_message_nothing_speaks_of_one(client: TestClient) -> None:
    seed.offer(client)
    submit(client, "/api/v1/applications", application(message=None))
    [ack] = queued(client, "candidature_ack")
    for part in both_parts(ack):
        assert "Le recruteur a reçu vos coordonnées et votre CV :" in part
        assert "message" not in part.replace("ce message", "")  # the footer's "ignorez ce message"
        assert "votre CV." not in part and ", votre CV" not in part


def test_what_was_typed_is_escaped_in_the_copy(client: TestClient) -> None:
    seed.offer(client)
    submit(client, "/api/v1/applications", application(message='<a href="https://evil.example">x</a>'))
    [ack] = queued(client, "candidature_ack")
    page = body(ack, "html")
    assert "evil.example" not in " ".join(html_links(ack))
    assert "&lt;a href=" in page


@pytest.mark.parametrize(
    ("changes", "sentence", "absent"),
    [
        ({}, "L'établissement a reçu vos coordonnées, vos questions et votre message :", "Votre CV"),
        ({"message": None}, "L'établissement a reçu vos coordonnées et vos questions :", "Votre message"),
    ],
)
def test_the_rdv_acknowledgement_copies_the_role_and_topics(
    client: TestClient, changes: dict[str, Any], sentence: str, absent: str
) -> None:
    seed.formation(client)
    submit(client, "/api/v1/appointment-requests", appointment(role="parent", **changes))
    [ack] = queued(client, "rdv_ack")
    for part in both_parts(ack):
        assert sentence in part and absent not in part
        assert "parent d'un futur apprenti" in part
        assert "Places disponibles, Horaires / rythme de la formation" in part
    assert ("Reste-t-il des places" in body(ack)) is ("message" not in changes)


def render_ack(kind: str, **context: Any) -> emails.Rendered:
    """An acknowledgement rendered from the context the service builds."""
    row = {
        "id": "r1",
        "caller": "mon-site",
        "first_name": "Léa",
        "last_name": "Moreau",
        "email": "lea@example.org",
        "phone": "0612345678",
        "role": "student" if kind == "rdv" else None,
        "topics": '["places"]' if kind == "rdv" else None,
        "message": None,
        "created_at": dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC),
    }
    view = {
        "kind": "formation" if kind == "rdv" else "offer",
        "name": "Boulanger",
        "company_name": "Boulangerie",
        "city": "Lyon",
        "phone": None,
    }
    base = request_context(KINDS[kind], row, view, "http://testserver")
    return emails.render(
        KINDS[kind].ack_email,
        {
            "operator_name": "Service",
            "public_url": "http://testserver",
            "cv_filename": None,
            **base,
            **context,
        },
    )


@pytest.mark.parametrize(
    ("context", "sentence"),
    [
        ({"cv_filename": "cv.pdf", "message": "Bonjour"}, "vos coordonnées, votre CV et votre message :"),
        ({"cv_filename": "cv.pdf"}, "vos coordonnées et votre CV :"),
        ({"message": "Bonjour"}, "vos coordonnées et votre message :"),
        ({}, "Le recruteur a reçu vos coordonnées :"),
    ],
)
def test_every_combination_reads_as_a_sentence(context: dict[str, Any], sentence: str) -> None:
    rendered = render_ack("candidature", **context)
    for part in (rendered.text, rendered.html):
        assert sentence in part
        assert ("Votre CV" in part) is ("cv_filename" in context)
        assert ("Votre message" in part) is ("message" in context)


@pytest.mark.parametrize("kind", ["candidature", "rdv"])
def test_the_follow_up_link_is_there_when_it_exists(kind: str) -> None:
    url = "http://testserver/suivi/abc123"
    rendered = render_ack(kind, followup_url=url)
    assert url in rendered.text and f'href="{url}"' in rendered.html
    assert "Suivez-la sur votre page de suivi" in rendered.text
    assert f'Suivez-la sur <a href="{url}">votre page de suivi</a>' in rendered.html
    without = render_ack(kind)
    assert "/suivi/" not in without.text + without.html and "Suivez" not in without.text + without.html


def answer_from(client: TestClient, action: str, **changes: Any) -> EmailMessage:
    [pro] = queued(client, "candidature_pro")
    url = next(
        u
        for u in html_links(pro)
        if "/reply/" in u and f'value="{action}" checked' in client.get(path(u)).text
    )
    fields = {**form_fields(client.get(path(url)).text), **changes}
    assert client.post(path(url), data=fields).status_code == 200
    [answer] = queued(client, f"answer_{action}")
    return answer


def test_a_positive_answer_says_how_to_reach_the_recruiter(client: TestClient) -> None:
    seed.offer(client)
    submit(client, "/api/v1/applications", application())
    answer = answer_from(client, "accept", pro_email="Julie@Boulangerie.example", pro_phone="04 72 00 00 00")
    # Replying to the email writes to the address the recruiter gave.
    assert answer["Reply-To"].addresses[0].addr_spec == "Julie@boulangerie.example"
    text, page = both_parts(answer)
    assert (
        "Répondez simplement à cet e-mail : votre réponse arrivera directement à Julie@boulangerie.example"
        in text
    )
    assert "Vous pouvez aussi appeler le 04 72 00 00 00." in text
    assert "mailto:Julie@boulangerie.example" in page and 'href="tel:+33472000000"' in page


def test_without_a_contact_given_the_reply_goes_to_the_offer_contact(client: TestClient) -> None:
    seed.offer(client)
    submit(client, "/api/v1/applications", application())
    answer = answer_from(client, "accept")
    assert answer["Reply-To"].addresses[0].addr_spec == "recrutement@boulangerie.example"
    text = body(answer)
    assert "votre réponse arrivera directement à recrutement@boulangerie.example." in text
    assert "appeler" not in text


def test_a_refusal_asks_for_no_reply(client: TestClient) -> None:
    seed.offer(client)
    submit(client, "/api/v1/applications", application())
    answer = answer_from(client, "refuse")
    assert answer["Reply-To"] is None
    for part in both_parts(answer):
        assert "Pour lui répondre" not in part and "Répondez simplement" not in part
