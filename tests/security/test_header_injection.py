"""Header injection (#9 item 1): no input — raw CR/LF, RFC 2047 encoded words,
Unicode line separators — adds a header or a recipient to an email. Checked
against a real SMTP server (aiosmtpd on 127.0.0.1), through the API and the form
page, and layer by layer: input checks, header text, the verifying policy, and
an envelope that the worker never reads back from headers."""

from __future__ import annotations

import datetime as dt
import json
import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from tests import seed
from tests.smtp_server import SMTPServer
from tests.support import application, appointment, deliver, smtp_client
from widget_server import emails, outbox, tables
from widget_server.app import create_app

ENCODED_WORD_NAME = "Léa =?utf-8?q?=0D=0ABcc:_someone@elsewhere.example?="  # the report's, 53 characters
SHORT_NAME = "Léa =?utf-8?q?=0D=0ABcc:_x@evil.example?="  # within the 50-character limit
INJECTED = "x@evil.example"
RECRUITER = "recrutement@boulangerie.example"
CANDIDATE = "lea.moreau@example.org"


def assert_nothing_injected(server: SMTPServer) -> None:
    for received in server.received:
        assert INJECTED not in received.rcpt_tos
        assert not re.search(rb"^(Bcc|Cc):", received.data, re.MULTILINE | re.IGNORECASE)
        assert received.message["Bcc"] is None and received.message["Cc"] is None
        for name, value in received.message.items():
            assert "\n" not in str(value) and "\r" not in str(value), name
        headers = received.data.split(b"\r\n\r\n", 1)[0]
        # Every header line is a header or a folded continuation, nothing else.
        for line in headers.split(b"\r\n"):
            assert re.match(rb"^([A-Za-z0-9-]+:|[ \t])", line), line


def outbox_rows(client: TestClient) -> list[dict[str, Any]]:
    return seed.fetch_all(client, sa.select(tables.outbox))


