"""`widget-server purge` and `stats`, and the `keys` command."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from tests import seed, support
from tests.support import application
from widget_server import cli, tables
from widget_server.retention import purge
from widget_server.stats import stats


def submit(client: TestClient, **overrides: Any) -> str:
    key = seed.api_key(client)
    response = client.post(
        "/api/v1/applications", json=application(**overrides), headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def mark_sent(client: TestClient, at: dt.datetime) -> None:
    async def go() -> None:
        await seed.state(client).database.execute(tables.outbox.update().values(status="sent", sent_at=at))

    seed.run(client, go)


def do_purge(client: TestClient, now: dt.datetime) -> Any:
    state = seed.state(client)
    return seed.run(client, purge, state.database, state.settings, now)


def test_cv_is_deleted_30_days_after_delivery_not_before(client: TestClient) -> None:
    seed.offer(client)
    submit(client)
    sent = dt.datetime.now(dt.UTC)
    report = do_purge(client, sent + dt.timedelta(days=40))
    assert report.cvs_deleted == 0  # not delivered yet: kept, whatever its age
    mark_sent(client, sent)
    assert do_purge(client, sent + dt.timedelta(days=29)).cvs_deleted == 0
    assert do_purge(client, sent + dt.timedelta(days=31)).cvs_deleted == 1
    [cv] = seed.fetch_all(client, tables.cv_files.select())
    assert cv["data"] is None and cv["deleted_at"] is not None
    assert do_purge(client, sent + dt.timedelta(days=32)).cvs_deleted == 0  # idempotent


def test_personal_data_is_anonymised_after_two_years(client: TestClient) -> None:
    seed.offer(client)
    request_id = submit(client, message="Mon numéro perso est dans mon CV")
    mark_sent(client, dt.datetime.now(dt.UTC))
    now = dt.datetime.now(dt.UTC)
    assert do_purge(client, now + dt.timedelta(days=700)).requests_anonymised == 0
    assert do_purge(client, now + dt.timedelta(days=731)).requests_anonymised == 1
    [row] = seed.fetch_all(client, tables.contact_requests.select())
    assert row["first_name"] == row["last_name"] == "Anonyme"
    assert row["email"] == f"anonyme-{request_id}@invalid"
    assert row["phone"] == "" and row["message"] is None
    assert seed.fetch_all(client, tables.outbox.select()) == []
    assert seed.fetch_all(client, sa.select(tables.reply_tokens)) == []


def test_stats_counts_requests_by_kind_and_status(client: TestClient) -> None:
    seed.offer(client)
    submit(client)
    submit(client, email="autre@example.org")
    text = seed.run(client, stats, seed.state(client).database)
    assert "candidature  received          2" in text
    assert "mon-site" in text
    emails = text.split("Emails by status:\n")[1].split("Failed emails by kind:\n")
    assert sum(int(line.split()[-1]) for line in emails[0].splitlines()) == 4
    assert [line.split() for line in emails[1].splitlines()] == [
        ["recipient_refused", "0"],
        ["message_refused", "0"],
        ["too_many_attempts", "0"],
    ]


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SECRET_KEY", "k")
    return tmp_path


def test_keys_create_list_revoke(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["keys", "create", "mon-site"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("lba_")
    prefix = key.split("_")[1]
    assert cli.main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert prefix in listing and "mon-site" in listing and "active" in listing
    assert key not in listing  # only the hash is kept
    assert cli.main(["keys", "revoke", prefix]) == 0
    assert cli.main(["keys", "revoke", prefix]) == 1
    cli.main(["keys", "list"])
    assert "revoked" in capsys.readouterr().out


def test_purge_and_stats_commands_run(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["purge"]) == 0
    assert "CVs deleted: 0" in capsys.readouterr().out
    assert cli.main(["stats"]) == 0
    assert "Requests by kind" in capsys.readouterr().out


def test_purge_dry_run_prints_exactly_what_purge_then_does_and_changes_nothing(client: TestClient) -> None:
    seed.offer(client)
    seed.company(client)
    old = [submit(client), submit(client, email="autre@example.org")]
    recent = submit(client, email="recent@example.org")
    delivered = dt.datetime.now(dt.UTC)
    mark_sent(client, delivered)
    # Two old requests (anonymised, their CVs deleted), one recent whose CV is due too.
    later = delivered + dt.timedelta(days=731)

    async def touch_recent() -> None:
        await seed.state(client).database.execute(
            tables.contact_requests.update()
            .where(tables.contact_requests.c.id == recent)
            .values(updated_at=later - dt.timedelta(days=1))
        )

    seed.run(client, touch_recent)
    before = support.every_row(client)
    state = seed.state(client)
    planned = seed.run(client, lambda: purge(state.database, state.settings, later, dry_run=True))
    assert support.every_row(client) == before
    done = seed.run(client, purge, state.database, state.settings, later)
    assert planned.lines() == done.lines()
    assert planned.summary() == "Dry run: nothing was changed. `purge` would do this now:\n" + done.summary()
    assert sorted(done.cv_requests) == sorted([*old, recent])
    assert sorted(done.anonymised_requests) == sorted(old)
    assert done.emails_deleted == 4 and done.tokens_deleted > 0
    assert support.every_row(client) != before
    # Nothing is due any more: a second dry run says so.
    again = seed.run(client, lambda: purge(state.database, state.settings, later, dry_run=True))
    assert again.lines() == [
        "CVs deleted: 0",
        "Requests anonymised: 0",
        "Finished emails deleted: 0",
        "Reply tokens deleted: 0",
        "Expired CVs kept across form errors deleted: 0",
    ]


def test_purge_dry_run_command(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["purge", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("Dry run: nothing was changed.")
