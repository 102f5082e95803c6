"""`GET /api/v1/requests/{id}` (SPEC section 11): the key that made a request reads
its status, nothing about the candidate; any other key gets the unknown id's 404."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from openapi_schema_validator import OAS31Validator, validate
from starlette.testclient import TestClient

from tests import seed
from tests.support import appointment
from widget_server import callers, tables
from widget_server.request_status import FIELDS


def _rdv(client: TestClient, key: str, **overrides: str) -> str:
    response = client.post(
        "/api/v1/appointment-requests",
        json=appointment(**overrides),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _status(client: TestClient, request_id: str, key: str | None) -> tuple[int, dict[str, object], str]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = client.get(f"/api/v1/requests/{request_id}", headers=headers)
    return response.status_code, response.json(), response.headers.get("cache-control", "")


def test_the_key_that_made_a_request_reads_its_status_and_nothing_about_the_candidate(
    client: TestClient,
) -> None:
    seed.formation(client)
    key = seed.api_key(client)
    request_id = _rdv(client, key)
    code, status, cache = _status(client, request_id, key)
    assert code == 200 and cache == "no-store"
    assert tuple(status) == FIELDS
    assert status["id"] == request_id
    assert (status["kind"], status["target"], status["status"]) == (
        "rdv",
        f"formation:{seed.FORMATION_ID}",
        "received",
    )
    assert str(status["created_at"]).endswith("Z")
    assert status["delivered_at"] is None and status["answer"] is None
    text = str(status)
    person = appointment()
    for value in ("Yanis", "Benali", "yanis.benali", "98 76", "+336", "Reste-t-il", "places"):
        assert value not in text, value
    assert person["email"] not in text


def test_another_key_and_an_unknown_id_get_the_same_404_no_key_a_401(client: TestClient) -> None:
    seed.formation(client)
    key = seed.api_key(client, "mon-site")
    # Another key, even of the same partner name, is another key.
    same_name = seed.api_key(client, "mon-site")
    other = seed.api_key(client, "autre-site")
    request_id = _rdv(client, key)
    unknown = _status(client, "0" * 20, key)
    assert unknown[0] == 404 and unknown[1]["code"] == "unknown_request"
    for intruder in (same_name, other):
        code, problem, _ = _status(client, request_id, intruder)
        assert code == 404
        assert {k: problem[k] for k in ("status", "code", "detail")} == {
            k: unknown[1][k] for k in ("status", "code", "detail")
        }
    assert _status(client, request_id, None)[0] == 401
    prefix = key.split("_")[1]
    assert seed.run(client, callers.revoke_key, seed.state(client).database, prefix)
    assert _status(client, request_id, key)[0] == 401


def test_a_form_request_belongs_to_no_key(client: TestClient) -> None:
    seed.formation(client)
    key = seed.api_key(client)
    request_id = _rdv(client, key)
    # As a form submission is stored: no key.
    seed.run(
        client,
        seed.state(client).database.execute,
        tables.contact_requests.update().values(api_key_id=None, caller_origin="form"),
    )
    assert _status(client, request_id, key)[0] == 404


def test_the_openapi_document_describes_the_route_and_the_status_matches_its_schema(
    client: TestClient,
) -> None:
    seed.formation(client)
    key = seed.api_key(client)
    request_id = _rdv(client, key)
    document = client.get("/api/v1/openapi.json").json()
    operation = document["paths"]["/api/v1/requests/{id}"]["get"]
    assert {"200", "401", "404", "429"} <= set(operation["responses"])
    schema = document["components"]["schemas"]["RequestStatus"]
    assert schema["required"] == list(FIELDS) and schema["additionalProperties"] is False
    assert set(document["webhooks"]) == {
        "request.delivered",
        "request.answered",
        "request.bounced",
        "request.withdrawn",
    }
    status = _status(client, request_id, key)[1]
    schema = {"components": document["components"], "$ref": "#/components/schemas/RequestStatus"}
    validate(status, schema, cls=OAS31Validator)
    answered = {**status, "status": "answered", "answer": {"kind": "reply", "at": status["created_at"]}}
    validate(answered, schema, cls=OAS31Validator)
    with pytest.raises(Exception, match="first_name"):  # the schema lets no personal data in
        validate({**status, "first_name": "Yanis"}, schema, cls=OAS31Validator)
    rows = seed.fetch_all(client, sa.select(tables.contact_requests.c.api_key_id))
    assert rows[0]["api_key_id"] is not None