# --- the input checks ----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        ENCODED_WORD_NAME,
        SHORT_NAME,
        "Léa =?utf-8?b?DQpCY2M6IHhAZXZpbC5leGFtcGxl?=",
        "Léa\r\nBcc: x@evil.example",
        "Léa\nBcc: x@evil.example",
        "Léa\rBcc: x@evil.example",
        "Léa\u2028Bcc: x@evil.example",
        "Léa\u2029Bcc",
        "Léa\u0085Bcc",
        "Léa\u202eaéL",  # a bidi override
        "Léa\u200b",  # zero width space
        "Léa\ufffe",
        "Léa\uffff",
        "Léa\ufdd0",
        "Léa\U0001fffe",
        "Léa\ud800",  # a lone surrogate, which JSON can carry
        "Léa\x00",
    ],
)
def test_names_that_could_end_a_header_line_are_refused_by_the_api(
    tmp_path: Path, smtp_server: SMTPServer, name: str
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        key = seed.api_key(client)
        for field in ("first_name", "last_name"):
            response = client.post(
                "/api/v1/applications",
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                # ASCII JSON, so a lone surrogate travels as a \ud800 escape.
                content=json.dumps(application(**{field: name})),
            )
            assert response.status_code == 422, response.text
            [error] = response.json()["errors"]
            assert error["field"] == field
            assert "caractères non acceptés" in error["message"]
        assert outbox_rows(client) == []
        assert deliver(client) == 0
    assert smtp_server.received == []


def test_an_encoded_word_split_across_first_and_last_name_is_refused(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        key = seed.api_key(client)
        response = client.post(
            "/api/v1/applications",
            headers={"Authorization": f"Bearer {key}"},
            json=application(first_name="=?utf-8?q?=0D=0ABcc:_x@evil.example", last_name="?="),
        )
        assert response.status_code == 422
        assert {e["field"] for e in response.json()["errors"]} == {"first_name", "last_name"}
        assert outbox_rows(client) == []


@pytest.mark.parametrize(
    "email",
    [
        # Python's own parser reads this Reply-To as "lea@evil.example"@example.org;
        # other mail readers decode it to lea@evil.example.
        "=?utf-8?q?lea=40evil.example?=@example.org",
        "=?x?q?lea=40evil.example=3e=00?=@example.org",
        "lea=?@example.org",
        "lea?=@example.org",
    ],
)
def test_an_encoded_word_in_the_candidates_address_is_refused(
    tmp_path: Path, smtp_server: SMTPServer, email: str
) -> None:
    """The candidate's address goes into the recruiter's Reply-To and the
    acknowledgement's To: no encoded word there either."""
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        seed.formation(client)
        headers = {"Authorization": f"Bearer {seed.api_key(client)}"}
        for path, body in (
            ("/api/v1/applications", application(email=email)),
            ("/api/v1/appointment-requests", appointment(email=email)),
        ):
            response = client.post(path, headers=headers, json=body)
            assert response.status_code == 422, response.text
            [error] = response.json()["errors"]
            assert error["field"] == "email" and "=?" in error["message"]
        check = client.post("/widget/v1/check", data={"field": "email", "value": email})
        assert "=?" in check.json()["message"]
        assert outbox_rows(client) == []


def test_the_encoded_word_name_is_refused_on_the_form_page_and_the_input_kept(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        page = client.get("/widget/v1/candidature", params={"offer_id": seed.OFFER_ID, "caller": "mon-site"})
        token = re.search(r'name="form_token" value="([^"]+)"', page.text)
        assert token is not None
        response = client.post(
            "/widget/v1/candidature",
            data={
                "form_token": token.group(1),
                "offer_id": seed.OFFER_ID,
                "caller": "mon-site",
                "last_name": "Moreau",
                "first_name": SHORT_NAME,
                "email": CANDIDATE,
                "phone": "06 12 34 56 78",
            },
            files={"cv": ("cv.pdf", seed.PDF, "application/pdf")},
        )
        assert response.status_code == 422
        assert "caractères non acceptés" in response.text
        assert "0D=0ABcc:_x@evil.example" in response.text  # what was typed stays
        assert outbox_rows(client) == []
        assert deliver(client) == 0
    assert smtp_server.received == []


def test_the_rdv_api_refuses_the_encoded_word_name(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.formation(client)
        key = seed.api_key(client)
        response = client.post(
            "/api/v1/appointment-requests",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "formation_id": seed.FORMATION_ID,
                "first_name": SHORT_NAME,
                "last_name": "Benali",
                "email": "yanis.benali@example.org",
                "phone": "06 98 76 54 32",
                "role": "student",
                "topics": ["places"],
            },
        )
        assert response.status_code == 422
        assert outbox_rows(client) == []


# --- header text: directory data is not checked like a form ----------------------


def test_an_encoded_word_in_directory_data_reaches_only_the_recruiter(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        # The company name goes into the recruiter's To and the candidate's Subject.
        seed.offer(client, company_name=f"Boulangerie {SHORT_NAME}", title=SHORT_NAME)
        key = seed.api_key(client)
        response = client.post(
            "/api/v1/applications", headers={"Authorization": f"Bearer {key}"}, json=application()
        )
        assert response.status_code == 202, response.text
        assert deliver(client) == 2
    pro, ack = smtp_server.received
    assert pro.rcpt_tos == [RECRUITER]
    assert ack.rcpt_tos == [CANDIDATE]
    assert_nothing_injected(smtp_server)
    assert pro.message["To"].addresses[0].addr_spec == RECRUITER
    # The text stays, harmless, as text.
    assert "Bcc:_x@evil.example" in str(ack.message["Subject"])
    assert [a.get_content() for a in pro.message.iter_attachments()] == [seed.PDF]


def test_header_text_breaks_encoded_words_and_lines() -> None:
    assert emails.header_text(ENCODED_WORD_NAME) == "Léa = ?utf-8?q? =0D=0ABcc:_someone@elsewhere.example? ="
    assert emails.header_text("a=?=b") == "a= ? =b"
    assert emails.header_text("Léa\r\n\u2028Bcc:\tx\u200b\ufffe") == "Léa Bcc: x"


# --- the verifying policy: refused at queue time ---------------------------------


def _raw_message(display_name: str, subject: str = "Candidature") -> EmailMessage:
    message = EmailMessage(policy=emails.SMTP_POLICY)
    if "\r" in subject or "\n" in subject:
        # `set_raw` skips the CR/LF check of `message[...] = …`, as a bug upstream might.
        message.set_raw("Subject", subject)
    else:
        message["Subject"] = subject
    message["From"] = "La bonne alternance <noreply@lba.example>"
    message["To"] = Address(display_name=display_name, username="recrutement", domain="boulangerie.example")
    message["Message-ID"] = make_msgid(domain="lba.example")
    message.set_content("Bonjour")
    return message


@pytest.mark.parametrize(
    ("display_name", "subject"),
    [
        (ENCODED_WORD_NAME, "Candidature"),
        ("Boulangerie Martin", f"Candidature de {ENCODED_WORD_NAME}"),
        ("Boulangerie Martin", "Candidature\r\nBcc: someone@elsewhere.example"),
        ("Boulangerie Martin", "Candidature\nBcc: someone@elsewhere.example"),
        ("Boulangerie Martin", "Candidature\rBcc: someone@elsewhere.example"),
    ],
)
def test_a_message_whose_header_would_break_is_refused_at_queue_time(
    settings: Any, display_name: str, subject: str
) -> None:
    outgoing = emails.Outgoing(_raw_message(display_name, subject), "noreply@lba.example", (RECRUITER,))

    async def scenario(database: Any) -> list[Any]:
        with pytest.raises(emails.EmailRefused) as refused:
            async with database.transaction():
                await outbox.enqueue(database, outgoing, template="candidature_pro", request_id="r1")
        assert refused.value.status == 422
        return list(await database.fetch_all(sa.select(tables.outbox)))

    with TestClient(create_app(settings)) as client:
        assert seed.run(client, scenario, seed.state(client).database) == []


@pytest.mark.parametrize("recipient", ["a@b.example, someone@elsewhere.example", "a@b.example\r\nX", "a b@c"])
def test_an_envelope_address_that_is_not_one_address_is_refused(recipient: str) -> None:
    outgoing = emails.Outgoing(_raw_message("Boulangerie"), "noreply@lba.example", (recipient,))
    with pytest.raises(emails.EmailRefused):
        outgoing.as_bytes()


# --- the worker: the envelope queued, never the stored headers -------------------


def test_the_worker_sends_to_the_queued_envelope_whatever_the_stored_headers_say(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    # A row as an attacker would have liked it stored: extra recipient headers,
    # on a message that gets the CV attached (the path that used to re-parse).
    raw = (
        b"From: La bonne alternance <noreply@labonnealternance.example>\r\n"
        b"To: Boulangerie <" + RECRUITER.encode() + b">\r\n"
        b"Bcc: " + INJECTED.encode() + b"\r\n"
        b"Cc: other@elsewhere.example\r\n"
        b"Subject: Candidature\r\n"
        b"Message-ID: <1@lba.example>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XYZ"\r\n\r\n'
        b"--XYZ\r\nContent-Type: text/plain\r\n\r\nBonjour\r\n--XYZ--\r\n"
    )
    now = dt.datetime.now(dt.UTC)
    with smtp_client(tmp_path, smtp_server) as client:
        seed.insert(
            client,
            tables.cv_files,
            request_id="r1",
            filename="cv.pdf",
            content_type="application/pdf",
            size=len(seed.PDF),
            data=seed.PDF,
        )
        seed.insert(
            client,
            tables.outbox,
            request_id="r1",
            template="candidature_pro",
            envelope_sender="noreply@labonnealternance.example",
            recipient=RECRUITER,
            message_id="<1@lba.example>",
            raw=raw,
            attach_cv=True,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        assert deliver(client) == 1
    [received] = smtp_server.received
    assert received.rcpt_tos == [RECRUITER]
    assert received.mail_from == "noreply@labonnealternance.example"
    assert [a.get_content() for a in received.message.iter_attachments()] == [seed.PDF]
