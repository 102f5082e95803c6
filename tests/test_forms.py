"""The hosted form pages, without JavaScript: what a candidate sees and sends."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

import pytest
from itsdangerous import URLSafeSerializer
from starlette.testclient import TestClient

from tests import seed
from tests.support import form_token, make_settings, template_name
from widget_server import kept_cvs, tables
from widget_server.app import create_app

FORM = "/widget/v1/candidature"


def fields(html: str, **overrides: Any) -> dict[str, Any]:
    data = {
        "form_token": form_token(html),
        "offer_id": seed.OFFER_ID,
        "caller": "mon-site",
        "last_name": "Moreau",
        "first_name": "Léa",
        "email": "lea.moreau@example.org",
        "phone": "06 12 34 56 78",
        "message": "Bonjour !",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def cv(data: bytes = seed.PDF) -> dict[str, Any]:
    return {"cv": ("cv.pdf", data, "application/pdf")}


@pytest.fixture
def page(client: TestClient) -> str:
    seed.offer(client)
    response = client.get(FORM, params={"offer_id": seed.OFFER_ID, "caller": "mon-site"})
    assert response.status_code == 200
    return response.text


def test_form_shows_the_offer_and_sets_no_cookie(client: TestClient) -> None:
    seed.offer(client)
    response = client.get(FORM, params={"offer_id": seed.OFFER_ID, "caller": "mon-site"})
    assert response.status_code == 200
    assert template_name(response) == "pages/form.html"
    assert "Vendeur·se en boulangerie" in response.text
    assert "Boulangerie Martin · Lyon" in response.text
    assert "set-cookie" not in response.headers
    assert response.headers["cache-control"] == "no-store"
    for name in ("last_name", "first_name", "email", "phone", "cv", "message"):
        assert f'name="{name}"' in response.text
    assert "Candidature spontanée" not in response.text


def test_spontaneous_form_says_it_is_not_a_job_offer(client: TestClient) -> None:
    seed.company(client)
    response = client.get(FORM, params={"siret": seed.SIRET})
    assert response.status_code == 200
    assert "Candidature spontanée" in response.text
    assert "n'a pas publié d'offre" in response.text


def test_unknown_target_is_a_french_404_page(client: TestClient) -> None:
    response = client.get(FORM, params={"offer_id": "NOPE"})
    assert response.status_code == 404
    assert "introuvable" in response.text
    assert "<form" not in response.text


def test_closed_offer_shows_why_and_no_form(client: TestClient) -> None:
    seed.offer(client, status="closed")
    response = client.get(FORM, params={"offer_id": seed.OFFER_ID})
    assert response.status_code == 409
    assert "n'accepte plus de candidatures" in html.unescape(response.text)
    assert "<form" not in response.text


def test_link_without_target_is_a_400_page(client: TestClient) -> None:
    response = client.get(FORM)
    assert response.status_code == 400
    assert "incomplet" in response.text


def test_submission_shows_the_acknowledgement_and_stores_the_request(client: TestClient, page: str) -> None:
    response = client.post(FORM, data=fields(page), files=cv())
    assert response.status_code == 200, response.text
    assert template_name(response) == "pages/sent.html"
    assert "Votre candidature a bien été envoyée" in response.text
    [stored] = seed.fetch_all(client, tables.contact_requests.select())
    assert f'data-lba-submitted="{stored["id"]}"' in response.text
    assert stored["caller"] == "mon-site"
    assert len(seed.fetch_all(client, tables.outbox.select())) == 2


def _before_the_write(monkeypatch: pytest.MonkeyPatch, client: TestClient, *changes: Any) -> list[int]:
    """Makes `changes[i]` (a statement) just before the i-th write transaction of
    the pipeline starts, after the emails were written from the target's row;
    returns the list of transactions started."""
    from widget_server import contact_requests, database

    real = database.run_script
    started: list[int] = []

    async def changed_first(database: Any, script: Any) -> Any:
        if len(started) < len(changes):
            await database.execute(changes[len(started)])
        started.append(1)
        return await real(database, script)

    monkeypatch.setattr(contact_requests, "run_script", changed_first)
    return started


def test_a_target_closed_after_the_emails_were_written_is_refused_with_nothing_stored(
    client: TestClient, page: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The emails are written outside the transaction: the transaction checks the
    # target again, where nothing can change it before the commit.
    _before_the_write(monkeypatch, client, tables.offers.update().values(status="closed"))
    response = client.post(FORM, data=fields(page), files=cv())
    assert response.status_code == 409
    assert template_name(response) == "pages/unavailable.html"
    for table in (tables.contact_requests, tables.cv_files, tables.reply_tokens, tables.outbox):
        assert seed.fetch_all(client, table.select()) == [], table.name


def test_a_recipient_changed_after_the_emails_were_written_gets_them_written_again(
    client: TestClient, page: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = _before_the_write(
        monkeypatch,
        client,
        tables.offers.update().values(contact_email="nouveau@boulangerie.example", company_name="Chez Paul"),
    )
    response = client.post(FORM, data=fields(page), files=cv())
    assert response.status_code == 200, response.text
    assert len(started) == 2  # the first transaction stored nothing, the second all
    [request] = seed.fetch_all(client, tables.contact_requests.select())
    assert request["contact_email"] == "nouveau@boulangerie.example"
    emails = seed.fetch_all(client, tables.outbox.select())
    assert sorted(e["template"] for e in emails) == ["candidature_ack", "candidature_pro"]
    [pro] = [e for e in emails if e["template"] == "candidature_pro"]
    assert pro["recipient"] == "nouveau@boulangerie.example"
    assert b"Chez Paul" in pro["raw"]
    tokens = seed.fetch_all(client, tables.reply_tokens.select())
    assert {t["request_id"] for t in tokens} == {request["id"]}
    assert len(tokens) == 5


def test_a_recipient_that_keeps_changing_is_a_503_with_nothing_stored(
    client: TestClient, page: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from widget_server import contact_requests

    changes = [
        tables.offers.update().values(company_name=f"Nom {n}") for n in range(contact_requests.WRITE_ATTEMPTS)
    ]
    _before_the_write(monkeypatch, client, *changes)
    response = client.post(FORM, data=fields(page), files=cv())
    assert response.status_code == 503
    for table in (tables.contact_requests, tables.cv_files, tables.reply_tokens, tables.outbox):
        assert seed.fetch_all(client, table.select()) == [], table.name


def test_an_offer_closed_while_the_form_was_open_shows_why(client: TestClient, page: str) -> None:
    seed.run(
        client,
        seed.state(client).database.execute,
        tables.offers.update().values(application_count=80),
    )
    response = client.post(FORM, data=fields(page), files=cv())
    assert response.status_code == 409
    assert template_name(response) == "pages/unavailable.html"
    assert "n'accepte plus de candidatures" in html.unescape(response.text)
    assert seed.fetch_all(client, tables.contact_requests.select()) == []


def test_errors_are_shown_inline_and_in_a_summary_and_input_is_kept(client: TestClient, page: str) -> None:
    response = client.post(
        FORM, data=fields(page, email="pas-un-email", phone="12", message="<b>gras</b>"), files=cv()
    )
    assert response.status_code == 422
    html = response.text
    assert 'class="error-summary"' in html
    assert '<a href="#email">' in html and '<a href="#phone">' in html
    assert 'id="email-error"' in html and 'aria-invalid="true"' in html
    assert 'value="pas-un-email"' in html and 'value="Moreau"' in html
    assert "&lt;b&gt;gras&lt;/b&gt;</textarea>" in html
    assert seed.fetch_all(client, tables.contact_requests.select()) == []


def test_wrong_cv_type_is_shown_next_to_the_field(client: TestClient, page: str) -> None:
    response = client.post(FORM, data=fields(page), files=cv(b"GIF89a not a cv"))
    assert response.status_code == 415
    assert 'id="cv-error"' in response.text
    assert 'value="lea.moreau@example.org"' in response.text


def test_missing_cv_is_a_field_error(client: TestClient, page: str) -> None:
    response = client.post(FORM, data=fields(page))
    assert response.status_code == 422
    assert 'id="cv-error"' in response.text


def test_reposting_the_same_form_creates_nothing_twice(client: TestClient, page: str) -> None:
    first = client.post(FORM, data=fields(page), files=cv())
    second = client.post(FORM, data=fields(page), files=cv())
    assert first.status_code == second.status_code == 200
    assert len(seed.fetch_all(client, tables.contact_requests.select())) == 1


def test_forged_or_foreign_token_re_renders_the_form_with_input(client: TestClient, page: str) -> None:
    response = client.post(FORM, data=fields(page, form_token="forged"), files=cv())
    assert response.status_code == 400
    assert "a expiré" in response.text
    assert 'value="Moreau"' in response.text
    assert form_token(response.text) != "forged"
    assert seed.fetch_all(client, tables.contact_requests.select()) == []


def test_honeypot_pretends_success_and_stores_nothing(client: TestClient, page: str) -> None:
    response = client.post(FORM, data=fields(page, website="http://spam.example"), files=cv())
    assert response.status_code == 200
    assert "bien été envoyée" in response.text
    assert seed.fetch_all(client, tables.contact_requests.select()) == []


def test_form_filled_too_fast_is_sent_back(tmp_path: Any) -> None:
    with TestClient(create_app(make_settings(tmp_path, FORM_MIN_FILL_SECONDS="60"))) as client:
        seed.offer(client)
        page = client.get(FORM, params={"offer_id": seed.OFFER_ID}).text
        response = client.post(FORM, data=fields(page), files=cv())
        assert response.status_code == 400
        assert 'value="Moreau"' in response.text
        assert seed.fetch_all(client, tables.contact_requests.select()) == []


def test_embed_parameters_travel_through_the_post(client: TestClient) -> None:
    seed.offer(client)
    params = {"offer_id": seed.OFFER_ID, "embed": "w1", "origin": "https://partner.example"}
    page = client.get(FORM, params=params).text
    assert 'data-lba-embed="w1"' in page
    assert 'data-lba-origin="https://partner.example"' in page
    # In the signed token, not in fields of the form.
    assert 'name="origin"' not in page and 'name="embed"' not in page and 'name="caller"' not in page
    response = client.post(FORM, data=fields(page), files=cv())
    assert 'data-lba-embed="w1"' in response.text
    assert 'data-lba-origin="https://partner.example"' in response.text
    assert "data-lba-submitted=" in response.text


FORGED_FRAME = {
    "embed": "w9",
    "origin": "https://evil.example",
    "back": "https://evil.example/",
    "caller": "victim",
}


def test_a_forged_origin_or_embed_id_in_the_post_changes_nothing(client: TestClient) -> None:
    """The page keeps talking to the origin it was opened for, and only to it."""
    seed.offer(client)
    params = {
        "offer_id": seed.OFFER_ID,
        "embed": "w1",
        "origin": "https://partner.example",
        "caller": "mon-site",
    }
    page = client.get(FORM, params=params).text
    wrong = client.post(FORM, data=fields(page, phone="12", **FORGED_FRAME), files=cv())
    assert wrong.status_code == 422
    done = client.post(FORM, data=fields(wrong.text, **FORGED_FRAME))
    assert done.status_code == 200 and "data-lba-submitted=" in done.text
    for response in (wrong, done):
        assert 'data-lba-embed="w1"' in response.text
        assert 'data-lba-origin="https://partner.example"' in response.text
        assert "evil.example" not in response.text and "w9" not in response.text
    [request] = seed.fetch_all(client, tables.contact_requests.select())
    assert request["caller"] == "mon-site"


def test_a_plain_page_cannot_be_made_to_talk_to_a_frame_by_a_post(client: TestClient) -> None:
    seed.offer(client)
    page = client.get(FORM, params={"offer_id": seed.OFFER_ID}).text
    response = client.post(FORM, data=fields(page, **FORGED_FRAME), files=cv())
    assert response.status_code == 200
    assert "data-lba-embed" not in response.text and "evil.example" not in response.text


def test_an_expired_form_stays_where_it_was_shown_a_forged_one_shows_nowhere(client: TestClient) -> None:
    seed.offer(client)
    tokens = seed.state(client).form_tokens
    frame = {"embed": "w1", "origin": "https://partner.example"}
    long_ago = tokens.issue("candidature", f"offer:{seed.OFFER_ID}", "mon-site", 1_000_000.0, **frame)
    page = client.get(FORM, params={"offer_id": seed.OFFER_ID}).text
    expired = client.post(FORM, data=fields(page, form_token=long_ago, **FORGED_FRAME), files=cv())
    assert expired.status_code == 400 and "a expiré" in expired.text
    assert 'data-lba-origin="https://partner.example"' in expired.text and "evil.example" not in expired.text
    assert tokens.read(form_token(expired.text)).caller == "mon-site"
    forged_token = URLSafeSerializer("not-the-key", salt="form-token").dumps(
        ["candidature", f"offer:{seed.OFFER_ID}", "victim", 1.0, "", "w9", "https://evil.example", ""]
    )
    forged = client.post(FORM, data=fields(page, form_token=forged_token, **FORGED_FRAME), files=cv())
    assert forged.status_code == 400 and "a expiré" in forged.text
    assert "data-lba-embed" not in forged.text and "evil.example" not in forged.text
    # A new, genuine token never signs a caller that came from a posted field.
    assert tokens.read(form_token(forged.text)).caller == "direct"


def test_bad_origin_is_dropped(client: TestClient) -> None:
    seed.offer(client)
    response = client.get(
        FORM, params={"offer_id": seed.OFFER_ID, "embed": "w1", "origin": "javascript:alert(1)"}
    )
    assert response.status_code == 200
    assert 'data-lba-embed="w1"' in response.text  # the embedded form, where a good origin would be
    assert 'data-lba-origin=""' in response.text
    assert "javascript:" not in response.text


def test_an_empty_form_sent_at_once_shows_the_fields_to_fill(tmp_path: Any) -> None:
    with TestClient(create_app(make_settings(tmp_path, FORM_MIN_FILL_SECONDS="60"))) as client:
        seed.offer(client)
        page = client.get(FORM, params={"offer_id": seed.OFFER_ID}).text
        response = client.post(FORM, data=fields(page, last_name="", email=""))
        assert response.status_code == 422
        assert 'id="last_name-error"' in response.text and 'id="email-error"' in response.text


# --- the CV kept across error round trips (issue #13) ----------------------------


def kept(client: TestClient) -> list[dict[str, Any]]:
    return seed.fetch_all(client, tables.kept_cvs.select())


def stored_cv(client: TestClient) -> bytes:
    [row] = seed.fetch_all(client, tables.cv_files.select())
    return bytes(row["data"])


def test_a_valid_cv_is_kept_while_another_field_is_fixed(client: TestClient, page: str) -> None:
    wrong = client.post(FORM, data=fields(page, phone="12"), files={"cv": ("Mon CV.pdf", seed.PDF, "x/y")})
    assert wrong.status_code == 422
    assert "CV reçu : <strong>Mon-CV.pdf</strong> ✓" in wrong.text
    assert "Changer de fichier" in wrong.text
    assert "choisi à nouveau" not in wrong.text and "sécurité" not in wrong.text
    assert (
        'name="cv" class="file-input" accept' in wrong.text and " required data-max-bytes" not in wrong.text
    )
    [row] = kept(client)
    assert bytes(row["data"]) == seed.PDF and row["filename"] == "Mon-CV.pdf"
    token = seed.state(client).form_tokens.read(form_token(wrong.text))
    assert token.kept_cv == row["id"]

    # Wrong again (the kept CV moves to the next page's token), then right: no file sent.
    again = client.post(FORM, data=fields(wrong.text, email="pas-un-email"))
    assert again.status_code == 422 and "CV reçu" in again.text
    assert [r["id"] for r in kept(client)] == [row["id"]]
    done = client.post(FORM, data=fields(again.text))
    assert done.status_code == 200, done.text
    assert stored_cv(client) == seed.PDF
    # In cv_files now; the kept copy only answers the same page posted again.
    [row] = kept(client)
    left = row["expires_at"] - dt.datetime.now(dt.UTC)
    assert dt.timedelta(0) < left <= dt.timedelta(seconds=kept_cvs.REPOST_SECONDS)


def test_the_same_page_posted_twice_with_a_kept_cv_makes_one_request(client: TestClient, page: str) -> None:
    wrong = client.post(FORM, data=fields(page, phone="12"), files=cv())
    first = client.post(FORM, data=fields(wrong.text))
    second = client.post(FORM, data=fields(wrong.text))  # a double click
    assert first.status_code == second.status_code == 200, second.text
    [stored] = seed.fetch_all(client, tables.contact_requests.select())
    assert f'data-lba-submitted="{stored["id"]}"' in second.text


def test_a_new_file_replaces_the_kept_one(client: TestClient, page: str) -> None:
    wrong = client.post(FORM, data=fields(page, phone="12"), files=cv())
    [first] = kept(client)
    other = seed.PDF.replace(b"/Producer (pypdf)", b"/Producer (autre)")
    again = client.post(FORM, data=fields(wrong.text, phone="12"), files=cv(other))
    [second] = kept(client)
    assert second["id"] != first["id"] and bytes(second["data"]) == other
    done = client.post(FORM, data=fields(again.text))
    assert done.status_code == 200, done.text
    assert stored_cv(client) == other


def test_a_refused_cv_is_not_kept_and_drops_the_kept_one(client: TestClient, page: str) -> None:
    wrong = client.post(FORM, data=fields(page, phone="12"), files=cv())
    assert len(kept(client)) == 1
    refused = client.post(FORM, data=fields(wrong.text, phone="12"), files=cv(b"GIF89a not a cv"))
    assert 'id="cv-error"' in refused.text
    assert "CV reçu" not in refused.text
    assert kept(client) == []
    assert seed.state(client).form_tokens.read(form_token(refused.text)).kept_cv == ""


def test_a_kept_cv_is_read_from_the_signed_token_only(client: TestClient, page: str) -> None:
    wrong = client.post(FORM, data=fields(page, phone="12"), files=cv())
    [row] = kept(client)
    # A fresh page of the same form, naming the kept CV in posted fields: ignored.
    fresh = client.get(FORM, params={"offer_id": seed.OFFER_ID, "caller": "mon-site"}).text
    forged = client.post(FORM, data=fields(fresh, kept_cv=row["id"], cv=row["id"]))
    assert forged.status_code == 422 and 'id="cv-error"' in forged.text
    # A token naming the kept CV, made without the server's key.
    genuine = seed.state(client).form_tokens.read(form_token(wrong.text))
    forged_token = URLSafeSerializer("not-the-key", salt="form-token").dumps(
        [genuine.kind, genuine.target, genuine.caller, genuine.issued_at, row["id"]]
    )
    response = client.post(FORM, data=fields(fresh, form_token=forged_token))
    assert response.status_code == 400 and "a expiré" in response.text
    assert seed.fetch_all(client, tables.contact_requests.select()) == []


def test_an_older_page_of_the_form_no_longer_brings_the_kept_cv(client: TestClient, page: str) -> None:
    wrong = client.post(FORM, data=fields(page, phone="12"), files=cv())
    client.post(FORM, data=fields(wrong.text, phone="13"))  # the kept CV moves to a newer page
    # The older page (its token is genuine and unexpired, e.g. the back button).
    response = client.post(FORM, data=fields(wrong.text))
    assert response.status_code == 422 and 'id="cv-error"' in response.text
    assert seed.fetch_all(client, tables.contact_requests.select()) == []


def test_an_expired_kept_cv_is_not_used_and_purge_deletes_it(client: TestClient, page: str) -> None:
    from widget_server.retention import purge

    wrong = client.post(FORM, data=fields(page, phone="12"), files=cv())
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    state = seed.state(client)
    seed.run(client, state.database.execute, tables.kept_cvs.update().values(expires_at=past))
    response = client.post(FORM, data=fields(wrong.text))
    assert response.status_code == 422 and 'id="cv-error"' in response.text
    assert kept(client) == []  # and gone at once
    # One the candidate never came back for: purge deletes it once expired.
    client.post(FORM, data=fields(response.text, phone="12"), files=cv())
    seed.run(client, state.database.execute, tables.kept_cvs.update().values(expires_at=past))
    report = seed.run(client, purge, state.database, state.settings)
    assert report.kept_cvs_deleted == 1
    assert "Expired CVs kept across form errors deleted: 1" in report.summary()
    assert kept(client) == []


def test_too_fast_says_to_wait_and_keeps_everything(tmp_path: Any) -> None:
    with TestClient(create_app(make_settings(tmp_path, FORM_MIN_FILL_SECONDS="60"))) as client:
        seed.offer(client)
        page = client.get(FORM, params={"offer_id": seed.OFFER_ID}).text
        response = client.post(FORM, data=fields(page), files=cv())
        assert response.status_code == 400
        text = html.unescape(response.text)
        assert "attendez quelques secondes, puis renvoyez-le" in text
        assert "CV reçu : <strong>cv.pdf</strong> ✓" in text
        assert 'value="Moreau"' in response.text and "Bonjour !</textarea>" in text
        assert len(kept(client)) == 1
        assert seed.fetch_all(client, tables.contact_requests.select()) == []


def test_rdv_summary_links_go_to_the_first_option_of_each_group(client: TestClient) -> None:
    seed.formation(client)
    page = client.get("/widget/v1/rdv", params={"formation_id": seed.FORMATION_ID}).text
    data = {k: v for k, v in fields(page).items() if k != "offer_id"}
    response = client.post("/widget/v1/rdv", data={**data, "formation_id": seed.FORMATION_ID})
    assert response.status_code == 422
    assert '<a href="#role-student">' in response.text and 'id="role-student"' in response.text
    assert '<a href="#topic-modalites">' in response.text and 'id="topic-modalites"' in response.text


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "lea.moreau@example.org", ""),
        ("email", "pas-un-email", "Cette adresse e-mail n'est pas valide"),
        ("email", "x@mailinator.com", "jetables"),
        ("phone", "06 12 34 56 78", ""),
        ("phone", "08 99 12 34 56", "surtaxés"),
        ("phone", "12", "n'est pas valide"),
    ],
)
def test_a_field_is_checked_by_the_servers_rules(
    client: TestClient, field: str, value: str, message: str
) -> None:
    response = client.post("/widget/v1/check", data={"field": field, "value": value})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["field"] == field
    assert (message in response.json()["message"]) if message else response.json()["message"] == ""


@pytest.mark.parametrize("data", [{"field": "last_name", "value": "x"}, {"field": "email"}, {"value": "x"}])
def test_a_check_of_anything_else_is_a_400(client: TestClient, data: dict[str, str]) -> None:
    assert client.post("/widget/v1/check", data=data).status_code == 400
    assert client.post("/widget/v1/check", data={"field": "email", "value": "a" * 1001}).status_code == 400


def test_field_checks_are_rate_limited_per_client(tmp_path: Any) -> None:
    with TestClient(create_app(make_settings(tmp_path, RATE_LIMIT="2/minute"))) as client:
        answers = [
            client.post("/widget/v1/check", data={"field": "email", "value": "a@b.fr"}).status_code
            for _ in range(3)
        ]
        assert answers == [200, 200, 429]


def test_kept_cvs_have_a_ceiling_then_the_file_is_chosen_again(tmp_path: Any) -> None:
    settings = make_settings(tmp_path, KEPT_CVS_MAX_BYTES=str(len(seed.PDF) + 10))
    with TestClient(create_app(settings)) as client:
        seed.offer(client)

        def wrong_phone() -> Any:
            page = client.get(FORM, params={"offer_id": seed.OFFER_ID, "caller": "mon-site"}).text
            return client.post(FORM, data=fields(page, phone="12"), files=cv())

        first = wrong_phone()
        assert "CV reçu" in first.text
        second = wrong_phone()
        assert second.status_code == 422
        assert "CV reçu" not in second.text and " required data-max-bytes" in second.text
        assert seed.state(client).form_tokens.read(form_token(second.text)).kept_cv == ""
        assert len(kept(client)) == 1
        # The kept one still moves along its own form.
        again = client.post(FORM, data=fields(first.text, phone="13"))
        assert "CV reçu" in again.text
