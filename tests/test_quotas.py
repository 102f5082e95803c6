"""Who a quota counts: a person by their case-folded email, a form caller by the
name signed into its form token (never a posted field), apart from the API key
of the same name; and the offer's application cap, exact under concurrency."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests import seed
from tests.support import application, make_settings
from widget_server import contact_requests, tables
from widget_server.app import create_app
from widget_server.kinds import CANDIDATURE
from widget_server.problems import Problem

FORM = "/widget/v1/candidature"


def post(client: TestClient, key: str, body: dict[str, Any], path: str = "/api/v1/applications") -> Any:
    return client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})


def post_form(client: TestClient, offer_id: str, signed_caller: str, **fields: str) -> Any:
    """Opens the form page as `signed_caller`'s widget would, then sends it with `fields`."""
    page = client.get(FORM, params={"offer_id": offer_id, "caller": signed_caller})
    assert page.status_code == 200, page.text
    match = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert match
    data = {
        "form_token": match.group(1),
        "offer_id": offer_id,
        "caller": signed_caller,
        "last_name": "Moreau",
        "first_name": "Léa",
        "email": "lea.moreau@example.org",
        "phone": "06 12 34 56 78",
        **fields,
    }
    return client.post(FORM, data=data, files={"cv": ("cv.pdf", seed.PDF, "application/pdf")})


def app_client(tmp_path: Path, **settings: str) -> TestClient:
    return TestClient(create_app(make_settings(tmp_path, **settings)))


# --- a person is their case-folded email ------------------------------------------


def test_letter_case_makes_no_new_person_for_three_per_target(client: TestClient) -> None:
    seed.offer(client)
    key = seed.api_key(client)
    for email in ("lea.moreau@example.org", "Lea.Moreau@Example.org", "LEA.MOREAU@EXAMPLE.ORG"):
        assert post(client, key, application(email=email)).status_code == 202
    refused = post(client, key, application(email="lEa.mOreau@example.ORG"))
    assert refused.status_code == 409 and refused.json()["code"] == "duplicate"
    # What the candidate typed is kept for writing to them; the domain is lower case.
    stored = seed.fetch_all(client, tables.contact_requests.select())
    assert [r["email"] for r in stored][1] == "Lea.Moreau@example.org"
    assert {r["email_key"] for r in stored} == {"lea.moreau@example.org"}


def test_letter_case_makes_no_new_person_for_the_daily_quota(tmp_path: Path) -> None:
    with app_client(tmp_path, APPLICATIONS_PER_DAY="2") as client:
        for offer_id in ("O-1", "O-2", "O-3"):
            seed.offer(client, offer_id)
        key = seed.api_key(client)
        assert post(client, key, application(offer_id="O-1", email="x@example.org")).status_code == 202
        assert post(client, key, application(offer_id="O-2", email="X@example.org")).status_code == 202
        refused = post(client, key, application(offer_id="O-3", email="X@EXAMPLE.ORG"))
        assert refused.status_code == 429 and refused.json()["code"] == "quota"


def test_letter_case_makes_no_new_person_for_the_rdv_interval(client: TestClient) -> None:
    seed.formation(client)
    key = seed.api_key(client)
    body = {
        "formation_id": seed.FORMATION_ID,
        "first_name": "Yanis",
        "last_name": "Benali",
        "email": "yanis.benali@example.org",
        "phone": "06 98 76 54 32",
        "role": "student",
        "topics": ["places"],
    }
    path = "/api/v1/appointment-requests"
    assert post(client, key, body, path).status_code == 202
    refused = post(client, key, {**body, "email": "Yanis.BENALI@Example.Org"}, path)
    assert refused.status_code == 409 and refused.json()["code"] == "duplicate"


# --- a form's caller is the one its token was signed for --------------------------


def test_a_posted_caller_changes_nothing(client: TestClient) -> None:
    seed.offer(client)
    page = client.get(FORM, params={"offer_id": seed.OFFER_ID, "caller": "mon-site"})
    token = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert token
    response = client.post(
        FORM,
        data={
            "form_token": token.group(1),
            "offer_id": seed.OFFER_ID,
            "caller": "pirate",
            "last_name": "Moreau",
            "first_name": "Léa",
            "email": "lea.moreau@example.org",
            "phone": "06 12 34 56 78",
        },
        files={"cv": ("cv.pdf", seed.PDF, "application/pdf")},
    )
    assert response.status_code == 200, response.text
    [stored] = seed.fetch_all(client, tables.contact_requests.select())
    assert (stored["caller"], stored["caller_origin"]) == ("mon-site", "form")


def test_rotating_the_posted_caller_does_not_dodge_the_per_company_cap(tmp_path: Path) -> None:
    with app_client(tmp_path, CALLER_APPLICATIONS_PER_COMPANY_PER_DAY="2") as client:
        for offer_id in ("O-1", "O-2", "O-3"):  # one company, three offers
            seed.offer(client, offer_id)
        codes = [
            post_form(
                client, f"O-{i}", "mon-site", caller=f"rotated-{i}", email=f"c{i}@example.org"
            ).status_code
            for i in (1, 2, 3)
        ]
        assert codes == [200, 200, 429]


def test_form_submissions_never_spend_the_partner_keys_quota(tmp_path: Path) -> None:
    with app_client(tmp_path, CALLER_APPLICATIONS_PER_COMPANY_PER_DAY="2") as client:
        for offer_id in ("O-1", "O-2", "O-3", "O-4"):
            seed.offer(client, offer_id)
        # Anyone can open the form in the partner's name and use up the form counter…
        for i in (1, 2):
            assert post_form(client, f"O-{i}", "mon-site", email=f"c{i}@example.org").status_code == 200
        assert post_form(client, "O-3", "mon-site", email="c3@example.org").status_code == 429
        # …the partner's own key still has its whole allowance.
        key = seed.api_key(client, "mon-site")
        for i in (3, 4):
            response = post(client, key, application(offer_id=f"O-{i}", email=f"k{i}@example.org"))
            assert response.status_code == 202, response.text
        assert post(client, key, application(offer_id="O-1", email="k5@example.org")).status_code == 429


# --- the offer's application cap --------------------------------------------------


def test_the_application_cap_holds_under_concurrent_submissions(tmp_path: Path) -> None:
    with app_client(tmp_path, OFFER_MAX_APPLICATIONS="80") as client:
        seed.offer(client, application_count=79)
        state = seed.state(client)

        async def one(index: int) -> str:
            submission = contact_requests.Submission(
                kind=CANDIDATURE,
                fields=application(email=f"c{index}@example.org", cv=None),
                caller="mon-site",
                caller_origin="key",
                cv_filename="cv.pdf",
                cv_data=seed.PDF,
            )
            try:
                await contact_requests.submit(state, submission)
            except Problem as problem:
                return str(problem.code)
            return "accepted"

        async def all_at_once() -> list[str]:
            return list(await asyncio.gather(*(one(i) for i in range(10))))

        outcomes = seed.run(client, all_at_once)
        assert sorted(outcomes) == ["accepted"] + ["closed"] * 9
        [offer] = seed.fetch_all(client, tables.offers.select())
        assert offer["application_count"] == 80
        assert len(seed.fetch_all(client, tables.contact_requests.select())) == 1


@pytest.mark.parametrize("count", [80, 81])
def test_an_offer_at_its_cap_is_refused(client: TestClient, count: int) -> None:
    seed.offer(client, application_count=count)
    key = seed.api_key(client)
    response = post(client, key, application())
    assert response.status_code == 409 and response.json()["code"] == "closed"
