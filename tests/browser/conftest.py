"""Real-browser fixtures: the real server (`widget-server serve`, in a
subprocess, on SQLite with the demo directory) with the example partner site on
a second origin, small fixture pages on a third, and headless Chromium driven
by Playwright. Everything listens on 127.0.0.1 and stops with the tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from widget_server.host_page import create_host_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    # `gc()` in pages: the leak test checks that a removed placeholder can be collected.
    "--js-flags=--expose-gc",
]

# Targets of the demo directory (examples/data), as the example site shows them.
OFFER = "LBA-2026-01007"  # Boulangerie Ferrand, Lyon
OTHER_OFFER = "LBA-2026-01014"  # Garage Lemaire, Nantes
CLOSED_OFFER = "LBA-2026-01028"
NO_CONTACT_OFFER = "LBA-2026-01042"
SIRET = "90933327100015"  # Numérique Phocéen
OPTED_OUT_SIRET = "90622251400018"  # Restaurant Le Petit Zinc
FORMATION = "004111P011010530070001510105300700015-69383#L01"  # CAP Boulanger, Lyon
OPTED_OUT_FORMATION = "020555P011052650350001110526503500011-31555#L01"
UNKNOWN_OFFER = "LBA-0000-00000"
BAD_SIRET = "12345678901235"  # fails the SIRET check digit

# Records every lba:* event of the page, from its first line on, and every
# eligibility request at the moment the page makes it (`fetch` called), so
# that a count read after the page's own signal is exact, not a race with
# the network events Playwright reports later.
EVENTS_SCRIPT = """
window.__lba = [];
window.__eligibility = [];
const pageFetch = window.fetch;
window.fetch = function (url, options) {
  if (String(url).includes("/api/v1/eligibility")) window.__eligibility.push(String(url));
  return pageFetch.call(this, url, options);
};
["ready", "open", "submitted", "close", "unavailable", "error"].forEach(function (type) {
  document.addEventListener("lba:" + type, function (event) {
    var el = event.target;
    window.__lba.push({type: type, detail: event.detail,
      ref: el.dataset.offerId || el.dataset.siret || el.dataset.formationId || null});
  });
});
"""


@dataclass(frozen=True)
class Servers:
    widget: str  # the service, PUBLIC_URL (http://localhost:PORT)
    site: str  # the example partner site (http://127.0.0.1:PORT2)
    fixtures: str  # the fixture pages of this folder (http://127.0.0.1:PORT3)
    var_dir: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen[bytes] | None = None, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def fixture_pages(directory: Path) -> None:
    """Small partner pages, each showing one behaviour."""
    loader = '<script async src="{{WIDGET_URL}}/widget/v1/loader.js" data-caller="fixture"></script>'
    head = (
        '<!doctype html><html lang="fr"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,"><title>{title}</title>{extra}</head>'
        "<body><main><h1>{title}</h1>"
    )
    tail = "</main></body></html>"
    pages = {
        "twice.html": head.format(title="Deux fois le script", extra=loader)
        + f'<div data-lba-widget="candidature" data-offer-id="{OFFER}"></div>'
        f'<div data-lba-widget="rdv" data-formation-id="{FORMATION}" data-label="Poser une question"'
        ' data-color="#7a2e8c"></div>' + loader + tail,
        "inline.html": head.format(title="Formulaires dans la page", extra="")
        + f'<div data-lba-widget="candidature" data-offer-id="{OFFER}" data-mode="inline"></div>'
        f'<div data-lba-widget="rdv" data-formation-id="{FORMATION}" data-mode="inline"></div>'
        + loader
        + tail,
        "unavailable.html": head.format(title="Cibles indisponibles", extra=loader)
        + f'<div data-lba-widget="candidature" data-offer-id="{UNKNOWN_OFFER}"><a class="fallback" '
        'href="{{WIDGET_URL}}/widget/v1/candidature?offer_id=' + UNKNOWN_OFFER + '">Je candidate</a></div>'
        f'<div data-lba-widget="candidature" data-siret="{BAD_SIRET}"></div>'
        '<div data-lba-widget="candidature"></div>'
        f'<div data-lba-widget="candidature" data-siret="{SIRET}"></div>' + tail,
        "empty.html": head.format(title="Page vide", extra=loader)
        + '<p>Les emplacements arrivent plus tard.</p><div id="slot"></div>'
        + tail,
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, html in pages.items():
        (directory / name).write_text(html, encoding="utf-8")


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
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ", "SYSTEMROOT")},
        "ENVIRONMENT": "development",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PUBLIC_URL": widget,
        "EXAMPLE_HOST_PAGE_PORT": str(site_port),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/widget.db",
        "VAR_DIR": str(tmp / "var"),
        "SECRET_KEY": "browser-tests",
        "DEMO_DATA": "true",
        "FORM_MIN_FILL_SECONDS": "0",
        "RATE_LIMIT": "10000/minute",
        "OUTBOX_POLL_SECONDS": "0.2",
        "LOG_LEVEL": "WARNING",
    }
    log = (tmp / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "widget_server.cli", "serve"],
        cwd=tmp,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
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
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


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
    yield page
    # A route handler still in flight can make closing the context wait forever.
    page.unroute_all(behavior="ignoreErrors")


def events(page: Page, kind: str | None = None) -> list[dict[str, Any]]:
    recorded: list[dict[str, Any]] = page.evaluate("window.__lba")
    return [e for e in recorded if kind is None or e["type"] == kind]


def eligibility_requests(page: Page) -> list[str]:
    """The eligibility requests the page has made so far, in order."""
    made: list[str] = page.evaluate("window.__eligibility")
    return made


def wait_events(page: Page, kind: str, count: int = 1) -> list[dict[str, Any]]:
    page.wait_for_function(
        "([kind, count]) => window.__lba.filter(e => e.type === kind).length >= count", arg=[kind, count]
    )
    return events(page, kind)
