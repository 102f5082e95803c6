"""The dev mailbox: .eml files written by the dev transport, shown at /dev/mailbox."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests import seed
from tests.support import PRODUCTION, make_settings, template_context, template_name, wait_until
from widget_server import outbox
from widget_server.app import create_app
from widget_server.emails import Outgoing
from widget_server.framing import EMAIL_HTML_POLICY
from widget_server.mailbox import mailbox_dir
from widget_server.mailer import DevMailboxTransport
from widget_server.settings import Settings

PDF = seed.PDF


def message(
    subject: str = "Nouvelle candidature", *, cv: bool = False, template: str = "candidature_pro"
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "La bonne alternance <noreply@lba.example>"
    msg["To"] = "Boulangerie Martin <recrutement@boulangerie.example>"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(email.utils.localtime())
    msg["Message-ID"] = make_msgid(domain="lba.example")
    msg["X-LBA-Template"] = template
    msg.set_content("Bonjour,\nLéa vous écrit : <b>motivée</b>.\nRépondre : https://lba.example/r/abc\n")
    msg.add_alternative(
        "<html><head><title>x</title></head><body><p>Léa vous écrit.</p>"
        '<a href="https://lba.example/r/abc">Répondre au candidat</a>'
        '<a href="javascript:alert(1)">piège</a></body></html>',
        subtype="html",
    )
    if cv:
        msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="CV Léa.pdf")
    return msg


def deliver(settings: Settings, *messages: EmailMessage) -> None:
    transport = DevMailboxTransport(mailbox_dir(settings))

    async def send_all() -> None:
        for msg in messages:
            await transport.send(
                "noreply@lba.example",
                ["recrutement@boulangerie.example"],
                msg.as_bytes(policy=email.policy.SMTP),
            )

    asyncio.run(send_all())


@pytest.fixture
def quiet_settings(tmp_path: Path) -> Settings:
    # Messages are written by the test itself; no worker in the app.
    return make_settings(tmp_path, OUTBOX_WORKER="false")


@pytest.fixture
def quiet_client(quiet_settings: Settings) -> Any:
    with TestClient(create_app(quiet_settings), raise_server_exceptions=False) as client:
        yield client


def listing(client: TestClient) -> list[dict[str, Any]]:
    response = client.get("/dev/api/mailbox")
    assert response.status_code == 200
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


def test_the_dev_transport_writes_whole_eml_files_in_time_order(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    first, second = message("Premier"), message("Second")
    deliver(settings, first, second)
    files = sorted(mailbox_dir(settings).iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"]  # no temporary file left
    parsed = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]
    assert [p["Message-ID"] for p in parsed] == [first["Message-ID"], second["Message-ID"]]
    assert b"\r\n" in files[0].read_bytes()


def test_the_list_shows_the_newest_first(quiet_client: TestClient, quiet_settings: Settings) -> None:
    first = message("Premier", template="candidature_ack")
    deliver(quiet_settings, first)
    # File names carry the delivery time, to the microsecond: deliver the second later.
    [written] = mailbox_dir(quiet_settings).glob("*.eml")
    wait_until(
        lambda: f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}Z" > written.name.split("-")[0],
        "the clock to pass the first delivery",
    )
    second = message("Second")
    deliver(quiet_settings, second)
    messages = listing(quiet_client)
    assert [(m["subject"], m["message_id"], m["template"]) for m in messages] == [
        ("Second", second["Message-ID"], "candidature_pro"),
        ("Premier", first["Message-ID"], "candidature_ack"),
    ]
    assert messages[0]["to"] == "Boulangerie Martin <recrutement@boulangerie.example>"
    assert messages[0]["date"]

    page = quiet_client.get("/dev/mailbox")
    assert page.status_code == 200
    assert template_name(page) == "pages/mailbox.html"
    assert [m["subject"] for m in template_context(page)["messages"]] == ["Second", "Premier"]
    assert f'href="http://testserver/dev/mailbox/{messages[0]["id"]}"' in page.text


def test_a_message_page_shows_text_headers_html_frame_and_attachments(
    quiet_client: TestClient, quiet_settings: Settings
) -> None:
    deliver(quiet_settings, message(cv=True))
    [summary] = listing(quiet_client)
    page = quiet_client.get(f"/dev/mailbox/{summary['id']}")
    assert page.status_code == 200
    assert '<pre class="mailbox-text">Bonjour,\nLéa vous écrit : &lt;b&gt;motivée&lt;/b&gt;.' in page.text
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in page.text
    assert "allow-scripts" not in page.text and "allow-same-origin" not in page.text
    assert f'src="http://testserver/dev/mailbox/{summary["id"]}/html"' in page.text
    assert ("X-LBA-Template", "candidature_pro") in template_context(page)["headers"]
    assert template_context(page)["links"] == [
        {"href": "https://lba.example/r/abc", "text": "Répondre au candidat"}
    ]
    assert "javascript:" not in page.text

    html = quiet_client.get(f"/dev/mailbox/{summary['id']}/html")
    assert html.status_code == 200
    assert html.headers["content-security-policy"] == EMAIL_HTML_POLICY
    assert html.headers["x-content-type-options"] == "nosniff"
    assert '<head><base target="_blank"><title>' in html.text
    assert "Léa vous écrit." in html.text

    download = quiet_client.get(f"/dev/mailbox/{summary['id']}/attachments/0")
    assert download.status_code == 200
    assert download.content == PDF
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"] == "attachment; filename*=UTF-8''CV%20L%C3%A9a.pdf"
    assert quiet_client.get(f"/dev/mailbox/{summary['id']}/attachments/1").status_code == 404

    detail = quiet_client.get(f"/dev/api/mailbox/{summary['id']}").json()
    assert detail["attachments"] == [
        {"n": 0, "filename": "CV Léa.pdf", "content_type": "application/pdf", "size": len(PDF)}
    ]
    assert detail["text"].startswith("Bonjour,\nLéa vous écrit")
    assert detail["links"][0]["href"] == "https://lba.example/r/abc"


def test_a_subject_with_markup_is_shown_escaped(quiet_client: TestClient, quiet_settings: Settings) -> None:
    deliver(quiet_settings, message("<script>alert('x')</script> Candidature"))
    [summary] = listing(quiet_client)
    for path in ("/dev/mailbox", f"/dev/mailbox/{summary['id']}"):
        page = quiet_client.get(path)
        assert "&lt;script&gt;alert(" in page.text
        assert "<script>alert(" not in page.text


@pytest.mark.parametrize(
    "path",
    [
        "/dev/mailbox/inconnu",
        "/dev/mailbox/20260101T000000000000Z-deadbeef",
        "/dev/mailbox/..%2F..%2Fsecret_key",  # stopped by routing: an id has no "/"
        "/dev/mailbox/20260101T000000000000Z-deadbeef/html",
        "/dev/api/mailbox/20260101T000000000000Z-deadbeef",
    ],
)
def test_unknown_messages_are_not_found(quiet_client: TestClient, path: str) -> None:
    assert quiet_client.get(path).status_code == 404


def test_only_files_the_transport_wrote_are_shown(quiet_client: TestClient, quiet_settings: Settings) -> None:
    # Names are the message ids; a file named otherwise (an editor's backup, a
    # file copied there) is none of the mailbox's business.
    deliver(quiet_settings, message())
    (mailbox_dir(quiet_settings) / "notes.eml").write_bytes(message("Pas un message du service").as_bytes())
    assert [m["subject"] for m in listing(quiet_client)] == ["Nouvelle candidature"]
    for path in ("/dev/mailbox/notes", "/dev/api/mailbox/notes", "/dev/mailbox/notes/html"):
        assert quiet_client.get(path).status_code == 404, path


def test_the_mailbox_can_be_emptied(quiet_client: TestClient, quiet_settings: Settings) -> None:
    deliver(quiet_settings, message(), message())
    assert quiet_client.delete("/dev/api/mailbox").status_code == 204
    assert listing(quiet_client) == []
    deliver(quiet_settings, message())
    response = quiet_client.post("/dev/mailbox/vider", follow_redirects=False)
    assert response.status_code == 303
    assert listing(quiet_client) == []
    assert "Aucun message" in quiet_client.get("/dev/mailbox").text


@pytest.mark.parametrize(
    "overrides",
    [
        {"SMTP_URL": "smtp://127.0.0.1:2525"},
        PRODUCTION,
    ],
)
def test_there_is_no_mailbox_when_emails_really_leave_or_in_production(
    tmp_path: Path, overrides: dict[str, str]
) -> None:
    settings = make_settings(tmp_path, OUTBOX_WORKER="false", **overrides)
    deliver(settings, message())  # even if a folder is there
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for path in ("/dev/mailbox", "/dev/api/mailbox"):
            assert client.get(path).status_code == 404
        assert client.delete("/dev/api/mailbox").status_code in (404, 405)


def test_the_worker_inside_the_app_delivers_to_the_mailbox(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, OUTBOX_WORKER="true"))) as client:
        _worker_delivers(client)


def _worker_delivers(client: TestClient) -> None:
    msg = message()
    app: Any = client.app

    async def queue() -> None:
        async with app.state.database.transaction():
            await outbox.enqueue(
                app.state.database,
                Outgoing(msg, "noreply@lba.example", ("recrutement@boulangerie.example",)),
                template="candidature_pro",
                request_id=None,
            )
        app.state.outbox_worker.wake()

    seed.run(client, queue)
    wait_until(lambda: listing(client), "the worker to deliver")
    assert [m["message_id"] for m in listing(client)] == [msg["Message-ID"]]
