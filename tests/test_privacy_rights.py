"""`widget-server export EMAIL` and `forget EMAIL` (SPEC section 9), and times
shown in Paris time wherever a person reads them."""

from __future__ import annotations

import base64
import datetime as dt
import json
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
    every_row,
    form_fields,
    form_token,
    links,
    path,
    smtp_client,
    submit_application,
)
from widget_server import cli, tables
from widget_server.local_time import date_fr, datetime_fr
from widget_server.privacy_rights import export, forget
from widget_server.settings import Settings

LEA = "lea.moreau@example.org"
# 00:30 in Paris on 2 November: still 1 November in UTC.
SENT = dt.datetime(2026, 11, 1, 23, 30, tzinfo=dt.UTC)


def submit(client: TestClient, **overrides: Any) -> str:
    response = client.post(
        "/api/v1/applications",
        json=application(**overrides),
        headers={"Authorization": f"Bearer {seed.api_key(client)}"},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def set_rows(client: TestClient, table: sa.Table, where: sa.ColumnElement[bool], **values: Any) -> None:
    async def go() -> None:
        await seed.state(client).database.execute(table.update().where(where).values(**values))

    seed.run(client, go)


@pytest.fixture
def three_requests(client: TestClient) -> tuple[list[str], str]:
    """Léa's two requests (typed in two letter cases), one delivered; someone else's one."""
    seed.offer(client)
    seed.company(client)
    first = submit(client, email=LEA)
    second = submit(client, email="Lea.MOREAU@Example.ORG", offer_id=None, siret=seed.SIRET)
    other = submit(client, email="autre@example.org")
    requests, outbox = tables.contact_requests, tables.outbox
    set_rows(client, requests, requests.c.id == first, created_at=SENT)
    set_rows(client, outbox, outbox.c.request_id == first, status="sent", sent_at=SENT)
    return [first, second], other


def rows_of(client: TestClient, request_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    return {
        name: [row for row in rows if row.get("request_id", row.get("id")) in request_ids]
        for name, rows in every_row(client).items()
        if name in {"contact_requests", "cv_files", "outbox", "reply_tokens", "idempotency_keys"}
    }


def test_export_finds_every_request_whatever_the_letter_case(
    client: TestClient, three_requests: tuple[list[str], str]
) -> None:
    lea, _ = three_requests
    state = seed.state(client)
    data = seed.run(client, export, state.database, "LEA.Moreau@example.org")
    assert [r["id"] for r in data["requests"]] == lea
    first, second = data["requests"]
    assert first["first_name"] == "Léa" and first["phone"] == "+33612345678"
    assert first["created_at"] == "2026-11-02T00:30:00+01:00"  # Paris time, with its offset
    assert base64.b64decode(first["cv"]["data_base64"]) == seed.PDF
    assert {(e["template"], e["status"]) for e in first["emails"]} == {
        ("candidature_pro", "sent"),
        ("candidature_ack", "sent"),
    }
    assert first["emails"][0]["sent_at"] == "2026-11-02T00:30:00+01:00"
    assert first["reply_links"] and all(link["used_at"] is None for link in first["reply_links"])
    assert second["email"] == "Lea.MOREAU@example.org"  # as typed (the domain lower-cased)
    assert {e["status"] for e in second["emails"]} == {"pending"}
    assert data["directory_contact"] is None
    json.dumps(data)  # printable as it is


def test_forget_erases_everything_about_one_person_and_nothing_else(
    client: TestClient, three_requests: tuple[list[str], str]
) -> None:
    lea, other = three_requests
    seed.insert(client, tables.contacts, email=LEA, company_opt_out_at=SENT)
    others_before = rows_of(client, [other])
    state = seed.state(client)
    report = seed.run(client, forget, state.database, "Lea.Moreau@EXAMPLE.org")
    assert [request_id for request_id, *_ in report.requests] == lea
    assert report.cvs_deleted == 2
    assert report.queued_emails_cancelled == 2 and report.sent_emails_deleted == 2
    assert report.reply_tokens_deleted > 0
    summary = report.summary()
    assert f"  {lea[0]}  candidature to offer:{seed.OFFER_ID}, sent 2 novembre 2026 à 0 h 30" in summary
    assert "Kept: this address's opt-out" in summary

    after = rows_of(client, lea)
    for row in after["contact_requests"]:
        assert (row["first_name"], row["last_name"], row["phone"], row["message"]) == (
            "Anonyme",
            "Anonyme",
            "",
            None,
        )
        assert row["email"] == row["email_key"] == f"anonyme-{row['id']}@invalid"
        assert row["anonymised_at"] is not None
    assert [cv["data"] for cv in after["cv_files"]] == [None, None]
    assert after["outbox"] == after["reply_tokens"] == after["idempotency_keys"] == []
    assert LEA not in repr(after).lower()
    # The other person's data, and the directory contact's opt-out, are untouched.
    assert rows_of(client, [other]) == others_before
    assert seed.fetch_all(client, sa.select(tables.contacts.c.company_opt_out_at)) == [
        {"company_opt_out_at": SENT}
    ]
    assert seed.run(client, export, state.database, LEA)["requests"] == []
    again = seed.run(client, forget, state.database, LEA)
    assert again.summary().startswith(f"Nothing found for {LEA} (letter case ignored): nothing changed.")


def test_export_shows_and_forget_deletes_the_cvs_kept_across_form_errors(client: TestClient) -> None:
    """A candidate sent back by an error, who never made a request, or fixed the
    email field on the way: their kept CV is in `export` and goes with `forget`,
    no one else's."""
    seed.offer(client)
    form = "/widget/v1/candidature"

    def post(page: str, email: str, *, with_cv: bool) -> str:
        data = {
            "form_token": form_token(page),
            "offer_id": seed.OFFER_ID,
            "last_name": "Moreau",
            "first_name": "Léa",
            "email": email,
            "phone": "12",  # wrong: the form comes back, the CV kept
        }
        files = {"cv": ("cv.pdf", seed.PDF, "application/pdf")} if with_cv else None
        response = client.post(form, data=data, files=files)
        assert response.status_code == 422 and "CV reçu" in response.text
        return response.text

    fresh = client.get(form, params={"offer_id": seed.OFFER_ID}).text
    # Léa's, typed wrong first, then fixed: the kept CV follows the fixed address.
    post(post(fresh, "lea.moreau@", with_cv=True), "Lea.Moreau@Example.org", with_cv=False)
    post(client.get(form, params={"offer_id": seed.OFFER_ID}).text, "autre@example.org", with_cv=True)
    assert len(seed.fetch_all(client, tables.kept_cvs.select())) == 2
    state = seed.state(client)
    [exported] = seed.run(client, export, state.database, LEA)["kept_cvs"]
    assert (exported["filename"], exported["content_type"]) == ("cv.pdf", "application/pdf")
    assert base64.b64decode(exported["data_base64"]) == seed.PDF
    report = seed.run(client, forget, state.database, LEA)
    assert report.kept_cvs_deleted == 1
    assert "CVs kept across form errors deleted: 1" in report.summary()
    assert [row["email_key"] for row in seed.fetch_all(client, tables.kept_cvs.select())] == [
        "autre@example.org"
    ]


def test_export_and_forget_commands(
    settings: Settings,
    client: TestClient,
    three_requests: tuple[list[str], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("SECRET_KEY", "test-secret-key")
    lea, _ = three_requests
    assert cli.main(["export", "LEA.MOREAU@example.org"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in exported["requests"]] == lea
    assert cli.main(["forget", LEA]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Forgot {LEA} (letter case ignored):\nRequests anonymised: 2\n")


# --- Paris time wherever a person reads a time --------------------------------------


def test_the_shared_formatter_shows_paris_time_in_winter_and_summer() -> None:
    assert date_fr(SENT) == "2 novembre 2026"
    assert datetime_fr(SENT) == "2 novembre 2026 à 0 h 30"
    assert datetime_fr(dt.datetime(2026, 7, 14, 8, 5, tzinfo=dt.UTC)) == "14 juillet 2026 à 10 h 05"
    assert date_fr(dt.date(2026, 3, 1)) == "1 mars 2026"
    with pytest.raises(ValueError, match="naive"):
        datetime_fr(dt.datetime(2026, 7, 14, 8, 5))


def test_reply_pages_show_paris_time(tmp_path: Path, smtp_server: SMTPServer) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        pro = submit_application(client, smtp_server)
        reply = next(
            path(u)
            for u in links(pro)
            if "/reply/" in u and 'value="accept" checked' in client.get(path(u)).text
        )
        requests = tables.contact_requests
        set_rows(client, requests, requests.c.id.is_not(None), created_at=SENT)
        page = client.get(reply)
        assert "Reçue le 02/11/2026 à 00:30" in page.text
        assert client.post(reply, data=form_fields(page.text)).status_code == 200
        answered = dt.datetime(2026, 11, 2, 23, 55, tzinfo=dt.UTC)
        set_rows(client, requests, requests.c.id.is_not(None), answered_at=answered)
        done = client.get(reply).text
        assert "Vous avez répondu favorablement le 03/11/2026 à 00:55." in done
        assert "UTC" not in done


def test_quota_messages_show_paris_time(client: TestClient) -> None:
    seed.formation(client)
    key = seed.api_key(client)
    headers = {"Authorization": f"Bearer {key}"}
    assert client.post("/api/v1/appointment-requests", json=appointment(), headers=headers).status_code == 202
    # An hour ago, at 23:30 UTC: the date it becomes possible again is a Paris date.
    now = dt.datetime.now(dt.UTC)
    earlier = now.replace(hour=23, minute=30, second=0, microsecond=0) - dt.timedelta(days=1)
    requests = tables.contact_requests
    set_rows(client, requests, requests.c.id.is_not(None), created_at=earlier)
    refused = client.post("/api/v1/appointment-requests", json=appointment(), headers=headers)
    assert refused.status_code in (409, 429)
    assert datetime_fr(earlier + dt.timedelta(days=4)) in refused.json()["detail"]
    assert "à 0 h 30" in refused.json()["detail"] or "à 1 h 30" in refused.json()["detail"]
