"""Helpers shared by the test modules: settings on a fresh database, request
bodies, delivery through a real SMTP server and reading what arrived.

Plain functions only; fixtures live in `conftest.py`, directory rows and API
keys in `seed.py`, the fake SMTP server in `smtp_server.py`. A test module
imports from these, never from another test module (`test_test_suite.py`
checks), so that moving or deleting a test never breaks another."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import html
import http.client
import io
import os
import re
import socket
import threading
import time
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import sqlalchemy as sa
import uvicorn
from databases import Database
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from tests import seed
from tests.smtp_server import Received, SMTPServer, free_port
from widget_server import callers, delivery, directory, migrations, tables
from widget_server.app import create_app
from widget_server.cli import uvicorn_config, with_database
from widget_server.resources import create_database, prepare_sqlite
from widget_server.settings import Settings, load_settings

T = TypeVar("T")

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")

# The least a production configuration needs (settings.production_problems).
PRODUCTION = {
    "ENVIRONMENT": "production",
    "PUBLIC_URL": "https://widget.example",
    "SECRET_KEY": "JJGnvLGrjOl4BfYWMusiRhTDckxIqIKcLPLgxzTHBXM",
    "SMTP_URL": "smtp://127.0.0.1:2525",
    "OPERATOR_NAME": "Opérateur de test",
    "OPERATOR_ADDRESS": "1 rue de l'Exemple, 75001 Paris",
    "PRIVACY_CONTACT_EMAIL": "donnees@operateur.example",
}


# --- settings -----------------------------------------------------------------


def reset_postgresql(url: str) -> None:
    import asyncpg  # only when the suite runs on PostgreSQL

    async def reset() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        finally:
            await conn.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(reset())
        return
    # Called from code already inside an event loop (make_settings in a coroutine):
    # reset from a thread of its own rather than fail with "asyncio.run() cannot be called".
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, reset()).result()


def make_settings(tmp_path: Path, **overrides: str) -> Settings:
    """Test settings on a fresh database: SQLite under `tmp_path`, or the
    PostgreSQL of TEST_DATABASE_URL emptied first."""
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


def on_database(settings: Settings, work: Callable[[Database], Awaitable[T]], *, migrate: bool = True) -> T:
    """Runs `work(database)` on the database of `settings`, outside any app:
    connected as the service connects (WAL on SQLite), migrated unless told not to."""

    async def go() -> T:
        database = create_database(settings)
        await database.connect()
        try:
            await prepare_sqlite(database)
            if migrate:
                await migrations.migrate(database)
            return await work(database)
        finally:
            await database.disconnect()

    return asyncio.run(go())


# --- CV files -------------------------------------------------------------------

DOCX_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.'
    'wordprocessingml.document.main+xml"/>{extra}</Types>'
)


def docx(*, extra_parts: dict[str, bytes] | None = None, content_types_extra: str = "") -> bytes:
    """A minimal valid Word document (an OOXML package), with `extra_parts` added."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", DOCX_CONTENT_TYPES.format(extra=content_types_extra))
        archive.writestr(
            "_rels/.rels",
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
            'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
            'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>',
        )
        archive.writestr(
            "word/document.xml",
            '<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
            'wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>Léa Moreau</w:t></w:r></w:p></w:body>'
            "</w:document>",
        )
        for name, content in (extra_parts or {}).items():
            archive.writestr(name, content)
    return buffer.getvalue()


# --- request bodies -----------------------------------------------------------


