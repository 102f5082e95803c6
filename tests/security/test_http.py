"""Issue #9, HTTP findings: JSON depth (item 2), methods (item 2), rate-limit
identity (item 5), Host-header redirects (item 7)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx2
import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from tests import seed
from tests.support import create_api_key, make_settings, running_server
from widget_server.app import create_app
from widget_server.cli import uvicorn_config
from widget_server.json_body import MAX_JSON_DEPTH, nests_too_deep

APPOINTMENTS = "/api/v1/appointment-requests"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- JSON depth ---------------------------------------------------------------


def test_fifty_thousand_brackets_are_a_400_and_the_connection_lives_on(client: TestClient) -> None:
    key = seed.api_key(client)
    for path in (APPOINTMENTS, "/api/v1/applications"):
        response = client.post(
            path, content=b"[" * 50_000, headers={**bearer(key), "Content-Type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "json_too_deep"
    assert client.get("/healthz").status_code == 200


def test_the_bounce_webhook_bounds_json_depth_too(client: TestClient) -> None:
    key = seed.api_key(client, "ops", role="operator")
    response = client.post(
        "/api/v1/bounces", content=b"{" * 50_000, headers={**bearer(key), "Content-Type": "application/json"}
    )
    assert (response.status_code, response.json()["code"]) == (400, "json_too_deep")


def test_depth_limit_is_exact_and_ignores_brackets_in_strings(client: TestClient) -> None:
    key = seed.api_key(client)

    def nested(depth: int) -> bytes:
        # An object `depth` levels deep: parsed, it would be a (bad) request, not a JSON error.
        return b'{"a":' * (depth - 1) + b'{"b": "[[[[{{{{\\"[["}' + b"}" * (depth - 1)

    headers = {**bearer(key), "Content-Type": "application/json"}
    deep = client.post(APPOINTMENTS, content=nested(MAX_JSON_DEPTH + 1), headers=headers)
    assert (deep.status_code, deep.json()["code"]) == (400, "json_too_deep")
    within = client.post(APPOINTMENTS, content=nested(MAX_JSON_DEPTH), headers=headers)
    assert (within.status_code, within.json()["code"]) == (422, "invalid_fields")


@pytest.mark.parametrize(
    ("body", "too_deep"),
    [
        (b"[" * 21, True),
        (b"[" * 20 + b"]" * 20, False),
        (b'["' + b"[" * 100 + b'"]', False),
        (b'{"a": "\\"' + b"{" * 100 + b'"}', False),
        (b"]" * 100, False),
        (b"[]" * 1000, False),
    ],
)
def test_depth_is_counted_outside_strings(body: bytes, too_deep: bool) -> None:
    assert nests_too_deep(body) is too_deep


# --- methods ------------------------------------------------------------------


def _concrete(path: str) -> str:
    return re.sub(r"{([a-z_]+)(:[a-z]+)?}", lambda m: "1" if m.group(2) == ":int" else "x", path)


def test_every_route_answers_405_with_allow_to_methods_it_does_not_take(client: TestClient) -> None:
    routes = [r for r in seed.app(client).routes if isinstance(r, Route)]
    assert any(r.path == "/api/v1/eligibility" for r in routes)
    wrong = []
    for route in routes:
        path = _concrete(route.path)
        # Another route may take the same path (`/dev/mailbox/{id}` takes GET /dev/mailbox/vider).
        taken_here = set().union(*(r.methods or set() for r in routes if r.path_regex.match(path)))
        for method in ("TRACE", "PUT", "DELETE", "PATCH", "POST", "GET"):
            if method in taken_here:
                continue
            response = client.request(method, path)
            allow = set(response.headers.get("allow", "").replace(" ", "").split(","))
            if response.status_code != 405 or allow != route.methods:
                wrong.append((method, route.path, response.status_code, allow))
    assert wrong == []


def test_eligibility_refuses_trace_put_delete(client: TestClient) -> None:
    for method in ("TRACE", "PUT", "DELETE"):
        response = client.request(method, "/api/v1/eligibility?target=offer:X")
        assert response.status_code == 405
        assert response.headers["content-type"] == "application/problem+json"
        assert "GET" in response.headers["allow"]


# --- Host header redirects ----------------------------------------------------


def test_trailing_slash_redirect_ignores_a_forged_host(client: TestClient) -> None:
    response = client.get("/healthz/?a=1", headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "http://testserver/healthz?a=1"
    other = client.get("/api/v1/openapi.json/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert other.headers["location"] == "http://testserver/api/v1/openapi.json"
    assert client.get("/nowhere/", follow_redirects=False).status_code == 404


def test_mailbox_redirect_is_a_path(client: TestClient) -> None:
    response = client.post("/dev/mailbox/vider", headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/dev/mailbox"


# --- client IP and per-key rates ---------------------------------------------


def _statuses(client: TestClient, key: str, forwarded: list[str]) -> list[int]:
    return [
        client.post(APPOINTMENTS, json={}, headers={**bearer(key), "X-Forwarded-For": value}).status_code
        for value in forwarded
    ]


def test_rotated_forwarded_for_from_an_untrusted_peer_stays_in_one_bucket(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, RATE_LIMIT="2/minute", TRUSTED_PROXIES="10.0.0.0/8")
    with TestClient(create_app(settings), client=("203.0.113.7", 4000)) as client:
        key = seed.api_key(client)
        assert _statuses(client, key, ["198.51.100.1", "198.51.100.2", "198.51.100.3"]) == [422, 422, 429]


def test_a_trusted_proxy_gives_each_client_its_bucket(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, RATE_LIMIT="2/minute", TRUSTED_PROXIES="10.0.0.0/8, 192.0.2.1")
    with TestClient(create_app(settings), client=("10.1.2.3", 4000)) as client:
        key = seed.api_key(client)
        # Distinct clients behind the proxy: distinct buckets.
        assert _statuses(client, key, ["198.51.100.1", "198.51.100.2", "198.51.100.3"]) == [422] * 3
        # The left part is the client's to write: only the right-most untrusted hop counts.
        spoofed = [f"1.2.3.{i}, 198.51.100.9, 192.0.2.1" for i in range(3)]
        assert _statuses(client, key, spoofed) == [422, 422, 429]


def test_two_api_keys_have_separate_buckets(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, API_KEY_RATE_LIMIT="2/minute")
    with TestClient(create_app(settings)) as client:
        first, second = seed.api_key(client, "site-a"), seed.api_key(client, "site-b")
        burst = [client.post(APPOINTMENTS, json={}, headers=bearer(first)) for _ in range(3)]
        assert [r.status_code for r in burst] == [422, 422, 429]
        assert int(burst[-1].headers["retry-after"]) >= 1
        assert client.post(APPOINTMENTS, json={}, headers=bearer(second)).status_code == 422


def test_serve_trusts_no_forwarded_header_unless_told(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    default = uvicorn_config(app, make_settings(tmp_path))
    assert default.proxy_headers is False
    told = uvicorn_config(app, make_settings(tmp_path, TRUSTED_PROXIES="10.0.0.5"))
    assert (told.proxy_headers, told.forwarded_allow_ips) == (True, ["10.0.0.5/32"])


def test_a_real_server_ignores_forwarded_for_from_localhost_by_default(tmp_path: Path) -> None:
    # uvicorn's own default trusts 127.0.0.1: a rotated header then escaped the limit.
    settings = make_settings(tmp_path, RATE_LIMIT="2/minute")
    key = create_api_key(settings, "mon-site")
    with running_server(settings) as server, httpx2.Client(base_url=server.url, timeout=10) as http:
        statuses = [
            http.post(APPOINTMENTS, json={}, headers={**bearer(key), "X-Forwarded-For": f"198.51.100.{i}"})
            for i in range(3)
        ]
        assert [r.status_code for r in statuses] == [422, 422, 429]


def test_content_policies_are_written_in_framing_only() -> None:
    package = Path(__file__).resolve().parents[2] / "widget_server"
    writers = sorted(p.name for p in package.glob("*.py") if "default-src" in p.read_text())
    assert writers == ["framing.py"]
