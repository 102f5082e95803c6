"""Quick replies: links that scanners open change nothing; one POST answers once."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import json
from pathlib import Path

import httpx2
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from tests import seed
from tests.smtp_server import SMTPServer
from tests.support import (
    appointment,
    body,
    deliver,
    form_fields,
    links,
    path,
    smtp_client,
    snapshot,
    submit_application,
)
from widget_server import tables


def test_scanner_visits_change_nothing_then_one_post_answers_once(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        ack_id = str(smtp_server.received[1].message["Message-ID"])
        before = snapshot(client)
        urls = links(pro)
        assert [u for u in urls if "/reply/" in u] and [u for u in urls if "/optout/" in u]
        for url in urls:
            assert client.get(path(url)).status_code == 200
            assert client.head(path(url)).status_code == 200
        assert snapshot(client) == before

        [accept] = [
            u
            for u in urls
            if "/reply/" in u and 'name="answer" value="accept" checked' in client.get(path(u)).text
        ]
        page = client.get(path(accept)).text
        assert "Léa Moreau" in page and "Je suis motivée" in page
        fields = form_fields(page)
        assert fields["message_accept"].startswith("Bonjour Léa,")
        response = client.post(path(accept), data={**fields, "pro_phone": "04 72 00 00 00"})
        assert response.status_code == 200
        assert "Votre réponse a été envoyée" in response.text
        replay = client.post(path(accept), data=fields)
        assert "déjà reçu une réponse" in replay.text
        # Any button of the same request now shows the answer.
        other = next(u for u in urls if "/reply/" in u and u != accept)
        assert "déjà reçu une réponse" in client.get(path(other)).text
        delivered = deliver(client)
        assert delivered == 1
        [stored] = seed.fetch_all(client, tables.contact_requests.select())
        assert stored["status"] == "answered" and stored["answer"] == "accept"

    answer = smtp_server.received[2]
    assert answer.rcpt_tos == ["lea.moreau@example.org"]
    assert answer.message["Subject"].startswith("Suite donnée à votre candidature")
    assert answer.message["In-Reply-To"] == ack_id
    assert answer.message["Reply-To"].addresses[0].addr_spec == "recrutement@boulangerie.example"
    text = body(answer.message, "plain")
    assert "Votre profil nous intéresse" in text and "04 72 00 00 00" in text
    assert len(smtp_server.received) == 3


def test_refusal_carries_the_chosen_reasons(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        refuse = next(
            u for u in links(pro) if "/reply/" in u and 'value="refuse" checked' in client.get(path(u)).text
        )
        fields = form_fields(client.get(path(refuse)).text)
        response = client.post(path(refuse), data={**fields, "reasons": ["competences", "contrat"]})
        assert "Le candidat a été prévenu" in response.text
        deliver(client)
    answer = smtp_server.received[-1].message
    text = body(answer, "plain")
    assert "Compétences insuffisantes ou non adaptées" in text
    assert "Type de contrat inadapté" in text
    assert "Manque de personnalisation" not in text
    assert answer["Reply-To"] is None


@pytest.mark.parametrize(
    ("action", "emails", "expected"),
    [
        ("unreachable", 1, "01 99 00 12 34"),  # told to call the CFA back, with its phone
        ("other_channel", 0, None),
        ("reply", 1, "Merci pour vos questions"),
    ],
)
def test_rdv_answers(
    tmp_path: Path, smtp_server: SMTPServer, action: str, emails: int, expected: str | None
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.formation(client)
        key = seed.api_key(client)
        client.post(
            "/api/v1/appointment-requests", json=appointment(), headers={"Authorization": f"Bearer {key}"}
        )
        deliver(client)
        pro = smtp_server.received[0]
        url = next(
            u
            for u in links(pro)
            if "/reply/" in u and f'value="{action}" checked' in client.get(path(u)).text
        )
        fields = form_fields(client.get(path(url)).text)
        if action == "reply":
            fields["message_reply"] = fields["message_reply"].replace(
                "\n\n\n\n", "\n\nIl reste 3 places en septembre.\n\n"
            )
        assert client.post(path(url), data=fields).status_code == 200
        assert deliver(client) == emails
        [stored] = seed.fetch_all(client, tables.contact_requests.select())
        assert stored["answer"] == action
    if expected:
        text = body(smtp_server.received[-1].message, "plain")
        assert expected in text


def test_answer_without_message_shows_the_error_and_keeps_input(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        url = next(
            u for u in links(pro) if "/reply/" in u and 'value="accept" checked' in client.get(path(u)).text
        )
        fields = form_fields(client.get(path(url)).text)
        response = client.post(path(url), data={**fields, "message_accept": " ", "pro_email": "pas-un-email"})
        assert response.status_code == 422
        assert 'id="message_accept-error"' in response.text
        assert 'value="pas-un-email"' in response.text
        forged = client.post(path(url), data={**fields, "check": "forged"})
        assert forged.status_code == 400
        assert seed.fetch_all(client, tables.contact_requests.select())[0]["answered_at"] is None


def test_unknown_and_expired_tokens(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        unknown = client.get("/reply/not-a-real-token")
        assert unknown.status_code == 404 and "n'existe pas" in html.unescape(unknown.text)
        assert client.post("/reply/not-a-real-token", data={}).status_code == 404

        async def expire() -> None:
            await seed.state(client).database.execute(
                tables.reply_tokens.update().values(
                    expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
                )
            )

        seed.run(client, expire)
        url = next(u for u in links(pro) if "/reply/" in u)
        expired = client.get(path(url))
        assert expired.status_code == 410 and "expiré" in html.unescape(expired.text)
        assert "Traceback" not in expired.text


def test_two_posts_at_once_send_one_email(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        url = path(next(u for u in links(pro) if "/reply/" in u))
        fields = form_fields(client.get(url).text)

        async def double_click() -> list[str]:
            transport = httpx2.ASGITransport(app=client.app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
                responses = await asyncio.gather(c.post(url, data=fields), c.post(url, data=fields))
            return [r.text for r in responses]

        pages = seed.run(client, double_click)
        assert sorted("déjà reçu une réponse" in page for page in pages) == [False, True]
        templates = [r["template"] for r in seed.fetch_all(client, sa.select(tables.outbox.c.template))]
        assert [t for t in templates if t.startswith("answer_")] == [f"answer_{fields['answer']}"]


def test_the_recruiter_may_switch_answers_and_the_message_is_escaped(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        # The "Répondre au candidat" button, then a change of mind on the page.
        url = path(
            next(
                u
                for u in links(pro)
                if "/reply/" in u and 'value="accept" checked' in client.get(path(u)).text
            )
        )
        page = client.get(url)
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "<script" not in page.text.replace(
            '<script src="/widget/v1/assets/', ""
        )  # no inline script to auto-submit anything
        fields = form_fields(page.text)
        fields.update(
            answer="refuse", message_refuse='Désolé <b>"non"</b> & merci', reasons=["metier", "inconnue"]
        )
        assert client.post(url, data=fields).status_code == 200
        [row] = seed.fetch_all(client, tables.contact_requests.select())
        assert row["answer"] == "refuse"
        assert json.loads(row["answer_details"]) == {
            "by": "recrutement@boulangerie.example",
            "via": "accept",
            "reasons": ["Notre entreprise ne recrute pas sur le métier recherché"],
        }
        deliver(client)
    message = smtp_server.received[-1].message
    html_part = body(message, "html")
    text = body(message, "plain")
    assert (
        "&lt;b&gt;&#34;non&#34;&lt;/b&gt; &amp; merci" in html_part
        or "&lt;b&gt;&quot;non&quot;&lt;/b&gt; &amp; merci" in html_part
    )
    assert "<b>" not in html_part
    assert 'Désolé <b>"non"</b> & merci' in text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"answer": "optout"}, "answer"),
        ({"answer": "accept", "message_accept": "x" * 3001}, "message_accept"),
        ({"answer": "accept", "pro_phone": "12"}, "pro_phone"),
    ],
)
def test_invalid_answers_are_shown_inline_and_nothing_is_sent(
    tmp_path: Path, smtp_server: SMTPServer, change: dict[str, str], field: str
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        url = path(next(u for u in links(pro) if "/reply/" in u))
        before = snapshot(client)
        response = client.post(url, data={**form_fields(client.get(url).text), **change})
        assert response.status_code == 422
        assert f'href="#{field}"' in response.text
        assert snapshot(client) == before


def test_an_expired_link_changes_nothing_whatever_the_method(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        url = path(next(u for u in links(pro) if "/reply/" in u))
        fields = form_fields(client.get(url).text)
        seed.run(
            client,
            seed.state(client).database.execute,
            tables.reply_tokens.update().values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)),
        )
        before = snapshot(client)
        assert client.head(url).status_code == 410
        posted = client.post(url, data=fields)
        assert posted.status_code == 410 and "text/html" in posted.headers["content-type"]
        assert snapshot(client) == before


def rdv_reply_link(client: TestClient, smtp_server: SMTPServer) -> str:
    seed.formation(client)
    key = seed.api_key(client)
    client.post(
        "/api/v1/appointment-requests", json=appointment(), headers={"Authorization": f"Bearer {key}"}
    )
    deliver(client)
    return next(
        path(u)
        for u in links(smtp_server.received[0])
        if "/reply/" in u and 'value="reply" checked' in client.get(path(u)).text
    )


@pytest.mark.parametrize(
    "blank",
    [
        "",  # the default text, posted unchanged
        " \t \u00a0\n\n ",  # only spaces and line breaks in the blank
        "\n\n.\n\n",  # punctuation only
    ],
)
def test_an_rdv_answer_with_no_text_of_its_own_is_refused(
    tmp_path: Path, smtp_server: SMTPServer, blank: str
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        url = rdv_reply_link(client, smtp_server)
        fields = form_fields(client.get(url).text)
        assert "\n\n\n\n" in fields["message_reply"]  # the blank in the middle
        fields["message_reply"] = fields["message_reply"].replace("\n\n\n\n", f"\n\n{blank}\n\n")
        before = snapshot(client)
        response = client.post(url, data=fields)
        assert response.status_code == 422
        page = html.unescape(response.text)
        assert "ne contient que la salutation et la signature" in page
        assert 'href="#message_reply"' in response.text and 'aria-invalid="true"' in response.text
        assert fields["message_reply"].split("\n")[0] in page  # the text is kept
        assert snapshot(client) == before
        assert deliver(client) == 0


def test_the_template_parts_alone_whatever_their_case_or_order_are_no_answer(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        url = rdv_reply_link(client, smtp_server)
        fields = form_fields(client.get(url).text)
        parts = [line for line in fields["message_reply"].split("\n") if line]
        fields["message_reply"] = "\n".join(line.upper() + "  " for line in reversed(parts))
        assert client.post(url, data=fields).status_code == 422
        # One sentence of its own is an answer.
        fields["message_reply"] = fields["message_reply"] + "\nIl reste 3 places en septembre."
        assert client.post(url, data=fields).status_code == 200
        assert deliver(client) == 1
    assert "Il reste 3 places en septembre." in body(smtp_server.received[-1].message, "plain")


def test_an_accept_reduced_to_greeting_and_signature_is_refused(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        url = next(
            path(u)
            for u in links(pro)
            if "/reply/" in u and 'value="accept" checked' in client.get(path(u)).text
        )
        fields = form_fields(client.get(url).text)
        fields["message_accept"] = "Bonjour Léa,\n\n\nÀ bientôt,\nBoulangerie Martin"
        response = client.post(url, data=fields)
        assert response.status_code == 422
        assert "ne contient que la salutation et la signature" in html.unescape(response.text)
        assert seed.fetch_all(client, tables.contact_requests.select())[0]["answered_at"] is None


@pytest.mark.parametrize(
    ("answered_at", "shown"),
    [
        (dt.datetime(2026, 11, 29, 0, 55, tzinfo=dt.UTC), "le 29/11/2026 à 01:55"),  # winter: UTC+1
        (dt.datetime(2026, 7, 1, 22, 30, tzinfo=dt.UTC), "le 02/07/2026 à 00:30"),  # summer: UTC+2, next day
    ],
)
def test_the_answer_reads_as_a_sentence_in_paris_time(
    tmp_path: Path, smtp_server: SMTPServer, answered_at: dt.datetime, shown: str
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        url = next(
            path(u)
            for u in links(pro)
            if "/reply/" in u and 'value="accept" checked' in client.get(path(u)).text
        )
        client.post(url, data=form_fields(client.get(url).text))
        seed.run(
            client,
            seed.state(client).database.execute,
            tables.contact_requests.update().values(answered_at=answered_at, created_at=answered_at),
        )
        page = html.unescape(client.get(url).text)
    assert f"Vous avez répondu favorablement {shown}." in page
    assert f"Reçue {shown}" in page
    assert "UTC" not in page
