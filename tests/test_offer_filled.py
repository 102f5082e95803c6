""" "L'offre est pourvue": a smaller third action of the email about an
application to a posted offer; its link shows, its page's POST closes the offer
for every partner, answers this candidate, and the other pending ones only when
the recruiter ticks the box; once."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import html
import re
from pathlib import Path
from typing import Any

import httpx2
import sqlalchemy as sa
from starlette.testclient import TestClient

from tests import seed
from tests.smtp_server import Received, SMTPServer
from tests.support import (
    application,
    appointment,
    body,
    deliver,
    email_anchors,
    form_fields,
    links,
    path,
    smtp_client,
    snapshot,
)
from tests.webhook_receiver import running
from widget_server import callers, directory, tables

RECRUITER = "recrutement@boulangerie.example"
OFFER_HEADER = (
    "offer_id,title,siret,company_name,address,postcode,city,status,posted_on,expires_on,contact_email"
)


def apply(client: TestClient, email: str, first_name: str, **overrides: Any) -> str:
    key = seed.api_key(client)
    response = client.post(
        "/api/v1/applications",
        json=application(email=email, first_name=first_name, **overrides),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def pro_email(smtp: SMTPServer, candidate: str) -> Received:
    [found] = [
        r
        for r in smtp.received
        if r.rcpt_tos == [RECRUITER] and r.message["Reply-To"].addresses[0].addr_spec == candidate
    ]
    return found


def filled_link(received: Received) -> str:
    [url] = [path(u) for u in links(received) if "/filled/" in u]
    return url


def answers_to(smtp: SMTPServer, candidate: str) -> list[Received]:
    return [r for r in smtp.received if r.rcpt_tos == [candidate] and r.message["X-LBA-Template"] == "answer"]


def eligibility(client: TestClient) -> dict[str, Any]:
    answer = client.get("/api/v1/eligibility", params={"target": f"offer:{seed.OFFER_ID}"})
    return dict(answer.json()["results"][0])


def requests_by_email(client: TestClient) -> dict[str, dict[str, Any]]:
    return {r["email"]: r for r in seed.fetch_all(client, tables.contact_requests.select())}


def outbox_templates(client: TestClient) -> list[str]:
    return [r["template"] for r in seed.fetch_all(client, sa.select(tables.outbox.c.template))]


def check_of(client: TestClient, url: str) -> str:
    """The signed check of the page at `url`, which its POST sends back."""
    [check] = re.findall(r'name="check" value="([^"]+)"', client.get(url).text)
    return str(check)


def confirm(client: TestClient, url: str, *, others: bool, check: str | None = None) -> httpx2.Response:
    data = {"check": check or check_of(client, url), **({"others": "yes"} if others else {})}
    return client.post(url, data=data)


def reimport_as_active(client: TestClient, tmp_path: Path) -> None:
    """The partner's next directory file still lists the offer as active."""
    file = tmp_path / "offers.csv"
    file.write_text(
        f"{OFFER_HEADER}\n{seed.OFFER_ID},Vendeur·se en boulangerie,{seed.SIRET},Boulangerie Martin,"
        f"3 rue du Four,69003,Lyon,active,2026-10-01,,{RECRUITER}\n",
        encoding="utf-8",
    )
    report = seed.run(client, directory.import_file, seed.state(client).database, "offers", file)
    assert report.kept_closed == {"filled": 1}


