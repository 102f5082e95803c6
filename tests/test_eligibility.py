from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.seed import run, state
from widget_server import directory, tables
from widget_server import eligibility as eligibility_module
from widget_server.api import MAX_QUERY_BYTES, MAX_TARGETS
from widget_server.database import fetch_tuples
from widget_server.targets import parse_target

# The demo directory (examples/data), one target per reason.
EXPECTED: dict[str, tuple[str | None, str | None, str | None]] = {
    # target: (reason, name, city)
    "offer:LBA-2026-01007": (None, "Apprenti boulanger (H/F) – CAP Boulanger", "Lyon"),
    "offer:LBA-2026-01014": (None, "Apprenti mécanicien automobile (H/F)", "Nantes"),
    "offer:LBA-2026-01021": (
        None,
        "Apprentie ou apprenti coiffeur (H/F) – CAP Métiers de la coiffure",
        "Bordeaux",
    ),
    "offer:LBA-2026-01028": ("closed", "Vendeur en boulangerie-pâtisserie en alternance (H/F)", "Lyon"),
    "offer:LBA-2024-00505": ("closed", "Apprenti menuisier fabricant (H/F)", "Lille"),
    "offer:LBA-2026-01042": ("no_contact", "Apprenti plombier chauffagiste (H/F)", "Montpellier"),
    "offer:LBA-2026-01049": ("bounced", "Apprenti électricien (H/F) – Bac pro MELEC", "Strasbourg"),
    "offer:LBA-0000-00000": ("unknown_target", None, None),
    "company:90103791900015": (None, "Boulangerie Ferrand", "Lyon"),
    "company:90207483800019": (None, "Garage Lemaire Automobiles", "Nantes"),
    "company:90311175700014": (None, "Salon Coiff'Émilie", "Bordeaux"),
    "company:90518559500014": ("no_contact", "Pharmacie du Marché Victor-Hugo", "Toulouse"),
    "company:90622251400018": ("opted_out", "Restaurant Le Petit Zinc", "Rennes"),
    "company:90725943300015": ("bounced", "Électricité Kieffer", "Strasbourg"),
    "company:99900000000011": ("unknown_target", None, None),
    "formation:004111P011010530070001510105300700015-69383#L01": (None, "CAP Boulanger", "Lyon"),
    "formation:008222P011021060140001610210601400016-33063#L01": (
        None,
        "BTS Management commercial opérationnel",
        "Bordeaux",
    ),
    "formation:012333P011031590210001510315902100015-44109#L01": (
        None,
        "Bac pro Maintenance des véhicules option voitures particulières",
        "Nantes",
    ),
    "formation:016444P011042120280001310421202800013-59350#L01": (
        "no_contact",
        "Titre professionnel Développeur web et web mobile",
        "Lille",
    ),
    "formation:020555P011052650350001110526503500011-31555#L01": (
        "opted_out",
        "CAP Métiers de la coiffure",
        "Toulouse",
    ),
    "formation:024666P011063180420001210631804200012-35238#L01": (
        "bounced",
        "BTS Services informatiques aux organisations",
        "Rennes",
    ),
    "formation:CME-UNKNOWN": ("unknown_target", None, None),
}


@pytest.fixture
def demo(client: TestClient) -> TestClient:
    assert run(client, directory.load_demo, state(client).database) is True
    return client


def eligibility(client: TestClient, targets: list[str]) -> Any:
    return client.get("/api/v1/eligibility", params=[("target", t) for t in targets])


def test_demo_targets_answer_every_reason(demo: TestClient) -> None:
    response = eligibility(demo, list(EXPECTED))
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["target"] for r in results] == list(EXPECTED)
    for result in results:
        reason, name, city = EXPECTED[result["target"]]
        assert result == {
            "target": result["target"],
            "eligible": reason is None,
            "reason": reason,
            "name": name,
            "city": city,
        }
    reasons = {r["reason"] for r in results}
    assert reasons == {None, "closed", "no_contact", "opted_out", "bounced", "unknown_target"}


def test_an_opted_out_company_still_takes_applications_to_its_offers(demo: TestClient) -> None:
    # The opt-out is from spontaneous applications only; the restaurant's contact
    # is reused on an offer here to show it.
    run(
        demo,
        state(demo).database.execute,
        tables.offers.update()
        .where(tables.offers.c.offer_id == "LBA-2026-01007")
        .values(contact_email="chef@lepetitzinc.example"),
    )
    [result] = eligibility(demo, ["offer:LBA-2026-01007"]).json()["results"]
    assert result["eligible"] is True


def test_an_offer_closes_after_the_maximum_number_of_applications(demo: TestClient) -> None:
    limit = state(demo).settings.offer_max_applications

    def set_count(count: int) -> Any:
        return run(
            demo,
            state(demo).database.execute,
            tables.offers.update()
            .where(tables.offers.c.offer_id == "LBA-2026-01014")
            .values(application_count=count),
        )

    set_count(limit - 1)
    assert eligibility(demo, ["offer:LBA-2026-01014"]).json()["results"][0]["reason"] is None
    set_count(limit)
    assert eligibility(demo, ["offer:LBA-2026-01014"]).json()["results"][0]["reason"] == "closed"


