"""Shared fixtures: settings on a fresh database (SQLite, or PostgreSQL when
TEST_DATABASE_URL says so) and the app driven through TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.smtp_server import SMTPServer
from tests.smtp_server import running as running_smtp_server
from tests.support import make_settings
from widget_server.app import create_app
from widget_server.settings import Settings


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
