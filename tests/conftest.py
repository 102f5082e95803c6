"""Shared fixtures: settings on a fresh database (SQLite, or PostgreSQL when
TEST_DATABASE_URL says so) and the app driven through TestClient."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.smtp_server import SMTPServer
from tests.smtp_server import running as running_smtp_server
from widget_server.app import create_app
from widget_server.settings import Settings, load_settings

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")


def reset_postgresql(url: str) -> None:
    import asyncpg

    async def reset() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        finally:
            await conn.close()

    asyncio.run(reset())


def make_settings(tmp_path: Path, **overrides: str) -> Settings:
    environ = {
        "VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": "test-secret-key",
        "PUBLIC_URL": "http://testserver",
        "FORM_MIN_FILL_SECONDS": "0",
        "RATE_LIMIT": "1000/minute",
        "API_KEY_RATE_LIMIT": "1000/minute",
        "DEMO_DATA": "false",
        "LOG_LEVEL": "WARNING",
        "OUTBOX_WORKER": "false",  # tests that want delivery run a worker themselves
    }
    if TEST_DATABASE_URL:
        reset_postgresql(TEST_DATABASE_URL)
        environ["DATABASE_URL"] = TEST_DATABASE_URL
    else:
        environ["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/test.db"
    environ.update(overrides)
    return load_settings(environ, env_file=None)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    """A real SMTP server on 127.0.0.1 recording what it receives (see tests/smtp_server.py)."""
    with running_smtp_server() as server:
        yield server
