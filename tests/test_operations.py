"""Operations: `/readyz`, `/metrics`, JSON log lines."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from databases import Database
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient

from tests import seed
from tests.support import PRODUCTION, application, appointment, make_settings
from widget_server import partner_events, tables
from widget_server.app import create_app
from widget_server.logs import JSONFormatter
from widget_server.migrations import LATEST, MIGRATIONS

METRICS_TOKEN = "Yk3-oTq8Zr0VbN5xWc1LmP7sHd4GfJ2eAu6iQy9Rt0E"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def execute(client: TestClient, statement: str) -> None:
    async def go() -> None:
        await seed.state(client).database.execute(statement)

    seed.run(client, go)


# --- /readyz ----------------------------------------------------------------------


def test_readyz_is_200_on_a_migrated_database(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok", "migration": LATEST}
    assert response.headers["cache-control"] == "no-store"


def test_readyz_is_503_while_a_migration_is_pending(client: TestClient) -> None:
    execute(client, f"DELETE FROM schema_migrations WHERE version = {LATEST}")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["migrations_pending"] == [LATEST]
    assert client.get("/healthz").status_code == 200  # alive, only not ready


def test_readyz_is_503_on_a_database_never_migrated(client: TestClient) -> None:
    execute(client, "DROP TABLE schema_migrations")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["migrations_pending"] == [m.version for m in MIGRATIONS]


def test_readyz_is_503_when_the_database_cannot_be_reached(client: TestClient) -> None:
    # A PostgreSQL pool that opens connections on demand, towards a port nobody listens on.
    unreachable = Database("postgresql+asyncpg://root@127.0.0.1:9/none", min_size=0, max_size=1)
    state = seed.state(client)
    seed.run(client, unreachable.connect)
    state.database, database = unreachable, state.database
    try:
        response = client.get("/readyz")
    finally:
        state.database = database
        seed.run(client, unreachable.disconnect)
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unreachable"}


# --- /metrics ---------------------------------------------------------------------


def test_metrics_count_requests_by_route_template_and_status(client: TestClient) -> None:
    for token in ("first-token", "second-token"):
        client.get(f"/reply/{token}")
    client.get("/healthz")
    client.get("/no/such/page")
    client.request("BREW", "/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    found = samples(response.text)
    route = "widget_http_requests_total"
    reply_404 = found[(route, (("method", "GET"), ("route", "/reply/{token}"), ("status", "404")))]
    assert reply_404 == 2  # one series for every token: no token in a label
    assert found[(route, (("method", "GET"), ("route", "/healthz"), ("status", "200")))] == 1
    assert found[(route, (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 1
    assert found[(route, (("method", "OTHER"), ("route", "/healthz"), ("status", "405")))] == 1
    assert "first-token" not in response.text


def test_metrics_read_the_queue_from_the_database(client: TestClient) -> None:
    seed.offer(client)
    key = seed.api_key(client)
    response = client.post(
        "/api/v1/applications", json=application(), headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 202
    # Another instance's work: the figures come from the shared database, not this process.
    an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)

    async def age_and_deliver() -> None:
        database = seed.state(client).database
        await database.execute(tables.outbox.update().values(created_at=an_hour_ago))
        await database.execute(
            tables.outbox.update().where(tables.outbox.c.template == "candidature_ack").values(status="sent")
        )

    seed.run(client, age_and_deliver)
    found = samples(client.get("/metrics").text)
    assert found[("widget_outbox_depth", ())] == 1
    assert 3600 <= found[("widget_outbox_oldest_pending_age_seconds", ())] < 3600 + 600
    assert found[("widget_outbox_messages", (("kind", "candidature_pro"), ("status", "pending")))] == 1
    assert found[("widget_outbox_messages", (("kind", "candidature_ack"), ("status", "sent")))] == 1


def test_metrics_count_webhooks_pending_apart_from_emails(client: TestClient) -> None:
    seed.formation(client)
    key, _ = seed.webhook_key(client, "http://127.0.0.1:9/hooks")
    response = client.post(
        "/api/v1/appointment-requests", json=appointment(), headers={"Authorization": f"Bearer {key}"}
    )
    request_id = response.json()["id"]

    async def delivered_and_one_sent() -> None:
        database = seed.state(client).database
        async with database.transaction():
            now = dt.datetime.now(dt.UTC)
            for event in (partner_events.DELIVERED, partner_events.ANSWERED):
                await partner_events.emit(database, request_id, event, now=now)
        await database.execute(
            tables.outbox.update()
            .where(tables.outbox.c.template == partner_events.ANSWERED)
            .values(status="sent")
        )

    seed.run(client, delivered_and_one_sent)
    found = samples(client.get("/metrics").text)
    assert found[("widget_webhooks_pending", ())] == 1
    assert found[("widget_webhooks", (("event", "request.delivered"), ("status", "pending")))] == 1
    assert found[("widget_webhooks", (("event", "request.answered"), ("status", "sent")))] == 1
    # The email figures are the emails' alone: the two of the request.
    assert found[("widget_outbox_depth", ())] == 2
    email_kinds = {dict(labels)["kind"] for name, labels in found if name == "widget_outbox_messages"}
    assert email_kinds == {"rdv_pro", "rdv_ack"}


def test_metrics_of_an_empty_queue(client: TestClient) -> None:
    found = samples(client.get("/metrics").text)
    assert found[("widget_outbox_depth", ())] == 0
    assert found[("widget_webhooks_pending", ())] == 0
    assert found[("widget_outbox_oldest_pending_age_seconds", ())] == 0
    assert found[("widget_outbox_failures", (("reason", "message_refused"),))] == 0


def test_metrics_give_failures_by_reason(client: TestClient) -> None:
    seed.offer(client)
    key = seed.api_key(client)
    response = client.post(
        "/api/v1/applications", json=application(), headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 202
    execute(client, "UPDATE outbox SET status = 'failed', failure_kind = 'message_refused'")
    found = samples(client.get("/metrics").text)
    assert found[("widget_outbox_failures", (("reason", "message_refused"),))] == 2
    assert found[("widget_outbox_failures", (("reason", "recipient_refused"),))] == 0


def test_two_apps_in_one_process_count_apart(tmp_path: Path) -> None:
    with (
        TestClient(create_app(make_settings(tmp_path / "a"))) as first,
        TestClient(create_app(make_settings(tmp_path / "b"))) as second,
    ):
        first.get("/healthz")
        key = ("widget_http_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))
        assert samples(first.get("/metrics").text)[key] == 1
        assert key not in samples(second.get("/metrics").text)


@pytest.fixture
def production_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path, **PRODUCTION, METRICS_TOKEN=METRICS_TOKEN)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_metrics_need_the_token_when_one_is_set(production_client: TestClient) -> None:
    assert production_client.get("/metrics").status_code == 401
    wrong = {"Authorization": f"Bearer {METRICS_TOKEN[:-1]}x"}
    assert production_client.get("/metrics", headers=wrong).status_code == 401
    right = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    response = production_client.get("/metrics", headers=right)
    assert response.status_code == 200
    assert "widget_outbox_depth" in response.text


def test_metrics_are_absent_in_production_without_a_token(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, **PRODUCTION))) as client:
        assert client.get("/metrics").status_code == 404


# --- JSON log lines ---------------------------------------------------------------


def test_json_log_lines_carry_the_request_id(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, LOG_FORMAT="json"))

    async def boom(request: Request) -> Response:
        logging.getLogger("widget_server.test").warning("about to fail: %s", "é")
        raise RuntimeError("boom")

    app.add_route("/boom", boom)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logging.getLogger("widget_server").addHandler(handler)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.get("/boom")
    finally:
        logging.getLogger("widget_server").removeHandler(handler)
    assert response.status_code == 500
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["message"] == "about to fail: é"
    assert {line["request_id"] for line in lines} == {response.headers["x-request-id"]}
    assert lines[-1]["level"] == "ERROR"
    assert "RuntimeError: boom" in lines[-1]["exception"]
    assert lines[0]["time"].endswith("+00:00")


def test_log_lines_outside_a_request_have_no_request_id() -> None:
    record = logging.LogRecord("widget_server.outbox", logging.INFO, __file__, 1, "sent %d", (3,), None)
    assert json.loads(JSONFormatter().format(record)) == {
        "time": json.loads(JSONFormatter().format(record))["time"],
        "level": "INFO",
        "logger": "widget_server.outbox",
        "message": "sent 3",
    }