def test_a_hundred_targets_are_answered_in_order(demo: TestClient) -> None:
    targets = [*EXPECTED, *(f"offer:NEW-{n}" for n in range(100 - len(EXPECTED)))]
    response = eligibility(demo, targets)
    assert response.status_code == 200
    assert [r["target"] for r in response.json()["results"]] == targets


def assert_problem(response: Any, fields: list[str]) -> None:
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 400
    assert [e["field"] for e in body["errors"]] == fields


def test_more_than_a_hundred_targets_is_refused(demo: TestClient) -> None:
    assert_problem(eligibility(demo, [f"offer:OFF-{n}" for n in range(101)]), ["target"])


def test_no_target_is_refused(demo: TestClient) -> None:
    assert_problem(demo.get("/api/v1/eligibility"), ["target"])


def invalid(target: str) -> dict[str, Any]:
    return {"target": target, "eligible": False, "reason": "invalid_target", "name": None, "city": None}


def test_a_malformed_target_gets_its_own_result_and_the_others_are_answered(demo: TestClient) -> None:
    asked = ["offer:LBA-2026-01007", "LBA-2026-01007", "job:1", "offer:a b", "company:90622251400018"]
    response = eligibility(demo, asked)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    results = response.json()["results"]
    assert [r["target"] for r in results] == asked
    assert results[0]["eligible"] is True
    assert results[1:4] == [invalid("LBA-2026-01007"), invalid("job:1"), invalid("offer:a b")]
    assert results[4]["reason"] == "opted_out"


def test_a_siret_with_a_bad_key_is_an_invalid_target(demo: TestClient) -> None:
    asked = ["company:90103791900016", "company:123", "company:90103791900015"]
    results = eligibility(demo, asked).json()["results"]
    assert results[:2] == [invalid("company:90103791900016"), invalid("company:123")]
    assert results[2]["eligible"] is True


def test_a_malformed_target_is_echoed_as_json_whatever_it_holds(demo: TestClient) -> None:
    hostile = ['offer:"}]<script>\u2028', "offer:\r\nX-Injected: 1", "formation:" + "é" * 300, ""]
    response = eligibility(demo, hostile)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["results"] == [invalid(t) for t in hostile]
    assert "x-injected" not in response.headers


def test_a_query_longer_than_any_hundred_targets_is_refused_before_it_is_parsed(demo: TestClient) -> None:
    # The longest well-formed batch (100 formation ids of 100 characters, each
    # one percent-encoded) fits; one byte more than the limit does not.
    longest = ["formation:A" + "#" * 99] * MAX_TARGETS
    assert eligibility(demo, longest).status_code == 200
    query = "target=" + "x" * (MAX_QUERY_BYTES - len("target="))
    assert demo.get(f"/api/v1/eligibility?{query}").status_code == 200
    response = demo.get(f"/api/v1/eligibility?{query}x")
    assert_problem(response, ["target"])
    assert response.headers["access-control-allow-origin"] == "*"


def test_more_than_a_hundred_targets_is_refused_even_malformed(demo: TestClient) -> None:
    assert_problem(eligibility(demo, ["x"] * 101), ["target"])


@pytest.fixture
def queries(demo: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    # The database the widget's read path asks (on SQLite, a read-only view of the file).
    database = state(demo).eligibility_cache.database
    seen: list[str] = []
    for method in ("fetch_all", "fetch_one", "fetch_val", "execute", "execute_many", "iterate"):
        original = getattr(database, method)

        def counting(query: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            seen.append(str(query))
            return _original(query, *args, **kwargs)

        monkeypatch.setattr(database, method, counting)
    # The widget's lean read (statements written for the driver).
    lean = fetch_tuples

    async def lean_counting(database: Any, statements: Any, args: Any) -> Any:
        seen.append(statements[database.url.dialect])
        return await lean(database, statements, args)

    monkeypatch.setattr(eligibility_module, "fetch_tuples", lean_counting)
    yield seen


def test_one_query_whatever_the_number_and_kinds_of_targets(demo: TestClient, queries: list[str]) -> None:
    assert eligibility(demo, list(EXPECTED)).status_code == 200
    assert len(queries) == 1
    queries.clear()
    offers = [t for t in EXPECTED if t.startswith("offer:")] + [f"offer:X-{n}" for n in range(50)]
    assert eligibility(demo, offers).status_code == 200
    assert len(queries) == 1
    assert "offers" in queries[0]


def test_the_lean_read_and_the_submissions_read_give_the_same_answers(demo: TestClient) -> None:
    # The widget's read (eligibility.answers) and the one submissions use
    # (check_many) apply one rule to the same rows.
    targets = [parse_target(t) for t in EXPECTED]
    database = state(demo).database
    run(  # one offer at a cap of 2 applications, to see the cap applied by both
        demo,
        database.execute,
        tables.offers.update()
        .where(tables.offers.c.offer_id == "LBA-2026-01014")
        .values(application_count=2),
    )
    full = run(demo, partial(eligibility_module.check_many, database, targets, max_offer_applications=2))
    assert {r.reason for r in full} == {None, *eligibility_module.REASONS}
    # Through the service's database and through the widget's (on SQLite, read inline).
    for reads in (database, state(demo).eligibility_cache.database):
        lean = run(demo, partial(eligibility_module.answers, reads, targets, max_offer_applications=2))
        assert lean is not None
        assert [lean[t] for t in targets] == [result.as_json() for result in full]
    assert lean is not None and lean[parse_target("offer:LBA-2026-01014")]["reason"] == "closed"
