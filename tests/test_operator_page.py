"""The operator page: reached only through a signed, expiring link, never framed,
figures that match the database, and no candidate's personal data."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests import seed
from widget_server import cli, operator_page, tables
from widget_server.settings import Secret, Settings

CANDIDATE = {"first_name": "Philomène", "last_name": "Quatrebarbes", "email": "philomene.q@example.org"}


def path_of(link: str) -> str:
    return link.removeprefix("http://testserver")


def request_row(
    client: TestClient,
    request_id: str,
    created_at: dt.datetime,
    *,
    kind: str = "candidature",
    caller: str = "site-a",
    status: str = "delivered",
    answered_after: dt.timedelta | None = None,
    delivered: bool = True,
) -> None:
    seed.insert(
        client,
        tables.contact_requests,
        id=request_id,
        kind=kind,
        target_kind="offer" if kind == "candidature" else "formation",
        target_ref="OFF-001",
        caller=caller,
        phone="+33612345678",
        contact_email="recrutement@boulangerie.example",
        status=status,
        answered_at=created_at + answered_after if answered_after else None,
        created_at=created_at,
        updated_at=created_at,
        **CANDIDATE,
    )
    if delivered:
        seed.insert(
            client,
            tables.outbox,
            request_id=request_id,
            template="candidature_pro" if kind == "candidature" else "rdv_pro",
            recipient="recrutement@boulangerie.example",
            message_id=f"<{request_id}@lba.example>",
            raw=b"",
            attach_cv=False,
            status="sent",
            attempts=0,
            next_attempt_at=created_at,
            created_at=created_at,
            sent_at=created_at,
        )


@pytest.fixture
def seeded(client: TestClient) -> list[dt.datetime]:
    """Four requests in the last two weeks, one older, one opt-out this week."""
    bounds = operator_page.week_starts(dt.datetime.now(dt.UTC))
    last_week, this_week = bounds[-3] + dt.timedelta(days=1), bounds[-2] + dt.timedelta(minutes=5)
    request_row(client, "r1", last_week, answered_after=dt.timedelta(hours=5))
    request_row(client, "r2", last_week)
    request_row(client, "r3", last_week, kind="rdv", caller="site-b", status="bounced", delivered=False)
    request_row(client, "r4", this_week, answered_after=dt.timedelta(hours=30))
    request_row(client, "old", bounds[0] - dt.timedelta(days=1), answered_after=dt.timedelta(hours=1))
    seed.insert(client, tables.contacts, email="rh@garage.example", company_opt_out_at=this_week)
    return bounds


def figure(page: str, name: str) -> str:
    match = re.search(rf'data-figure="{name}">([^<]*)<', page)
    assert match, name
    return match[1]


def test_the_figures_match_the_database(client: TestClient, settings: Settings, seeded: list[Any]) -> None:
    data = seed.run(client, operator_page.figures, seed.state(client).database)
    last, this = data.weeks[-2], data.weeks[-1]
    assert (last.requests, last.delivered, last.bounced, last.answered) == (
        {"candidature": 2, "rdv": 1},
        2,
        1,
        1,
    )
    assert (this.requests, this.delivered, this.answered, this.opt_outs) == ({"candidature": 1}, 1, 1, 1)
    assert sum(w.total for w in data.weeks) == 4  # the older request is out of the window
    assert data.partners == [("site-a", [0] * 10 + [2, 1]), ("site-b", [0] * 10 + [1, 0])]

    response = client.get(path_of(operator_page.signed_link(settings, 1)))
    assert response.status_code == 200
    page = response.text
    assert figure(page, "requests") == "4"
    assert figure(page, "requests-candidature") == "3"
    assert figure(page, "requests-rdv") == "1"
    assert figure(page, "delivered") == "3"
    assert figure(page, "bounced") == "1"
    assert figure(page, "answered") == "2"
    assert figure(page, "reply-rate") == "66,7 %"
    assert figure(page, "median-delay") == "17,5 h"  # median of 5 h and 30 h
    assert figure(page, "opt-outs") == "1"
    # The chart's table: one row per week, one column per kind.
    label = f"{data.weeks[-2].start:%d/%m}"
    table = page.split('id="requests-table"')[1].split("</table>")[0]
    assert re.search(rf'<th scope="row">{label}</th><td>2</td><td>1</td>', table)


def test_charts_are_accessible_svg_with_tables_and_no_script(
    client: TestClient, settings: Settings, seeded: list[Any]
) -> None:
    page = client.get(path_of(operator_page.signed_link(settings, 1))).text
    charts = re.findall(r"<svg[^>]*>.*?</svg>", page, re.S)
    assert len(charts) == 4
    for svg in charts:
        ids = re.search(r'role="img" aria-labelledby="([\w-]+) ([\w-]+)"', svg)
        assert ids, svg[:200]
        assert f'<title id="{ids[1]}">' in svg and f'<desc id="{ids[2]}">' in svg
    assert page.count("<table") == 6 and '<th scope="col">' in page and '<th scope="row">' in page
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert '<html lang="fr">' in page


def test_no_candidate_data_on_the_page(client: TestClient, settings: Settings, seeded: list[Any]) -> None:
    page = client.get(path_of(operator_page.signed_link(settings, 1))).text
    for value in (*CANDIDATE.values(), "+33612345678", "recrutement@boulangerie.example", "rh@garage"):
        assert value not in page
    text = re.sub(r"<style.*?</style>", "", page, flags=re.S)
    assert not re.search(r"[\w.+-]+@[\w-]+", text)  # no address at all


def test_the_page_is_never_framed_nor_cached(client: TestClient, settings: Settings) -> None:
    response = client.get(path_of(operator_page.signed_link(settings, 1)))
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce and f'<style nonce="{nonce[1]}">' in response.text
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_a_bad_or_expired_link_shows_nothing(
    client: TestClient, settings: Settings, seeded: list[Any]
) -> None:
    good = path_of(operator_page.signed_link(settings, 1))
    token = good.rsplit("/", 1)[1]
    forged = operator_page.signed_link(settings.replace(secret_key=Secret("another-key")), 1)
    for bad in (
        f"/operator/{token[:-2]}xx",
        "/operator/nothing",
        path_of(forged),
        "/operator/" + "a" * 5000,
    ):
        response = client.get(bad)
        assert response.status_code == 404, bad
        assert 'data-figure="' not in response.text
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    expired = operator_page.signed_link(settings, 1, now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    response = client.get(path_of(expired))
    assert response.status_code == 403
    assert "expiré" in response.text and 'data-figure="' not in response.text
    assert client.get("/operator/").status_code == 404


def test_the_operator_link_command_prints_a_working_link(
    client: TestClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("DATABASE_URL", "VAR_DIR", "SECRET_KEY", "PUBLIC_URL"):
        value = getattr(settings, name.lower())
        monkeypatch.setenv(name, value.reveal() if isinstance(value, Secret) else str(value))
    assert cli.main(["operator-link", "--hours", "2"]) == 0
    link = capsys.readouterr().out.strip()
    assert link.startswith("http://testserver/operator/")
    assert client.get(path_of(link)).status_code == 200
    for hours in ("0", "-1", "721", "soon"):
        with pytest.raises(SystemExit):
            cli.main(["operator-link", "--hours", hours])
