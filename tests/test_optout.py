"""Opt-out from the link of every pro email, RFC 8058 one-click, and undo."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests import seed
from tests.smtp_server import SMTPServer
from tests.support import (
    appointment,
    data_url,
    deliver,
    links,
    path,
    smtp_client,
    snapshot,
    submit_application,
)
from widget_server import tables

OTHER_SIRET = "73282932000108"


def unsubscribe_url(received: Any) -> str:
    header = str(received.message["List-Unsubscribe"])
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    return path(header.strip("<>"))


def eligibility(client: TestClient, target: str) -> dict[str, Any]:
    return dict(client.get("/api/v1/eligibility", params={"target": target}).json()["results"][0])


def test_one_click_opt_out_makes_the_company_ineligible_at_once(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.company(client)
        # The same recruiter is the contact of a second establishment.
        seed.company(client, OTHER_SIRET, name="Garage Durand Rezé")
        pro = submit_application(client, smtp_server, offer_id=None, siret=seed.SIRET)
        url = unsubscribe_url(pro)
        assert url in [path(u) for u in links(pro)]  # the button in the email is the same link
        before = snapshot(client)
        assert client.get(url).status_code == 200
        assert snapshot(client) == before  # a GET changes nothing
        assert eligibility(client, f"company:{seed.SIRET}")["eligible"] is True

        # What a mail client sends: a bare form POST, no cookie, no token of ours.
        response = client.post(
            url,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        assert response.status_code == 200
        assert "set-cookie" not in response.headers
        for siret in (seed.SIRET, OTHER_SIRET):
            result = eligibility(client, f"company:{siret}")
            assert result["eligible"] is False and result["reason"] == "opted_out"
        key = seed.api_key(client)
        refused = client.post(
            "/api/v1/applications",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "siret": seed.SIRET,
                "first_name": "A",
                "last_name": "B",
                "email": "b@example.org",
                "phone": "0612345678",
                "cv": data_url(seed.PDF),
            },
        )
        assert refused.status_code == 409 and refused.json()["code"] == "opted_out"
        # A second click sends no second confirmation.
        client.post(
            url,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        deliver(client)

        confirmations = [r for r in smtp_server.received if r.message["X-LBA-Template"] == "optout_confirmed"]
        assert len(confirmations) == 1
        assert confirmations[0].rcpt_tos == ["contact@garage-durand.example"]
        undo = path(next(u for u in links(confirmations[0]) if "/optout/" in u))
        before = snapshot(client)
        assert "Recevoir à nouveau" in html.unescape(client.get(undo).text)
        assert client.head(undo).status_code == 200
        assert snapshot(client) == before  # the undo link is safe from scanners too
        assert eligibility(client, f"company:{seed.SIRET}")["reason"] == "opted_out"
        assert client.post(undo).status_code == 200
        assert eligibility(client, f"company:{seed.SIRET}")["eligible"] is True
        assert eligibility(client, f"company:{OTHER_SIRET}")["eligible"] is True


def test_the_undo_link_expires(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.company(client)
        pro = submit_application(client, smtp_server, offer_id=None, siret=seed.SIRET)
        client.post(unsubscribe_url(pro))
        deliver(client)
        [confirmation] = [
            r for r in smtp_server.received if r.message["X-LBA-Template"] == "optout_confirmed"
        ]
        undo = path(next(u for u in links(confirmation) if "/optout/" in u))
        [row] = seed.fetch_all(
            client, tables.reply_tokens.select().where(tables.reply_tokens.c.action == "optin")
        )
        assert row["expires_at"] - row["created_at"] == dt.timedelta(days=60)
        seed.run(
            client,
            seed.state(client).database.execute,
            tables.reply_tokens.update()
            .where(tables.reply_tokens.c.action == "optin")
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)),
        )
        assert client.post(undo).status_code == 410
        assert eligibility(client, f"company:{seed.SIRET}")["reason"] == "opted_out"


def test_cfa_opt_out_stops_rdv_only(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.formation(client)
        seed.company(client, contact_email="rdv@cfa-commerce.example")
        key = seed.api_key(client)
        client.post(
            "/api/v1/appointment-requests", json=appointment(), headers={"Authorization": f"Bearer {key}"}
        )
        deliver(client)
        page = client.post(unsubscribe_url(smtp_server.received[0]))
        assert "demandes de rendez-vous" in html.unescape(page.text)
        assert eligibility(client, f"formation:{seed.FORMATION_ID}")["reason"] == "opted_out"
        # The same address as a company contact still receives spontaneous applications.
        assert eligibility(client, f"company:{seed.SIRET}")["eligible"] is True


def test_offer_opt_out_closes_the_offer(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        client.post(unsubscribe_url(pro))
        assert eligibility(client, f"offer:{seed.OFFER_ID}")["reason"] == "closed"


def test_an_offer_opt_out_survives_the_next_import_and_its_undo_works(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    from widget_server import directory

    export = tmp_path / "offers.csv"
    export.write_text(
        "offer_id,title,siret,company_name,address,postcode,city,status,posted_on,contact_email\n"
        f"{seed.OFFER_ID},Vendeur·se,{seed.SIRET},Boulangerie Martin,3 rue du Four,69003,Lyon,active,"
        "2026-10-01,recrutement@boulangerie.example\n",
        encoding="utf-8",
    )

    def reimport() -> directory.ImportReport:
        report = seed.run(client, directory.import_file, seed.state(client).database, "offers", export)
        assert isinstance(report, directory.ImportReport)
        return report

    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        client.post(unsubscribe_url(pro))
        deliver(client)
        # The partner's next export still lists the offer as active.
        assert reimport().kept_closed == {"opted_out": 1}
        assert eligibility(client, f"offer:{seed.OFFER_ID}")["reason"] == "closed"
        confirmation = next(
            r for r in smtp_server.received if r.message["X-LBA-Template"] == "optout_confirmed"
        )
        client.post(path(next(u for u in links(confirmation) if "/optout/" in u)))
        assert eligibility(client, f"offer:{seed.OFFER_ID}")["eligible"] is True
        assert reimport().kept_closed == {}


@pytest.mark.parametrize("token", ["nope", "x" * 200])
def test_unknown_opt_out_link_is_404(client: TestClient, token: str) -> None:
    assert client.get(f"/optout/{token}").status_code == 404
    assert client.post(f"/optout/{token}").status_code == 404


def test_reply_token_is_not_an_opt_out_token(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        reply = next(u for u in links(pro) if "/reply/" in u)
        token = reply.rsplit("/", 1)[1]
        assert client.post(f"/optout/{token}").status_code == 404
        assert seed.fetch_all(client, tables.contacts.select()) == []


def test_the_opt_out_page_says_since_when_in_paris_time(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.company(client)
        pro = submit_application(client, smtp_server, offer_id=None, siret=seed.SIRET)
        url = unsubscribe_url(pro)
        client.post(url)
        seed.run(
            client,
            seed.state(client).database.execute,
            tables.contacts.update().values(
                company_opt_out_at=dt.datetime(2026, 11, 29, 0, 55, tzinfo=dt.UTC)
            ),
        )
        page = html.unescape(client.get(url).text)
    assert (
        "vous ne recevez plus de candidatures spontanées pour Garage Durand depuis le 29/11/2026 à 01:55."
        in page
    )
    assert "UTC" not in page
