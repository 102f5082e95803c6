"""What the browser tests share: the demo directory's targets, the servers'
addresses, the fixture pages, and helpers reading a page's lba:* events, the
form's frame and the dev mailbox. Fixtures are in conftest.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Frame, Page

from tests import seed

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
FILLED_OFFER = "LBA-2026-01133"  # declared filled (closed) by test_answers: for no other test
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


def start_widget_server(
    tmp: Path, port: int, *, command: str = "serve", **overrides: str
) -> subprocess.Popen[bytes]:
    """`widget-server serve` (or another `command`, e.g. `worker`) on 127.0.0.1:`port`,
    on SQLite under `tmp` with the demo directory; `overrides`: settings of the test at hand."""
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ", "SYSTEMROOT")},
        "ENVIRONMENT": "development",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PUBLIC_URL": f"http://localhost:{port}",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/widget.db",
        "VAR_DIR": str(tmp / "var"),
        "SECRET_KEY": "browser-tests",
        "DEMO_DATA": "true",
        "FORM_MIN_FILL_SECONDS": "0",
        "RATE_LIMIT": "10000/minute",
        "OUTBOX_POLL_SECONDS": "0.2",
        "LOG_LEVEL": "WARNING",
        **overrides,
    }
    log = (tmp / ("server.log" if command == "serve" else f"{command}.log")).open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "widget_server.cli", command],
        cwd=tmp,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()  # the child has its own copy
    return process


def stop_widget_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@dataclass(frozen=True)
class QuietServer:
    """A service whose emails wait in the outbox until `worker()` runs one."""

    servers: Servers
    tmp: Path
    port: int

    @contextmanager
    def worker(self) -> Iterator[subprocess.Popen[bytes]]:
        """`widget-server worker` on the same database and dev mailbox, while inside."""
        process = start_widget_server(self.tmp, self.port, command="worker")
        try:
            yield process
        finally:
            stop_widget_server(process)


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
        # Another origin's page in the widget's iframe (a frame can be sent
        # elsewhere), posting what the form would: the embed id is in the hash.
        "elsewhere.html": head.format(title="Ailleurs", extra='<script src="elsewhere.js"></script>') + tail,
        "elsewhere.js": """
parent.postMessage({source: "lba-widget", v: 1, id: location.hash.slice(1), type: "submitted",
  payload: {id: "forged"}}, "*");
parent.postMessage("elsewhere-done", "*");
""",
        "empty.html": head.format(title="Page vide", extra=loader)
        + '<p>Les emplacements arrivent plus tard.</p><div id="slot"></div>'
        + tail,
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, html in pages.items():
        (directory / name).write_text(html, encoding="utf-8")


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


def slot(ref: str) -> str:
    """CSS selector of the placeholder for a target reference."""
    attribute = "data-siret" if ref.isdigit() else "data-formation-id" if "#" in ref else "data-offer-id"
    return f'[{attribute}="{ref}"]'


def form_frame(page: Page, placeholder: str = "[data-lba-widget]") -> Frame:
    """The form's iframe (in a shadow root: CSS locators pierce open ones), once its page loaded."""
    iframe = page.locator(f"{placeholder} iframe")
    iframe.wait_for()
    assert iframe.count() == 1
    handle = iframe.element_handle()
    frame = handle.content_frame()
    handle.dispose()  # a handle would keep the element alive (see the leak test)
    assert frame is not None
    frame.wait_for_url("**/widget/v1/**")
    frame.wait_for_load_state()
    return frame


def focused_in_slot(page: Page) -> str:
    """What has focus: the placeholder's inner element, e.g. 'BUTTON' or 'IFRAME'."""
    return str(
        page.evaluate(
            "() => { const a = document.activeElement;"
            " return a && a.shadowRoot && a.shadowRoot.activeElement"
            " ? (a.dataset.offerId || a.dataset.formationId) + ' ' + a.shadowRoot.activeElement.tagName"
            " : '' }"
        )
    )


PDF = seed.PDF  # a valid PDF: CVs are parsed
WCAG = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
    "iframes": False,
}


def axe_violations(target: Page | Frame) -> list[str]:
    # Axe only calls `evaluate`, which frames have too: each document is checked
    # on its own (the form is another origin than the host page).
    results = Axe().run(target, options=WCAG)
    return [f"{v['id']}: {[n['target'] for n in v['nodes']]}" for v in results.response["violations"]]


def mailbox(page: Page, servers: Servers, *, to: str, count: int, about: str = "") -> list[dict[str, Any]]:
    """The dev mailbox's messages to `to` (whose subject names `about`), once
    `count` of them have arrived. The browser tests share one server, hence one
    mailbox: a contact address may hold other tests' messages too.

    Polled through Playwright (its request API, and `wait_for_timeout` to pace
    the polls), never `time.sleep`: the sync API handles the browser's events
    only while one of its calls runs, and a sleeping test leaves them piling
    up, to be worked through (seconds, on a loaded machine) by the next call.
    """
    deadline = time.monotonic() + 15
    while True:
        answer = page.request.get(servers.widget + "/dev/api/mailbox")
        found = [m for m in answer.json()["messages"] if to in m["to"] and about in m["subject"]]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        page.wait_for_timeout(200)


def focused_id(frame: Frame) -> str:
    return str(frame.evaluate("() => document.activeElement ? document.activeElement.id : ''"))
