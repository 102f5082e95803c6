from __future__ import annotations

import logging

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from tests import seed


def test_healthz_reports_database(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}
    assert response.headers["x-request-id"]


def test_unknown_api_path_is_problem_json(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


def test_unknown_page_is_french_page(client: TestClient) -> None:
    response = client.get("/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Page introuvable" in response.text


def test_unexpected_error_is_logged_and_hides_internals(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def boom(request: object) -> None:
        raise RuntimeError("secret internals")

    seed.app(client).router.routes.append(Route("/api/v1/boom", boom))
    with caplog.at_level(logging.ERROR, logger="widget_server"):
        response = client.get("/api/v1/boom")
    assert response.status_code == 500
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    request_id = response.headers["x-request-id"]
    assert response.json()["detail"].endswith(f"(référence : {request_id})")
    # The operator gets what the user does not: the request id, the path and the traceback.
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.name == "widget_server"
    assert request_id in record.getMessage() and "/api/v1/boom" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert str(record.exc_info[1]) == "secret internals"
