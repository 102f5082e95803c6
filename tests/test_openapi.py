from __future__ import annotations

from openapi_spec_validator import validate
from starlette.routing import Route
from starlette.testclient import TestClient

from tests import seed


def test_openapi_document_is_valid_3_1_and_names_every_api_route(client: TestClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    validate(spec)
    assert spec["openapi"] == "3.1.0"
    api_routes = {
        route.path
        for route in seed.app(client).routes
        if isinstance(route, Route)
        and route.path.startswith("/api/v1/")
        and route.path != "/api/v1/openapi.json"
    }
    assert "/api/v1/applications" in api_routes  # the routes were found at all
    assert api_routes <= set(spec["paths"]), api_routes - set(spec["paths"])


def test_docs_page_lists_every_endpoint_and_topic_code(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    page = client.get("/api/docs")
    assert page.status_code == 200
    for path in spec["paths"]:
        assert path in page.text
    topics = spec["paths"]["/api/v1/appointment-requests"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]["properties"]["topics"]["items"]["enum"]
    assert "portes_ouvertes" in topics
    assert "<code>portes_ouvertes</code>" in page.text
