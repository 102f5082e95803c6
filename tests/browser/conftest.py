"""Real-browser fixtures: the real server (`widget-server serve`, in a
subprocess, on SQLite with the demo directory) with the example partner site on
a second origin, small fixture pages on a third, and headless Chromium driven
by Playwright. Everything listens on 127.0.0.1 and stops with the tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.browser.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    EVENTS_SCRIPT,
    QuietServer,
    Servers,
    fixture_pages,
    free_port,
    start_widget_server,
    stop_widget_server,
    wait_for,
)
from widget_server.host_page import create_host_app


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # No rerun: a browser test that fails once is a failure to look at.
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.timeout(60))


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    tmp = tmp_path_factory.mktemp("browser")
    port, site_port, fixtures_port = free_port(), free_port(), free_port()
    widget = f"http://localhost:{port}"
    process = start_widget_server(tmp, port, EXAMPLE_HOST_PAGE_PORT=str(site_port))
    fixtures_dir = tmp / "pages"
    fixture_pages(fixtures_dir)
    fixtures = uvicorn.Server(
        uvicorn.Config(
            create_host_app(widget, fixtures_dir),
            host="127.0.0.1",
            port=fixtures_port,
            log_level="warning",
            lifespan="off",
            ws="none",
            http="h11",
        )
    )
    thread = threading.Thread(target=fixtures.run, daemon=True)
    thread.start()
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", process)
        wait_for(f"http://127.0.0.1:{site_port}/", process)
        wait_for(f"http://127.0.0.1:{fixtures_port}/empty.html")
        yield Servers(
            widget, f"http://127.0.0.1:{site_port}", f"http://127.0.0.1:{fixtures_port}", tmp / "var"
        )
    finally:
        fixtures.should_exit = True
        thread.join(10)
        stop_widget_server(process)


@pytest.fixture(scope="module")
def quiet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuietServer]:
    """A service of its own whose emails wait: no worker runs until `worker()`."""
    tmp = tmp_path_factory.mktemp("quiet")
    port = free_port()
    process = start_widget_server(tmp, port, OUTBOX_WORKER="false", EXAMPLE_HOST_PAGE_PORT="0")
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", process)
        yield QuietServer(Servers(f"http://localhost:{port}", "", "", tmp / "var"), tmp, port)
    finally:
        stop_widget_server(process)


@pytest.fixture
def playwright() -> Iterator[Playwright]:
    # A fresh driver and browser per test (about half a second): a test that
    # stalled Chromium cannot take the next one down with it.
    with sync_playwright() as instance:
        yield instance


@pytest.fixture
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM} (apt-get install chromium)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="fr-FR")
    context.add_init_script(EVENTS_SCRIPT)
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors  # type: ignore[attr-defined]
    page.on("console", lambda m: print("CONSOLE", m.type, m.text))
    page.on("pageerror", lambda e: print("PAGEERROR", e))
    page.on("requestfailed", lambda r: print("REQFAILED", r.url, r.failure))
    page.on("response", lambda r: print("RESP", r.status, r.url[:120]) if r.status >= 400 else None)
    page.on("framenavigated", lambda f: print("NAV", f.url[:120]))
    yield page
    # A route handler still in flight can make closing the context wait forever.
    page.unroute_all(behavior="ignoreErrors")