def test_only_the_email_about_a_posted_offer_has_the_action_smaller_after_the_answers(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        seed.company(client)
        seed.formation(client)
        apply(client, "lea.moreau@example.org", "Léa")
        apply(client, "sam.roux@example.org", "Sam", offer_id=None, siret=seed.SIRET)
        key = seed.api_key(client)
        client.post(
            "/api/v1/appointment-requests", json=appointment(), headers={"Authorization": f"Bearer {key}"}
        )
        deliver(client)
    offer_email = pro_email(smtp_server, "lea.moreau@example.org")
    found = email_anchors(offer_email.message)
    answers = [a for a in found if "/reply/" in a["href"]]
    [filled] = [a for a in found if "/filled/" in a["href"]]
    assert [a["text"] for a in answers] == ["Répondre au candidat", "Refuser la candidature"]
    assert all(a["button"] for a in answers)
    # Smaller, a plain link, after the answers.
    assert filled["text"] == "L'offre est pourvue" and not filled["button"]
    assert filled["size"] < min(a["size"] for a in answers)
    assert found.index(filled) > max(found.index(a) for a in answers)
    text = body(offer_email.message)
    assert text.index("Refuser la candidature :") < text.index("L'offre est pourvue")
    assert "- L'offre est pourvue" not in text  # not in the list of answers

    others = [
        r
        for r in smtp_server.received
        if r.message["X-LBA-Template"] in ("candidature_pro", "rdv_pro") and r is not offer_email
    ]
    assert len(others) == 2
    for received in others:  # a spontaneous application, an rdv request
        assert not [u for u in links(received) if "/filled/" in u]
        assert "pourvue" not in body(received.message) and "pourvue" not in body(received.message, "html")


def test_get_changes_nothing_post_closes_everywhere_and_answers_this_candidate_only(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        apply(client, "lea.moreau@example.org", "Léa")
        apply(client, "sam.roux@example.org", "Sam")
        deliver(client)
        url = filled_link(pro_email(smtp_server, "lea.moreau@example.org"))
        assert eligibility(client)["eligible"] is True  # and now in the eligibility cache
        before = snapshot(client)
        page = client.get(url)
        assert page.status_code == 200 and client.head(url).status_code == 200
        assert "Prévenir aussi l'autre candidat" in html.unescape(page.text)
        assert page.headers["cache-control"] == "no-store"
        assert snapshot(client) == before
        assert eligibility(client)["eligible"] is True

        check = check_of(client, url)
        done = confirm(client, url, others=False, check=check)
        assert done.status_code == 200
        assert "C'est fait : l'offre est fermée" in html.unescape(done.text)
        assert "Léa Moreau a reçu un e-mail" in html.unescape(done.text)
        assert "1 autre candidature attend encore votre réponse" in html.unescape(done.text)
        result = eligibility(client)
        assert result["eligible"] is False and result["reason"] == "closed"
        [offer] = seed.fetch_all(client, tables.offers.select())
        assert (offer["status"], offer["closed_reason"]) == ("closed", "filled")
        assert offer["closed_at"] is not None
        requests = requests_by_email(client)
        assert (
            requests["lea.moreau@example.org"]["status"],
            requests["lea.moreau@example.org"]["answer"],
        ) == (
            "answered",
            "filled",
        )
        assert requests["sam.roux@example.org"]["answered_at"] is None
        refused = client.post(
            "/api/v1/applications",
            json=application(email="noa.petit@example.org", first_name="Noa"),
            headers={"Authorization": f"Bearer {seed.api_key(client)}"},
        )
        assert refused.status_code == 409 and refused.json()["code"] == "closed"

        # The partner's next import lists the offer as active: it stays closed.
        reimport_as_active(client, tmp_path)
        assert eligibility(client)["reason"] == "closed"
        assert deliver(client) == 1

        # Once: a second POST, another visit, a replay send nothing more.
        again = confirm(client, url, others=True, check=check)
        assert again.status_code == 200 and "déjà été déclarée pourvue" in html.unescape(again.text)
        assert "Rien de plus n'a été envoyé" in html.unescape(again.text)
        assert deliver(client) == 0
        assert outbox_templates(client).count("answer_filled") == 1
        assert requests_by_email(client)["sam.roux@example.org"]["answered_at"] is None
    [answer] = answers_to(smtp_server, "lea.moreau@example.org")
    assert answer.message["Subject"] == "Réponse à votre candidature – Boulangerie Martin"
    assert answer.message["Reply-To"] is None
    text = body(answer.message)
    assert "Léa, le poste « Vendeur·se en boulangerie » est pourvu" in text
    assert "Merci de l'intérêt que vous lui avez porté" in text
    assert answers_to(smtp_server, "sam.roux@example.org") == []


def test_the_ticked_box_answers_the_other_pending_applications_only(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        seed.offer(client, "OFF-002", title="Autre offre")
        lea = "lea.moreau@example.org"
        apply(client, lea, "Léa")
        apply(client, "sam.roux@example.org", "Sam")  # pending: told
        apply(client, "noa.petit@example.org", "Noa")  # answered already: not told again
        apply(client, "eva.blanc@example.org", "Eva")  # the recruiter's email bounced: not pending
        apply(client, "tom.vidal@example.org", "Tom", offer_id="OFF-002")  # another offer
        deliver(client)
        noa = pro_email(smtp_server, "noa.petit@example.org")
        refuse = next(
            path(u)
            for u in links(noa)
            if "/reply/" in u and 'value="refuse" checked' in client.get(path(u)).text
        )
        client.post(refuse, data=form_fields(client.get(refuse).text))
        requests = tables.contact_requests
        seed.run(
            client,
            seed.state(client).database.execute,
            requests.update().where(requests.c.email == "eva.blanc@example.org").values(status="bounced"),
        )
        deliver(client)
        url = filled_link(pro_email(smtp_server, lea))
        assert "Prévenir aussi l'autre candidat" in html.unescape(client.get(url).text)  # Sam only

        done = confirm(client, url, others=True)
        assert "1 autre candidat a reçu le même e-mail" in html.unescape(done.text)
        deliver(client)
        rows = requests_by_email(client)
        assert {e: (r["answer"], r["status"]) for e, r in rows.items()} == {
            lea: ("filled", "answered"),
            "sam.roux@example.org": ("filled", "answered"),
            "noa.petit@example.org": ("refuse", "answered"),
            "eva.blanc@example.org": (None, "bounced"),
            "tom.vidal@example.org": (None, "delivered"),
        }
        # Sam's own buttons now show the answer.
        sam = pro_email(smtp_server, "sam.roux@example.org")
        sam_reply = next(path(u) for u in links(sam) if "/reply/" in u)
        assert "Vous avez indiqué que l'offre est pourvue le" in html.unescape(client.get(sam_reply).text)
    assert len(answers_to(smtp_server, "sam.roux@example.org")) == 1
    assert len(answers_to(smtp_server, "noa.petit@example.org")) == 1  # the refusal only
    assert answers_to(smtp_server, "eva.blanc@example.org") == []
    assert answers_to(smtp_server, "tom.vidal@example.org") == []


def test_after_an_answer_the_offer_still_closes_and_the_candidate_is_not_told_twice(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        lea = "lea.moreau@example.org"
        apply(client, lea, "Léa")
        apply(client, "sam.roux@example.org", "Sam")
        deliver(client)
        pro = pro_email(smtp_server, lea)
        accept = next(
            path(u)
            for u in links(pro)
            if "/reply/" in u and 'value="accept" checked' in client.get(path(u)).text
        )
        client.post(accept, data=form_fields(client.get(accept).text))
        url = filled_link(pro)
        page = html.unescape(client.get(url).text)
        assert "Léa Moreau a déjà reçu votre réponse" in page
        done = confirm(client, url, others=True)
        assert "Léa Moreau avait déjà reçu votre réponse" in html.unescape(done.text)
        deliver(client)
        assert eligibility(client)["reason"] == "closed"
        assert requests_by_email(client)[lea]["answer"] == "accept"
    assert [r.message["Subject"] for r in answers_to(smtp_server, lea)] == [
        "Suite donnée à votre candidature – Boulangerie Martin"
    ]
    assert len(answers_to(smtp_server, "sam.roux@example.org")) == 1


def test_a_withdrawn_application_says_so_and_its_candidate_gets_nothing(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    from widget_server.withdrawals import withdraw

    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        lea = "lea.moreau@example.org"
        lea_id = apply(client, lea, "Léa")
        deliver(client)
        url = filled_link(pro_email(smtp_server, lea))
        state = seed.state(client)
        assert seed.run(client, withdraw, state.database, state.settings, lea_id).withdrawn
        deliver(client)
        before = snapshot(client)
        page = html.unescape(client.get(url).text)
        assert "Léa Moreau a retiré sa candidature le" in page
        assert "rien ne lui sera envoyé" in page
        assert "reçoit un e-mail" not in page
        assert snapshot(client) == before
        done = html.unescape(confirm(client, url, others=True).text)
        assert "Léa Moreau avait retiré sa candidature le" in done
        assert "rien ne lui a été envoyé" in done and "a reçu un e-mail" not in done
        # The rest as for any application: the offer closes, the request stays withdrawn.
        assert eligibility(client)["reason"] == "closed"
        assert deliver(client) == 0
        assert requests_by_email(client)[lea]["status"] == "withdrawn"
    assert answers_to(smtp_server, lea) == []


def test_two_posts_at_once_close_once_and_send_once(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        apply(client, "lea.moreau@example.org", "Léa")
        apply(client, "sam.roux@example.org", "Sam")
        deliver(client)
        url = filled_link(pro_email(smtp_server, "lea.moreau@example.org"))
        check = check_of(client, url)

        async def double_click() -> list[str]:
            transport = httpx2.ASGITransport(app=client.app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
                data = {"check": check, "others": "yes"}
                responses = await asyncio.gather(c.post(url, data=data), c.post(url, data=data))
            return [r.text for r in responses]

        pages = seed.run(client, double_click)
        assert sorted("C'est fait" in html.unescape(page) for page in pages) == [False, True]
        assert outbox_templates(client).count("answer_filled") == 2  # Léa and Sam, once each


def test_a_forged_or_foreign_check_acts_on_nothing(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        apply(client, "lea.moreau@example.org", "Léa")
        deliver(client)
        pro = pro_email(smtp_server, "lea.moreau@example.org")
        url = filled_link(pro)
        reply = next(path(u) for u in links(pro) if "/reply/" in u)
        reply_check = form_fields(client.get(reply).text)["check"]
        before = snapshot(client)
        for check in ("forged", reply_check, ""):
            response = client.post(url, data={"check": check})
            assert response.status_code == 400 and "Rien n'a encore été fait" in html.unescape(response.text)
        # A mail client's one-click POST (RFC 8058) is for the opt-out link only.
        one_click = client.post(
            url,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert one_click.status_code == 400
        # A filled link is not a reply link, nor an opt-out link, and the other way round.
        token = url.rsplit("/", 1)[1]
        assert client.get(f"/reply/{token}").status_code == 404
        assert client.get(f"/optout/{token}").status_code == 404
        assert client.get(f"/filled/{reply.rsplit('/', 1)[1]}").status_code == 404
        assert snapshot(client) == before


def test_an_expired_link_acts_on_nothing(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        apply(client, "lea.moreau@example.org", "Léa")
        deliver(client)
        url = filled_link(pro_email(smtp_server, "lea.moreau@example.org"))
        check = check_of(client, url)
        seed.run(
            client,
            seed.state(client).database.execute,
            tables.reply_tokens.update().values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)),
        )
        before = snapshot(client)
        assert client.get(url).status_code == 410
        assert client.post(url, data={"check": check}).status_code == 410
        assert snapshot(client) == before


def test_undoing_an_opt_out_does_not_reopen_a_filled_offer(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        apply(client, "lea.moreau@example.org", "Léa")
        deliver(client)
        pro = pro_email(smtp_server, "lea.moreau@example.org")
        [optout] = [path(u) for u in links(pro) if "/optout/" in u]
        client.post(optout)
        deliver(client)
        [confirmation] = [
            r for r in smtp_server.received if r.message["X-LBA-Template"] == "optout_confirmed"
        ]
        undo = path(next(u for u in links(confirmation) if "/optout/" in u))
        confirm(client, filled_link(pro), others=False)
        response = client.post(undo)
        assert "Cette offre reste fermée" in html.unescape(response.text)
        assert eligibility(client)["reason"] == "closed"
        [offer] = seed.fetch_all(client, tables.offers.select())
        assert offer["closed_reason"] == "filled"


def test_a_test_request_plays_the_answers_but_never_closes_the_real_offer(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        apply(client, "sam.roux@example.org", "Sam")  # a real pending application
        test_key = seed.run(
            client, functools.partial(callers.create_key, test=True), seed.state(client).database, "mon-site"
        )
        response = client.post(
            "/api/v1/applications",
            json=application(email="lea.moreau@example.org"),
            headers={"Authorization": f"Bearer {test_key}"},
        )
        assert response.status_code == 202
        deliver(client)
        messages = client.get("/api/v1/test-mailbox", headers={"Authorization": f"Bearer {test_key}"}).json()
        [pro] = [m for m in messages["messages"] if m["template"] == "candidature_pro"]
        [url] = [path(link["href"]) for link in pro["links"] if "/filled/" in link["href"]]
        page = html.unescape(client.get(url).text)
        assert "Demande de test" in page and "Prévenir aussi" not in page  # the real one is not its to answer
        confirm(client, url, others=True)
        deliver(client)
        assert eligibility(client)["eligible"] is True
        [offer] = seed.fetch_all(client, tables.offers.select())
        assert offer["closed_reason"] is None
        rows = requests_by_email(client)
        assert rows["lea.moreau@example.org"]["answer"] == "filled"
        assert rows["sam.roux@example.org"]["answered_at"] is None
    assert answers_to(smtp_server, "sam.roux@example.org") == []
    assert answers_to(smtp_server, "lea.moreau@example.org") == []  # to the test mailbox, not SMTP


def test_every_candidate_told_is_an_answered_event_for_its_partner(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with running() as receiver, smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        key, secret = seed.webhook_key(client, receiver.url)
        ids = {}
        for email, name in (("lea.moreau@example.org", "Léa"), ("sam.roux@example.org", "Sam")):
            response = client.post(
                "/api/v1/applications",
                json=application(email=email, first_name=name),
                headers={"Authorization": f"Bearer {key}"},
            )
            ids[email] = response.json()["id"]
        deliver(client)
        url = filled_link(pro_email(smtp_server, "lea.moreau@example.org"))
        check = check_of(client, url)
        confirm(client, url, others=True, check=check)
        deliver(client)
        events = [d.verify(secret) for d in receiver.deliveries]
        assert all(isinstance(e, dict) for e in events)
        answered = {
            e["data"]["id"]: e for e in events if isinstance(e, dict) and e["type"] == "request.answered"
        }
        assert set(answered) == set(ids.values())
        assert {e["data"]["answer"]["kind"] for e in answered.values()} == {"filled"}
        confirm(client, url, others=True, check=check)  # a second POST tells nothing more
        deliver(client)
        assert len(receiver.deliveries) == len(events) == 4  # delivered and answered, twice
