"""Partner webhooks through the outbox to a real HTTP receiver on 127.0.0.1:
Standard Webhooks signatures verified with the library, retries while the
receiver is down or failing, final refusals, the endpoint read at send time,
where a webhook may go (production rules), and a SIGKILLed worker losing none."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from databases import Database
from standardwebhooks.webhooks import Webhook

from tests.support import PRODUCTION, make_settings, wait_until
from tests.support import on_database as run
from tests.webhook_receiver import running
from widget_server import callers, cli, mailer, outbox, partner_events, tables, webhooks
from widget_server.delivery import create_worker
from widget_server.mailer import TemporaryFailure
from widget_server.resources import write_transaction
from widget_server.settings import Settings

T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


async def new_request(database: Database, api_key_id: int | None, n: int = 0) -> str:
    """A stored request of a key, as the pipeline stores one."""
    request_id = f"{n:020x}"
    await database.execute(
        tables.contact_requests.insert().values(
            id=request_id,
            kind="rdv",
            target_kind="formation",
            target_ref="CME-0001",
            caller="mon-site",
            caller_origin="key" if api_key_id else "form",
            api_key_id=api_key_id,
            first_name="Yanis",
            last_name="Benali",
            email="yanis.benali@example.org",
            phone="+33698765432",
            contact_email="contact@cfa.example",
            status="received",
            created_at=T0,
            updated_at=T0,
        )
    )
    return request_id


async def deliver_request(database: Database, request_id: str) -> None:
    """The status change and its event, in one transaction (as `delivery.on_sent`)."""
    requests = tables.contact_requests
    async with write_transaction(database):
        await database.execute(
            requests.update().where(requests.c.id == request_id).values(status="delivered", delivered_at=T0)
        )
        await partner_events.emit(database, request_id, partner_events.DELIVERED, now=T0)


async def key_with_webhook(database: Database, url: str, caller: str = "mon-site") -> tuple[int, str]:
    made = await callers.create(database, caller, webhook_url=url)
    assert made.webhook_secret is not None and made.webhook_secret.startswith("whsec_")
    key_id = await database.fetch_val(
        sa.select(tables.api_keys.c.id).where(tables.api_keys.c.prefix == made.prefix)
    )
    return int(key_id), made.webhook_secret


async def webhook_rows(database: Database) -> list[dict[str, Any]]:
    rows = await database.fetch_all(
        sa.select(tables.outbox).where(tables.outbox.c.kind == "webhook").order_by(tables.outbox.c.id)
    )
    return [dict(r._mapping) for r in rows]


def worker_for(database: Database, settings: Settings, clock: Clock) -> outbox.Worker:
    return create_worker(database, settings, clock=clock)


async def drain(worker: outbox.Worker) -> int:
    total = 0
    while handled := await worker.run_once():
        total += handled
    return total


def test_an_event_arrives_signed_with_the_status_object_and_a_stable_id(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with running() as receiver:

        async def scenario(database: Database) -> tuple[str, str]:
            key_id, secret = await key_with_webhook(database, receiver.url)
            request_id = await new_request(database, key_id)
            await deliver_request(database, request_id)
            [row] = await webhook_rows(database)
            assert (row["template"], row["recipient"], row["api_key_id"]) == (
                "request.delivered",
                "mon-site",
                key_id,
            )
            assert await drain(worker_for(database, settings, Clock())) == 1
            [sent] = await webhook_rows(database)
            assert (sent["status"], sent["attempts"]) == ("sent", 0)
            return secret, str(row["message_id"])

        secret, webhook_id = run(settings, scenario)
    [delivery] = receiver.deliveries
    payload = delivery.verify(secret)
    assert delivery.webhook_id == webhook_id and webhook_id.startswith("msg_")
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert payload == {
        "type": "request.delivered",
        "timestamp": "2026-11-02T09:00:00Z",
        "data": {
            "id": f"{0:020x}",
            "kind": "rdv",
            "target": "formation:CME-0001",
            "status": "delivered",
            "created_at": "2026-11-02T09:00:00Z",
            "delivered_at": "2026-11-02T09:00:00Z",
            "answer": None,
            "test": False,
        },
    }
    # Signed with another secret, it does not verify.
    with pytest.raises(Exception, match="signature"):
        delivery.verify(webhooks.new_secret())


def test_the_timestamp_header_is_the_signed_timestamp_whatever_the_clocks_time_zone(tmp_path: Path) -> None:
    """One value for both: a clock in Paris time, with a fraction of a second,
    must not sign another second than the header says."""
    settings = make_settings(tmp_path)
    paris = dt.timezone(dt.timedelta(hours=1))
    with running() as receiver:

        async def scenario(database: Database) -> str:
            key_id, secret = await key_with_webhook(database, receiver.url)
            await deliver_request(database, await new_request(database, key_id))
            [row] = await webhook_rows(database)
            courier = webhooks.WebhookCourier(
                database, settings, clock=lambda: dt.datetime.now(paris).replace(microsecond=999_999)
            )
            async with courier.session() as send:
                await send(row)
            return secret

        secret = run(settings, scenario)
    [delivery] = receiver.deliveries
    timestamp = delivery.headers["webhook-timestamp"]
    assert timestamp.isdigit()
    signed_at = dt.datetime.fromtimestamp(int(timestamp), dt.UTC)
    expected = Webhook(secret).sign(delivery.webhook_id, signed_at, delivery.body.decode())
    assert delivery.headers["webhook-signature"] == expected
    assert isinstance(delivery.verify(secret), dict)


def test_no_webhook_no_event_and_the_transaction_takes_its_event_along(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)

    async def scenario(database: Database) -> None:
        plain = await database.fetch_val(
            sa.select(tables.api_keys.c.id).where(
                tables.api_keys.c.key_hash.is_not(None),
                tables.api_keys.c.prefix == (await callers.create(database, "sans-webhook")).prefix,
            )
        )
        await deliver_request(database, await new_request(database, int(plain), 1))
        await deliver_request(database, await new_request(database, None, 2))  # a form's request
        assert await webhook_rows(database) == []
        key_id, _ = await key_with_webhook(database, "http://127.0.0.1:9/hook")
        request_id = await new_request(database, key_id, 3)
        with pytest.raises(RuntimeError):
            async with write_transaction(database):
                await partner_events.emit(database, request_id, partner_events.ANSWERED, now=T0)
                raise RuntimeError("the status change failed")
        assert await webhook_rows(database) == []
        with pytest.raises(ValueError, match="unknown partner event"):
            await partner_events.emit(database, request_id, "request.opened", now=T0)

    run(settings, scenario)


def test_a_receiver_down_then_failing_then_back_gets_every_event_once_acknowledged(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    clock = Clock()
    with running() as receiver:

        async def scenario(database: Database) -> tuple[str, list[str]]:
            key_id, secret = await key_with_webhook(database, receiver.url)
            for n in range(3):
                await deliver_request(database, await new_request(database, key_id, n))
            ids = [str(r["message_id"]) for r in await webhook_rows(database)]
            worker = worker_for(database, settings, clock)
            receiver.down()  # connection refused
            assert await worker.run_once() == 3
            rows = await webhook_rows(database)
            assert [(r["status"], r["attempts"]) for r in rows] == [("pending", 1)] * 3
            assert all(r["next_attempt_at"] > T0 for r in rows)
            assert await worker.run_once() == 0  # backing off
            receiver.up()
            receiver.answer(503)
            receiver.answer(500)
            for _ in range(2):
                clock.advance(3600)
                assert await worker.run_once() == 3
            assert [r["attempts"] for r in await webhook_rows(database)] == [3] * 3
            receiver.answer(429)
            receiver.answer(408)
            for _ in range(3):
                clock.advance(3600)
                await drain(worker)
            rows = await webhook_rows(database)
            assert [r["status"] for r in rows] == ["sent"] * 3
            return secret, ids

        secret, ids = run(settings, scenario)
    assert sorted(receiver.delivered_ids()) == sorted(ids)
    assert [d.status for d in receiver.deliveries] == [503, 500, 429, 408, 204, 204, 204]
    # Each attempt is signed afresh under the same webhook-id; every one verifies.
    assert {d.webhook_id for d in receiver.deliveries} == set(ids)
    for delivery in receiver.deliveries:
        assert isinstance(delivery.verify(secret), dict)


def test_a_final_refusal_is_not_retried_and_a_removed_webhook_sends_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    clock = Clock()
    with running() as receiver:

        async def scenario(database: Database) -> None:
            key_id, _ = await key_with_webhook(database, receiver.url)
            prefix = await database.fetch_val(
                sa.select(tables.api_keys.c.prefix).where(tables.api_keys.c.id == key_id)
            )
            await deliver_request(database, await new_request(database, key_id, 1))
            receiver.answer(410)
            worker = worker_for(database, settings, clock)
            assert await worker.run_once() == 1
            [refused] = await webhook_rows(database)
            assert (refused["status"], refused["failure_kind"]) == ("failed", "endpoint_refused")
            clock.advance(86400)
            assert await worker.run_once() == 0
            # Removed: the event waiting is given up, never sent.
            await deliver_request(database, await new_request(database, key_id, 2))
            assert await callers.set_webhook(database, str(prefix), "") is None
            assert await worker.run_once() == 1
            removed = (await webhook_rows(database))[1]
            assert (removed["status"], removed["failure_kind"]) == ("failed", "no_endpoint")
            assert "removed" in removed["last_error"]
            # And no new event is queued for it.
            await deliver_request(database, await new_request(database, key_id, 3))
            assert len(await webhook_rows(database)) == 2
            # A revoked key's waiting events are given up too.
            assert await callers.set_webhook(database, str(prefix), receiver.url) is not None
            await deliver_request(database, await new_request(database, key_id, 4))
            assert await callers.revoke_key(database, str(prefix))
            assert await worker.run_once() == 1
            revoked = (await webhook_rows(database))[2]
            assert (revoked["status"], revoked["failure_kind"]) == ("failed", "no_endpoint")
            assert "revoked" in revoked["last_error"]
            await deliver_request(database, await new_request(database, key_id, 5))
            assert len(await webhook_rows(database)) == 3  # none queued for a revoked key

        run(settings, scenario)
    assert [d.status for d in receiver.deliveries] == [410]


def test_a_new_url_and_a_rotated_secret_apply_to_events_still_waiting(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with running() as old, running() as new:

        async def scenario(database: Database) -> tuple[str, str]:
            key_id, first_secret = await key_with_webhook(database, old.url)
            prefix = str(
                await database.fetch_val(
                    sa.select(tables.api_keys.c.prefix).where(tables.api_keys.c.id == key_id)
                )
            )
            await deliver_request(database, await new_request(database, key_id))
            # A new URL keeps the secret; rotating makes a new one, returned once.
            assert await callers.set_webhook(database, prefix, new.url) is None
            rotated = await callers.set_webhook(database, prefix, None, rotate_secret=True)
            assert rotated is not None and rotated != first_secret
            await drain(worker_for(database, settings, Clock()))
            return first_secret, rotated

        first_secret, rotated = run(settings, scenario)
    assert old.deliveries == []
    [delivery] = new.deliveries
    assert isinstance(delivery.verify(rotated), dict)
    with pytest.raises(Exception, match="signature"):
        delivery.verify(first_secret)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.partner.example/lba",  # not https
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://172.16.0.1/hook",
        "https://192.168.1.10/hook",
        "https://169.254.169.254/latest/meta-data",  # link-local: cloud metadata
        "https://100.64.0.1/hook",  # shared address space
        "https://0.0.0.0/hook",
        "https://240.0.0.1/hook",  # reserved
        "https://224.0.0.1/hook",  # multicast
        "https://[::1]/hook",
        "https://[fe80::1]/hook",
        "https://[fc00::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",  # IPv4 inside IPv6
        "https://[::ffff:7f00:1]/hook",
        "https://[::127.0.0.1]/hook",  # IPv4-compatible (deprecated, reserved)
        "https://[64:ff9b::7f00:1]/hook",  # NAT64 of 127.0.0.1
        "https://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
        "https://[2002:7f00:1::1]/hook",  # 6to4 of 127.0.0.1
        "https://[2002:a00:1::1]/hook",  # 6to4 of 10.0.0.1
        "https://[fec0::1]/hook",  # site-local (deprecated, private)
        "https://2130706433/hook",  # 127.0.0.1 as resolvers read these
        "https://0177.0.0.1/hook",
        "https://0x7f.1/hook",
        "https://127.1/hook",
        "https://localhost/hook",
        "https://localhost./hook",
        "https://a@127.0.0.1/hook",
        "https://api.localhost/hook",
        "https://user:pass@hooks.partner.example/lba",
        "https://hooks.partner.example/lba#frag",
        "https://hooks.partner.example:99999/lba",
        "https://hooks.partner.example/l ba",
        "https://hooks.partner.example/\x00",
        "ftp://hooks.partner.example/lba",
        "https:///lba",
        "",
    ],
)
def test_production_refuses_urls_that_are_not_https_to_a_public_host(url: str) -> None:
    with pytest.raises(webhooks.BadWebhookURL):
        webhooks.check_url(url, production=True)


def test_production_takes_https_to_public_hosts_development_takes_loopback_http() -> None:
    for url in (
        "https://hooks.partner.example/lba",
        "https://93.184.215.14:8443/x?y=1",
        "https://[2606:4700::1]/",
        "https://[64:ff9b::808:808]/",  # NAT64 of a public address
        "https://[2002:808:808::1]/",  # 6to4 of a public address
    ):
        assert webhooks.check_url(url, production=True) == url
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]/hook"):
        assert webhooks.check_url(url, production=False) == url
    with pytest.raises(webhooks.BadWebhookURL):
        webhooks.check_url("ftp://127.0.0.1/hook", production=False)


def test_at_send_time_resolved_addresses_are_checked_and_no_dns_is_a_retry() -> None:
    import asyncio

    async def resolve(host: str, production: bool) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return await webhooks.resolve(host, 443, production=production, within=5)

    # "localhost" passes no literal check: only its resolved address tells.
    with pytest.raises(TemporaryFailure, match="not a public address"):
        asyncio.run(resolve("localhost", True))
    assert str(asyncio.run(resolve("localhost", False))) == "127.0.0.1"
    # No DNS on this machine: a name that does not resolve fails this attempt only.
    with pytest.raises(TemporaryFailure, match="does not resolve"):
        asyncio.run(resolve("hooks.partner.invalid", True))
    with pytest.raises(TemporaryFailure, match="not a public address"):
        asyncio.run(resolve("192.168.0.1", True))


def test_in_production_a_stored_local_url_is_never_called(tmp_path: Path) -> None:
    """A key whose URL was set in development, served in production: given up, not sent."""
    settings = make_settings(tmp_path)
    production = make_settings(tmp_path, **{**PRODUCTION, "DATABASE_URL": settings.database_url})
    with running() as receiver:

        async def scenario(database: Database) -> list[dict[str, Any]]:
            key_id, _ = await key_with_webhook(database, receiver.url)
            await deliver_request(database, await new_request(database, key_id))
            await drain(worker_for(database, production, Clock()))
            return await webhook_rows(database)

        [row] = run(settings, scenario)
    assert (row["status"], row["failure_kind"]) == ("failed", "no_endpoint")
    assert "https" in row["last_error"]
    assert receiver.deliveries == []


# --- a worker process SIGKILLed mid-request ---------------------------------------

LEASE_SECONDS = 8  # short, so the killed worker's leases run out within the test


def _start_worker(settings: Settings, tmp_path: Path) -> subprocess.Popen[str]:
    environ = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "VAR_DIR": str(settings.var_dir),
        "SECRET_KEY": "test-secret-key",
        "LOG_LEVEL": "WARNING",
        "OUTBOX_LEASE_SECONDS": str(LEASE_SECONDS),
        "OUTBOX_POLL_SECONDS": "0.2",
        "WEBHOOK_TIMEOUT_SECONDS": "30",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "widget_server.cli", "worker"],
        cwd=tmp_path,
        env=environ,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.timeout(120)
def test_a_worker_killed_mid_request_loses_no_event(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    events = 5
    with running() as receiver:

        async def seed_events(database: Database) -> tuple[str, list[str]]:
            key_id, secret = await key_with_webhook(database, receiver.url)
            for n in range(events):
                await deliver_request(database, await new_request(database, key_id, n))
            return secret, [str(r["message_id"]) for r in await webhook_rows(database)]

        secret, ids = run(settings, seed_events)
        receiver.hold_next()
        victim = _start_worker(settings, tmp_path)
        try:
            wait_until(lambda: receiver.held is not None or victim.poll() is not None, "a request held", 30)
            assert victim.poll() is None, victim.communicate()[1]
            victim.send_signal(signal.SIGKILL)
            victim.communicate(timeout=10)
        finally:
            if victim.poll() is None:
                victim.kill()
                victim.communicate()
        held = receiver.held
        assert held is not None
        receiver.release()

        async def leased(database: Database) -> list[dict[str, Any]]:
            return await webhook_rows(database)

        rows = run(settings, leased)
        assert [r["status"] for r in rows].count("sending") >= 1  # the dead worker's leases
        survivor = _start_worker(settings, tmp_path)
        try:
            wait_until(
                lambda: set(receiver.delivered_ids()) >= set(ids) or survivor.poll() is not None,
                "every event after the lease",
                LEASE_SECONDS + 40,
            )
            assert survivor.poll() is None, survivor.communicate()[1]
            survivor.send_signal(signal.SIGTERM)
            survivor.communicate(timeout=20)
        finally:
            if survivor.poll() is None:
                survivor.kill()
                survivor.communicate()
    assert set(receiver.delivered_ids()) == set(ids)
    # The held event came again, same webhook-id, after the dead worker's lease.
    assert [d.webhook_id for d in receiver.deliveries].count(held.webhook_id) == 2
    for delivery in receiver.deliveries:
        body = delivery.verify(secret)
        assert isinstance(body, dict) and body["type"] == "request.delivered"
    assert sorted({json.loads(d.body)["data"]["id"] for d in receiver.deliveries}) == [
        f"{n:020x}" for n in range(events)
    ]
    rows = run(settings, leased)
    assert [r["status"] for r in rows] == ["sent"] * events


# --- the operator's commands ----------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SECRET_KEY", "k")
    return tmp_path


def _keys(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["keys", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_keys_create_with_a_webhook_prints_the_secret_once_and_webhook_changes_it(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _keys(capsys, "create", "mon-site", "--webhook", "http://127.0.0.1:9000/hooks")
    assert code == 0
    key, secret = (line for line in out.splitlines() if line.startswith(("lba_", "whsec_")))
    assert key.startswith("lba_") and secret.startswith("whsec_")
    prefix = key.split("_")[1]
    code, listing, _ = _keys(capsys, "list")
    assert "webhook http://127.0.0.1:9000/hooks" in listing and secret not in listing
    # A new URL keeps the secret; --rotate-secret prints a new one.
    code, out, _ = _keys(capsys, "webhook", prefix, "http://127.0.0.1:9001/hooks")
    assert code == 0 and "unchanged" in out and "whsec_" not in out
    code, out, _ = _keys(capsys, "webhook", prefix, "--rotate-secret")
    rotated = out.strip().splitlines()[-1]
    assert code == 0 and rotated.startswith("whsec_") and rotated != secret
    code, out, _ = _keys(capsys, "webhook", prefix, "--remove")
    assert code == 0 and "removed" in out
    assert "webhook" not in _keys(capsys, "list")[1]
    # Removing it then setting a URL again makes a new secret.
    code, out, _ = _keys(capsys, "webhook", prefix, "http://127.0.0.1:9002/hooks")
    assert code == 0 and out.strip().splitlines()[-1].startswith("whsec_")
    assert _keys(capsys, "webhook", "nope", "http://127.0.0.1/")[0] == 1
    assert _keys(capsys, "webhook", prefix)[0] == 2  # nothing to do
    assert _keys(capsys, "webhook", prefix, "http://127.0.0.1/", "--remove")[0] == 2


def test_keys_refuse_a_bad_webhook_url_with_a_clear_error_and_store_nothing(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = _keys(capsys, "create", "mon-site", "--webhook", "ftp://hooks.partner.example/")
    assert code == 2 and "webhook URL refused" in err and "https://" in err and "lba_" not in out
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    code, out, err = _keys(capsys, "create", "mon-site", "--webhook", "http://hooks.partner.example/")
    assert code == 2 and "https:// in production" in err
    code, out, err = _keys(capsys, "create", "mon-site", "--webhook", "https://192.168.1.20/hooks")
    assert code == 2 and "not a public address" in err
    assert _keys(capsys, "list")[1] == ""
    code, out, _ = _keys(capsys, "create", "mon-site", "--webhook", "https://hooks.partner.example/lba")
    assert code == 0 and "whsec_" in out
    prefix = next(line for line in out.splitlines() if line.startswith("lba_")).split("_")[1]
    code, _, err = _keys(capsys, "webhook", prefix, "https://localhost/hooks")
    assert code == 2 and "local name" in err
    assert "https://hooks.partner.example/lba" in _keys(capsys, "list")[1]
    operator = _keys(
        capsys, "create", "ops", "--role", "operator", "--webhook", "https://hooks.partner.example/"
    )
    assert operator[0] == 2 and "only a partner key" in operator[2]


def test_redirects_are_not_followed_and_proxies_of_the_environment_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy that does not exist: a client that used it would never reach the receiver.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:1")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    settings = make_settings(tmp_path)
    with running() as receiver:
        receiver.answer(307)

        async def scenario(database: Database) -> list[dict[str, Any]]:
            key_id, _ = await key_with_webhook(database, receiver.url)
            await deliver_request(database, await new_request(database, key_id, 1))
            await deliver_request(database, await new_request(database, key_id, 2))
            worker = worker_for(database, settings, Clock())
            assert await worker.run_once() == 2
            return await webhook_rows(database)

        rows = run(settings, scenario)
    assert [(r["status"], r["failure_kind"]) for r in rows] == [
        ("failed", "endpoint_refused"),
        ("sent", None),
    ]
    assert [d.status for d in receiver.deliveries] == [307, 204]


def test_a_worker_without_the_webhook_courier_leaves_webhooks_alone(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)

    async def scenario(database: Database) -> None:
        key_id, _ = await key_with_webhook(database, "http://127.0.0.1:9/hooks")
        await deliver_request(database, await new_request(database, key_id))
        emails_only = outbox.Worker(database, mailer.transport_from_settings(settings), settings)
        assert await emails_only.run_once() == 0
        [row] = await webhook_rows(database)
        assert (row["status"], row["attempts"], row["lease_owner"]) == ("pending", 0, None)

    run(settings, scenario)


def test_a_receiver_trickling_its_answer_is_cut_off_at_the_timeout(tmp_path: Path) -> None:
    """Each byte of the answer's head comes well within the timeout, the whole head
    far beyond it: the attempt still ends at the timeout (the job is retried) instead
    of holding the worker, and the job's lease, for as long as the receiver likes."""
    import asyncio

    settings = make_settings(tmp_path, WEBHOOK_TIMEOUT_SECONDS="1")
    lines = 40  # one header line every 0.2 s: 8 s for the whole head

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n")
            for _ in range(lines):
                await writer.drain()
                await asyncio.sleep(0.2)
                writer.write(b"x-slow: 1\r\n")
            writer.write(b"\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up
        finally:
            writer.close()

    async def scenario(database: Database) -> dict[str, Any]:
        server = await asyncio.start_server(trickle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            key_id, _ = await key_with_webhook(database, f"http://127.0.0.1:{port}/hook")
            await deliver_request(database, await new_request(database, key_id))
            assert await worker_for(database, settings, Clock()).run_once() == 1
            [row] = await webhook_rows(database)
            return row
        finally:
            server.close()

    row = run(settings, scenario)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["last_error"] == "no answer within 1 s"
