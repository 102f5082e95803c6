from __future__ import annotations

from starlette.testclient import TestClient


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


def test_unexpected_error_is_logged_and_hides_internals(client: TestClient) -> None:
    async def boom(request: object) -> None:
        raise RuntimeError("secret internals")

    from starlette.routing import Route

    client.app.router.routes.append(Route("/api/v1/boom", boom))  # type: ignore[attr-defined]
    response = client.get("/api/v1/boom")
    assert response.status_code == 500
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert response.json()["detail"].endswith(f"(référence : {response.headers['x-request-id']})")
