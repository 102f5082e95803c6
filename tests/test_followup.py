"""The candidate's follow-up page: a private link in the acknowledgement, a GET
that changes nothing, and a withdrawal that cancels what has not left, tells the
recruiter who already got the request, and stops the reply links."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import html
import json
import re
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from starlette.testclient import TestClient

from tests import seed
from tests.smtp_server import SMTPServer, free_port
from tests.support import (
    application,
    appointment,
    body,
    deliver,
    every_row,
    form_fields,
    links,
    path,
    smtp_client,
    submit_application,
    template_name,
    wait_until,
)
from widget_server import callers, privacy_rights, reminders, retention, tables
from widget_server.local_time import date_fr


def _followup_url(smtp_server: SMTPServer) -> str:
    [ack] = [r for r in smtp_server.received if r.message["X-LBA-Template"].endswith("_ack")]
    [url] = [u for u in links(ack) if "/suivi/" in u]
    return path(url)


def _queued_followup_url(client: TestClient) -> str:
    """The link in the acknowledgement, while it waits in the outbox."""
    [ack] = seed.fetch_all(
        client, sa.select(tables.outbox.c.raw).where(tables.outbox.c.template == "candidature_ack")
    )
    message = email.message_from_bytes(bytes(ack["raw"]), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    match = re.search(r"https?://testserver(/suivi/\S+)", body(message))
    assert match
    return match.group(1)


def _check(page: str) -> str:
    match = re.search(r'name="check" value="([^"]+)"', page)
    assert match, "no check on the page"
    return match.group(1)


def _withdraw(client: TestClient, url: str) -> Any:
    confirm = client.get(url + "/retirer")
    assert confirm.status_code == 200 and template_name(confirm) == "pages/followup_withdraw.html"
    return client.post(url + "/retirer", data={"check": _check(confirm.text)})


def _request(client: TestClient) -> dict[str, Any]:
    [row] = seed.fetch_all(client, tables.contact_requests.select())
    return row


def _outbox(client: TestClient) -> list[tuple[str, str]]:
    rows = seed.fetch_all(
        client, sa.select(tables.outbox.c.template, tables.outbox.c.status).order_by(tables.outbox.c.id)
    )
    return [(r["template"], r["status"]) for r in rows]


def test_the_link_is_in_the_acknowledgement_only_and_a_get_changes_nothing(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        key = seed.api_key(client)
        response = client.post(
            "/api/v1/applications", json=application(), headers={"Authorization": f"Bearer {key}"}
        )
        # The partner's answer never carries the candidate's private link.
        assert response.status_code == 202 and "suivi" not in response.text
        assert set(response.json()) == {"id", "status"}
        deliver(client)
        pro = smtp_server.received[0]
        assert not [u for u in links(pro) if "/suivi/" in u]
        url = _followup_url(smtp_server)
        assert url in body(smtp_server.received[1].message, "plain")

        before = every_row(client)
        page = client.get(url)
        assert page.status_code == 200 and template_name(page) == "pages/followup.html"
        text = html.unescape(page.text)
        assert "Où en est votre candidature" in text
        assert "Remise à Boulangerie" in text and "Retirer ma candidature" in text
        assert page.headers["Cache-Control"] == "no-store"
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert client.head(url).status_code == 200
        confirm = client.get(url + "/retirer")
        assert "Boulangerie" in html.unescape(confirm.text) and "l'a déjà reçue" in html.unescape(
            confirm.text
        )
        assert client.head(url + "/retirer").status_code == 200
        assert every_row(client) == before
        assert _request(client)["status"] == "delivered"


def test_unknown_expired_or_other_tokens_give_a_clear_404(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        url = _followup_url(smtp_server)
        reply = path(next(u for u in links(pro) if "/reply/" in u))
        for wrong in ("/suivi/not-a-real-token", "/suivi/" + reply.rsplit("/", 1)[1], "/suivi/" + "x" * 200):
            for page in (client.get(wrong), client.get(wrong + "/retirer"), client.post(wrong + "/retirer")):
                assert page.status_code == 404
                assert "Ce lien de suivi n'existe pas" in html.unescape(page.text)

        async def expire() -> None:
            await seed.state(client).database.execute(
                tables.reply_tokens.update()
                .where(tables.reply_tokens.c.action == "followup")
                .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
            )

        assert client.get(url).status_code == 200
        seed.run(client, expire)
        expired = client.get(url)
        assert expired.status_code == 404 and "n'est plus valable" in html.unescape(expired.text)


def test_the_link_lives_as_long_as_the_data_and_dies_with_it(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        submit_application(client, smtp_server)
        url = _followup_url(smtp_server)
        [token] = seed.fetch_all(
            client, tables.reply_tokens.select().where(tables.reply_tokens.c.action == "followup")
        )
        retention = dt.timedelta(days=seed.state(client).settings.personal_data_retention_days)
        assert token["expires_at"] - token["created_at"] == retention
        assert token["contact_email"] == "lea.moreau@example.org"
        assert client.get(url).status_code == 200
        seed.run(client, privacy_rights.forget, seed.state(client).database, "Lea.Moreau@example.org")
        assert client.get(url).status_code == 404


def test_withdraw_before_delivery_sends_nothing_and_twice_is_once(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        key = seed.api_key(client)
        client.post("/api/v1/applications", json=application(), headers={"Authorization": f"Bearer {key}"})
        url = _queued_followup_url(client)
        assert "Pas remise" not in html.unescape(client.get(url).text)

        check = _check(client.get(url + "/retirer").text)
        done = client.post(url + "/retirer", data={"check": check})
        assert done.status_code == 200 and "votre candidature est retirée" in html.unescape(done.text)
        row = _request(client)
        assert row["status"] == "withdrawn" and row["withdrawn_at"] is not None
        assert _outbox(client) == [("candidature_pro", "cancelled"), ("candidature_ack", "cancelled")]
        [cv] = seed.fetch_all(client, tables.cv_files.select())
        assert cv["data"] is None and cv["deleted_at"] is not None

        before = every_row(client)
        # The confirmation page posted again (a double click, a second tab).
        again = client.post(url + "/retirer", data={"check": check})
        assert again.status_code == 200 and template_name(again) == "pages/followup.html"
        assert "est retirée" not in html.unescape(again.text)
        assert client.get(url + "/retirer").status_code == 200
        assert every_row(client) == before
        assert deliver(client) == 0
        page = html.unescape(client.get(url).text)
        assert "Candidature retirée" in page and "Retirer ma candidature" not in page
    assert smtp_server.received == []


def test_withdraw_after_delivery_tells_the_recruiter_in_one_line(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        url = _followup_url(smtp_server)
        check = _check(client.get(url + "/retirer").text)
        client.post(url + "/retirer", data={"check": check})
        assert deliver(client) == 1
        client.post(url + "/retirer", data={"check": check})
        assert deliver(client) == 0
    notice = smtp_server.received[2]
    assert len(smtp_server.received) == 3
    assert notice.rcpt_tos == ["recrutement@boulangerie.example"]
    assert notice.message["Subject"] == "Léa Moreau a retiré sa candidature"
    assert notice.message["In-Reply-To"] == pro.message["Message-ID"]
    text = body(notice.message).replace("\r\n", "\n").split("\n--\n")[0].strip()
    # The headline, then one line.
    assert [line for line in text.splitlines() if line] == [
        "Léa Moreau a retiré sa candidature",
        "Sa candidature à l'offre « Vendeur·se en boulangerie », envoyée le "
        f"{date_fr(dt.datetime.now(dt.UTC))}, est retirée : inutile d'y répondre, merci !",
    ]


def test_reply_links_after_withdraw_show_it_and_send_nothing(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        reply = path(next(u for u in links(pro) if "/reply/" in u))
        fields = form_fields(client.get(reply).text)  # the page was open before the withdrawal
        _withdraw(client, _followup_url(smtp_server))
        deliver(client)  # the notice
        shown = client.get(reply)
        assert "Cette demande a été retirée par le candidat" in html.unescape(shown.text)
        posted = client.post(reply, data=fields)
        assert posted.status_code == 200
        assert "Cette demande a été retirée par le candidat" in html.unescape(posted.text)
        row = _request(client)
        assert row["status"] == "withdrawn" and row["answered_at"] is None
        assert deliver(client) == 0
    assert [r.message["X-LBA-Template"] for r in smtp_server.received] == [
        "candidature_pro",
        "candidature_ack",
        "withdrawn",
    ]


def test_a_post_without_the_pages_check_withdraws_nothing(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        url = _followup_url(smtp_server)
        # A check the service signed, for another page.
        other = form_fields(client.get(path(next(u for u in links(pro) if "/reply/" in u))).text)["check"]
        before = every_row(client)
        for data in ({}, {"check": "forged"}, {"check": other}):
            refused = client.post(url + "/retirer", data=data)
            assert refused.status_code == 400 and "a expiré" in html.unescape(refused.text)
        assert every_row(client) == before


def test_an_email_leaving_during_the_withdrawal_is_followed_by_the_notice(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        key = seed.api_key(client)
        client.post("/api/v1/applications", json=application(), headers={"Authorization": f"Bearer {key}"})
        url = _queued_followup_url(client)
        smtp_server.handler.hold_next_recipient(then_accept=True)
        worker = threading.Thread(target=deliver, args=(client,))
        worker.start()
        wait_until(lambda: smtp_server.handler.held_recipient is not None, "the worker to send")
        _withdraw(client, url)  # the recruiter's email is on its way: nothing to cancel
        smtp_server.handler.release()
        worker.join(30)
        deliver(client)
    assert [r.message["X-LBA-Template"] for r in smtp_server.received] == [
        "candidature_pro",
        "candidature_ack",
        "withdrawn",
    ]


def test_the_answer_shows_on_the_page_as_the_candidate_was_told(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        url = _followup_url(smtp_server)
        refuse = next(
            path(u)
            for u in links(pro)
            if "/reply/" in u and 'value="refuse" checked' in client.get(path(u)).text
        )
        fields = form_fields(client.get(refuse).text)
        client.post(refuse, data={**fields, "reasons": ["contrat"]})
        page = html.unescape(client.get(url).text)
        assert "Réponse de Boulangerie" in page
        assert "Léa, Boulangerie" in page and "ne donne pas suite" in page
        assert "Type de contrat inadapté" in page and "Nous ne pouvons pas donner suite" in page
        assert "Retirer ma candidature" not in page
        assert client.get(url + "/retirer").status_code == 200
        assert _request(client)["status"] == "answered"


def test_a_withdrawn_request_still_counts_toward_the_quotas(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.formation(client)
        key = seed.api_key(client)
        headers = {"Authorization": f"Bearer {key}"}
        assert (
            client.post("/api/v1/appointment-requests", json=appointment(), headers=headers).status_code
            == 202
        )
        deliver(client)
        _withdraw(client, _followup_url(smtp_server))
        again = client.post("/api/v1/appointment-requests", json=appointment(), headers=headers)
        assert again.status_code == 409 and again.json()["code"] == "duplicate"


def test_one_notice_however_many_emails_reached_the_recruiter(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        submit_application(client, smtp_server)
        url = _followup_url(smtp_server)
        state = seed.state(client)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=state.settings.reminder_days + 1)
        assert seed.run(client, reminders.send_due_reminders, state.database, state.settings, later) == 1
        smtp_server.handler.hold_next_recipient(then_accept=True)
        worker = threading.Thread(target=deliver, args=(client,), kwargs={"now": later})
        worker.start()
        wait_until(lambda: smtp_server.handler.held_recipient is not None, "the reminder to leave")
        _withdraw(client, url)  # the first email reached them: the notice is queued now
        smtp_server.handler.release()  # and the reminder gets out after all
        worker.join(30)
        deliver(client, now=later)
    assert [r.message["X-LBA-Template"] for r in smtp_server.received] == [
        "candidature_pro",
        "candidature_ack",
        "candidature_pro",  # the reminder
        "withdrawn",
    ]


def test_purge_removes_the_cancelled_emails_with_the_data(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        key = seed.api_key(client)
        client.post("/api/v1/applications", json=application(), headers={"Authorization": f"Bearer {key}"})
        url = _queued_followup_url(client)
        _withdraw(client, url)
        state = seed.state(client)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=state.settings.personal_data_retention_days + 1)
        report = seed.run(client, retention.purge, state.database, state.settings, later)
        assert report.requests_anonymised == 1 and report.emails_deleted == 2
        assert _outbox(client) == []
        assert client.get(url).status_code == 404


def test_a_bounce_and_an_answer_by_another_channel_show_on_the_page(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.formation(client)
        seed.formation(client, "CME-0002", contact_email="rdv@autre-cfa.example")
        key = seed.api_key(client)
        headers = {"Authorization": f"Bearer {key}"}
        client.post("/api/v1/appointment-requests", json=appointment(), headers=headers)
        client.post(
            "/api/v1/appointment-requests", json=appointment(formation_id="CME-0002"), headers=headers
        )
        smtp_server.handler.answer("RCPT", "550 5.1.1 No such user", times=1)
        deliver(client)
        [bounced, answered] = [path(u) for r in smtp_server.received for u in links(r) if "/suivi/" in u]
        page = html.unescape(client.get(bounced).text)
        assert "Pas remise à CFA du Commerce de Bordeaux" in page and "ne fonctionne pas" in page
        assert "Retirer ma demande" not in page

        pro = next(r for r in smtp_server.received if "rdv@autre-cfa.example" in r.rcpt_tos)
        other = next(
            path(u)
            for u in links(pro)
            if "/reply/" in u and 'value="other_channel" checked' in client.get(path(u)).text
        )
        client.post(other, data=form_fields(client.get(other).text))
        page = html.unescape(client.get(answered).text)
        assert "indique vous avoir répondu directement" in page and "Retirer ma demande" not in page


def test_the_partner_gets_the_withdrawn_event_and_its_waiting_events_still_go(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        database = seed.state(client).database
        # A receiver that is down: the `request.delivered` event waits in the outbox.
        made = seed.run(
            client,
            lambda: callers.create(database, "mon-site", webhook_url=f"http://127.0.0.1:{free_port()}/"),
        )
        response = client.post(
            "/api/v1/applications", json=application(), headers={"Authorization": f"Bearer {made.key}"}
        )
        assert response.status_code == 202
        deliver(client)
        _withdraw(client, _followup_url(smtp_server))
        webhooks = seed.fetch_all(
            client,
            sa.select(tables.outbox.c.template, tables.outbox.c.status, tables.outbox.c.raw)
            .where(tables.outbox.c.kind == "webhook")
            .order_by(tables.outbox.c.id),
        )
    assert [(w["template"], w["status"]) for w in webhooks] == [
        ("request.delivered", "pending"),
        ("request.withdrawn", "pending"),
    ]
    event = json.loads(bytes(webhooks[1]["raw"]))
    assert event["type"] == "request.withdrawn" and event["data"]["status"] == "withdrawn"
    assert "suivi" not in json.dumps(event)