def data_url(data: bytes, media_type: str = "application/pdf") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def application(**overrides: Any) -> dict[str, Any]:
    """A valid JSON application to seed.OFFER_ID; an override of None drops the field."""
    body = {
        "offer_id": seed.OFFER_ID,
        "first_name": "Léa",
        "last_name": "Moreau",
        "email": "lea.moreau@example.org",
        "phone": "06 12 34 56 78",
        "message": "Je suis motivée !",
        "cv": data_url(seed.PDF),
        "cv_filename": "CV Léa.pdf",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def appointment(**overrides: Any) -> dict[str, Any]:
    """A valid JSON rdv request to seed.FORMATION_ID; an override of None drops the field."""
    body = {
        "formation_id": seed.FORMATION_ID,
        "first_name": "Yanis",
        "last_name": "Benali",
        "email": "yanis.benali@example.org",
        "phone": "+33 6 98 76 54 32",
        "role": "student",
        "topics": ["places", "horaires"],
        "message": "Reste-t-il des places en septembre ?",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


# --- delivery through a real SMTP server --------------------------------------


def smtp_client(tmp_path: Path, smtp: SMTPServer) -> TestClient:
    """A client of an app sending to `smtp`; no background worker (see `deliver`)."""
    settings = make_settings(tmp_path, SMTP_URL=smtp.url, OUTBOX_WORKER="false")
    return TestClient(create_app(settings))


def deliver(
    client: TestClient, batches: int = 1000, batch_size: int = 20, now: dt.datetime | None = None
) -> int:
    """Runs one email worker until the outbox has nothing due (or `batches` batches)."""
    state = seed.state(client)
    worker = delivery.create_worker(
        state.database, state.settings, batch_size=batch_size, clock=(lambda: now) if now else None
    )

    async def drain() -> int:
        total = 0
        for _ in range(batches):
            handled = await worker.run_once()
            if not handled:
                break
            total += handled
        return total

    return int(seed.run(client, drain))


def submit_application(client: TestClient, smtp: SMTPServer, **overrides: Any) -> Received:
    """Posts `application(**overrides)`, delivers, returns the first email received (the pro's)."""
    key = seed.api_key(client)
    response = client.post(
        "/api/v1/applications", json=application(**overrides), headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 202, response.text
    deliver(client)
    return smtp.received[0]


# --- reading what arrived -----------------------------------------------------


def body(message: EmailMessage, subtype: str = "plain") -> str:
    """The text of the `plain` or `html` part of an email."""
    part = message.get_body((subtype,))
    assert part is not None, f"no {subtype} part"
    return str(part.get_content())


def form_token(page: str) -> str:
    """The signed form token of a form page."""
    match = re.search(r'name="form_token" value="([^"]+)"', page)
    assert match, "no form token on the page"
    return match.group(1)


def template_name(response: httpx2.Response) -> str:
    """The template a page was rendered from."""
    # Starlette's TestClient adds `template` and `context` to the responses of
    # template pages; httpx2's Response does not declare them.
    return str(response.template.name)  # type: ignore[attr-defined]


def template_context(response: httpx2.Response) -> dict[str, Any]:
    """The context a page was rendered with."""
    return dict(response.context)  # type: ignore[attr-defined]


def links(received: Received) -> list[str]:
    """Every link of both parts of a received email."""
    html_part, text_part = body(received.message, "html"), body(received.message, "plain")
    found = [html.unescape(u) for u in re.findall(r'href="([^"]+)"', html_part)]
    found += re.findall(r"https?://\S+", text_part)
    return sorted({u for u in found if not u.startswith(("mailto:", "tel:"))})


class Anchors(HTMLParser):
    """Each link of an email's HTML: its text, whether MJML drew it as a button
    (an inline-block link in a coloured cell) and its font size."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None
        self._size = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        style = dict(attrs).get("style") or ""
        size = re.search(r"font-size:(\d+)px", style)
        if tag == "div" and size:
            self._size = size.group(1)
        if tag == "a":
            self._open = {
                "href": dict(attrs).get("href") or "",
                "button": "display:inline-block" in style and "padding" in style,
                "size": int(size.group(1) if size else self._size),
                "text": "",
            }

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open["text"] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.found.append(self._open)
            self._open = None


def email_anchors(message: EmailMessage) -> list[dict[str, Any]]:
    parser = Anchors()
    parser.feed(body(message, "html"))
    return parser.found


def path(url: str) -> str:
    """The path of a link to the test app, for TestClient."""
    return url.removeprefix("http://testserver")


def form_fields(page: str) -> dict[str, Any]:
    """The fields a reply page would post back as they are: hidden inputs,
    textareas and the checked answer."""
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))
    fields.update(
        {
            name: html.unescape(text)
            for name, text in re.findall(r'<textarea id="\w+" name="(\w+)"[^>]*>([^<]*)</textarea>', page)
        }
    )
    checked = re.search(r'name="answer" value="(\w+)" checked', page)
    assert checked
    fields["answer"] = checked.group(1)
    return fields


def snapshot(client: TestClient) -> list[list[dict[str, Any]]]:
    """What an answer would change: requests, tokens, contacts, offers, the outbox."""
    return [
        seed.fetch_all(client, sa.select(t))
        for t in (
            tables.contact_requests,
            tables.reply_tokens,
            tables.contacts,
            tables.offers,
            tables.companies,
            tables.formations,
        )
    ] + [seed.fetch_all(client, sa.select(tables.outbox.c.id))]


def every_row(client: TestClient) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, to show that something changed nothing."""
    return {
        name: sorted((seed.fetch_all(client, sa.select(table))), key=repr)
        for name, table in tables.metadata.tables.items()
    }


# --- waiting for something that happens elsewhere -----------------------------


def wait_until(condition: Callable[[], object], what: str, seconds: float = 10.0) -> None:
    """Polls `condition` until it is true, failing after `seconds`: for what
    another thread or process does, instead of sleeping a guessed time."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {seconds} s for {what}")
        time.sleep(0.01)


async def eventually(condition: Callable[[], object], what: str, seconds: float = 10.0) -> None:
    """`wait_until` for a test running inside an event loop."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {seconds} s for {what}")
        await asyncio.sleep(0.01)


async def within(awaitable: Awaitable[Any], what: str, seconds: float = 10.0) -> Any:
    """Awaits `awaitable`, failing (not hanging) after `seconds`."""
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        raise AssertionError(f"still waiting after {seconds} s for {what}") from None


# --- a real HTTP server, for what TestClient would tidy up --------------------


@contextmanager
def serving(app: ASGIApp) -> Iterator[tuple[str, int]]:
    """Runs `app` under uvicorn on 127.0.0.1, in a thread; yields (host, port).
    For requests that httpx would normalise before they leave (`/../`,
    `%2e%2e`), which only a real server receives as sent."""
    # A socket bound here, handed to uvicorn: no other process can take the port meanwhile.
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, "the server to start")
        host, port = listening.getsockname()[:2]
        yield str(host), int(port)
    finally:
        server.should_exit = True
        thread.join(10)
        listening.close()


def raw_get(address: tuple[str, int], target: str) -> tuple[int, bytes]:
    """GET `target` exactly as written (no normalisation of dots or escapes)."""
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- a real server ----------------------------------------------------------------
# For tests that need real sockets (slow clients, forwarded headers as uvicorn sees
# them, API fuzzing): `widget-server serve`'s own uvicorn options, in a thread, on
# 127.0.0.1 and a free port.


@dataclass(frozen=True)
class RunningServer:
    url: str
    port: int
    settings: Settings


def create_api_key(settings: Settings, caller: str, role: str = "partner") -> str:
    async def create(database: Database) -> str:
        return await callers.create_key(database, caller, role)

    key: str = asyncio.run(with_database(settings, create))
    return key


def load_demo(settings: Settings) -> None:
    """The fictional demo directory (examples/data) in the database of `settings`."""
    asyncio.run(with_database(settings, directory.load_demo))


@contextmanager
def running_server(settings: Settings) -> Iterator[RunningServer]:
    port = free_port()
    settings = settings.replace(host="127.0.0.1", port=port, log_level="WARNING")
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), "the test server to start", 30)
        if not server.started:
            raise RuntimeError("the test server did not start")
        yield RunningServer(f"http://127.0.0.1:{port}", port, settings)
    finally:
        server.should_exit = True
        thread.join(15)
