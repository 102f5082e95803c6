"""The widget's read path answers from memory, within SPEC's promise: an opt-out,
a bounce or a closure hides the button within 5 seconds on every instance."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests import seed
from tests.support import make_settings
from widget_server import eligibility_cache, tables
from widget_server.app import create_app
from widget_server.eligibility_cache import (
    CACHE_SECONDS,
    HTTP_MAX_AGE,
    PROMISE_SECONDS,
    EligibilityCache,
)
from widget_server.targets import Target

CONTACT = "contact@garage-durand.example"
OFFER_CONTACT = "recrutement@boulangerie.example"


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient, Clock]]:
    """Two instances of the service on one database; the first one's cache runs on a test clock."""
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        clock = Clock()
        seed.state(first).eligibility_cache.clock = clock
        seed.company(second)
        seed.offer(second)
        yield first, second, clock


def ask(client: TestClient, target: str) -> dict[str, Any]:
    response = client.get("/api/v1/eligibility", params={"target": target})
    assert response.status_code == 200
    [result] = response.json()["results"]
    return dict(result)


def write(client: TestClient, query: Any) -> None:
    seed.run(client, seed.state(client).database.execute, query)


def opt_out(client: TestClient) -> None:
    write(
        client,
        tables.contacts.insert().values(email=CONTACT, company_opt_out_at=seed.NOW),
    )


def bounce(client: TestClient) -> None:
    write(
        client,
        tables.contacts.insert().values(email=OFFER_CONTACT, bounced_at=seed.NOW, bounce_reason="550"),
    )


def close(client: TestClient) -> None:
    write(
        client,
        tables.offers.update().where(tables.offers.c.offer_id == seed.OFFER_ID).values(status="closed"),
    )


WRITES: dict[str, tuple[str, Callable[[TestClient], None], str]] = {
    "opt-out": (f"company:{seed.SIRET}", opt_out, "opted_out"),
    "bounce": (f"offer:{seed.OFFER_ID}", bounce, "bounced"),
    "closure": (f"offer:{seed.OFFER_ID}", close, "closed"),
}


@pytest.mark.parametrize("name", list(WRITES))
def test_a_write_through_another_instance_is_seen_within_the_promise(
    instances: tuple[TestClient, TestClient, Clock], name: str
) -> None:
    first, second, clock = instances
    target, change, reason = WRITES[name]
    assert ask(first, target)["eligible"] is True
    change(second)
    # The first instance answers from memory for a while (this is the cache at work)…
    clock.now += CACHE_SECONDS - 0.5
    assert ask(first, target)["eligible"] is True
    # …and no longer than CACHE_SECONDS after it read the rows.
    clock.now += 0.5
    result = ask(first, target)
    assert result["eligible"] is False and result["reason"] == reason


@pytest.mark.parametrize("name", list(WRITES))
def test_a_write_through_this_instance_is_seen_at_once(
    instances: tuple[TestClient, TestClient, Clock], name: str
) -> None:
    first, _, _ = instances
    target, change, reason = WRITES[name]
    assert ask(first, target)["eligible"] is True
    change(first)
    assert ask(first, target)["reason"] == reason


def test_the_cache_and_the_browser_together_keep_the_promise(client: TestClient) -> None:
    assert CACHE_SECONDS + HTTP_MAX_AGE <= PROMISE_SECONDS
    response = client.get("/api/v1/eligibility", params={"target": f"offer:{seed.OFFER_ID}"})
    assert response.headers["cache-control"] == f"public, max-age={HTTP_MAX_AGE}"
    with pytest.raises(ValueError, match="promised"):
        EligibilityCache(seed.state(client).database, 80, seconds=PROMISE_SECONDS)


def test_the_same_page_is_answered_the_same_from_memory(
    instances: tuple[TestClient, TestClient, Clock],
) -> None:
    first, _, _ = instances
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("target", f"offer:{seed.OFFER_ID}"),
        ("target", "offer:NOPE"),
        ("target", f"company:{seed.SIRET}"),
    ]
    fresh = first.get("/api/v1/eligibility", params=params)
    again = first.get("/api/v1/eligibility", params=params)
    assert fresh.content == again.content
    assert [r["target"] for r in again.json()["results"]] == [t for _, t in params]
    assert seed.state(first).eligibility_cache.hits == 1


def test_a_submission_reads_the_cap_from_the_database_not_from_the_cache(
    instances: tuple[TestClient, TestClient, Clock],
) -> None:
    first, second, _ = instances
    limit = seed.state(first).settings.offer_max_applications
    offers = tables.offers
    write(
        second,
        offers.update().where(offers.c.offer_id == seed.OFFER_ID).values(application_count=limit - 1),
    )
    assert ask(first, f"offer:{seed.OFFER_ID}")["eligible"] is True
    # Another instance takes the last place; the first still shows the button…
    write(
        second,
        offers.update().where(offers.c.offer_id == seed.OFFER_ID).values(application_count=limit),
    )
    assert ask(first, f"offer:{seed.OFFER_ID}")["eligible"] is True
    # …but refuses the application: the cap is checked against the database.
    key = seed.api_key(first)
    response = first.post(
        "/api/v1/applications",
        headers={"Authorization": f"Bearer {key}"},
        data={
            "offer_id": seed.OFFER_ID,
            "first_name": "Léa",
            "last_name": "Moreau",
            "email": "lea.moreau@example.org",
            "phone": "06 12 34 56 78",
        },
        files={"cv": ("cv.pdf", seed.PDF, "application/pdf")},
    )
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "closed"


def test_the_memory_the_cache_holds_is_bounded(
    instances: tuple[TestClient, TestClient, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _, _ = instances
    monkeypatch.setattr(eligibility_cache, "MAX_PAGES", 4)
    monkeypatch.setattr(eligibility_cache, "MAX_ENTRIES", 6)
    cache = seed.state(first).eligibility_cache
    sizes = []
    for n in range(20):
        assert ask(first, f"offer:UNKNOWN-{n}")["reason"] == "unknown_target"
        sizes.append((len(cache.pages), len(cache.entries)))
    assert max(pages for pages, _ in sizes) <= 4
    assert max(entries for _, entries in sizes) <= 6


def test_an_answer_with_a_malformed_target_is_not_kept_whole(
    instances: tuple[TestClient, TestClient, Clock],
) -> None:
    # Distinct malformed queries cost nothing to make: kept whole, they would
    # fill the memory of answers that real listing pages need.
    first, _, _ = instances
    cache = seed.state(first).eligibility_cache
    for n in range(5):
        response = first.get("/api/v1/eligibility", params=[("target", "offer:A-1"), ("target", f"bad {n}")])
        assert [r["reason"] for r in response.json()["results"]] == ["unknown_target", "invalid_target"]
    assert cache.pages == {}
    assert list(cache.entries) == [Target("offer", "A-1")]
