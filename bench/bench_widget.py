"""The widget as a visitor meets it, in headless Chromium: time from page load
to the buttons shown, and from a click to an interactive form (iframe loaded,
first field focused), beside a bare static iframe of the widget's origin loaded
in the same run. Prints figures and ratios; asserts nothing.

    .venv/bin/python bench/bench_widget.py [ITERATIONS]

The real server (`widget-server serve`, SQLite, demo directory) runs on
http://localhost:PORT; the partner pages on http://127.0.0.1:PORT2, another
origin. Each iteration uses a fresh browser context (cold HTTP cache, as a
first visit). The page holds three placeholders (offer, company, formation).
Baselines: the same page with, instead of the widget, an iframe of a static
file of the widget's origin (the floor: one request and a frame); and, for the
click, the form page itself in a plain iframe (what the widget adds on top of
the form). The click is a programmatic one: no hover, so the modal code is
fetched on the click itself (a mouse hover would prefetch it).
ITERATIONS (default 10, at most 50); the whole run stops after TIME_LIMIT s.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import uvicorn
from playwright.sync_api import Browser, Page, sync_playwright

from widget_server.host_page import create_host_app

TIME_LIMIT = 180.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
OFFER, SIRET = "LBA-2026-01007", "90933327100015"
FORMATION = "004111P011010530070001510105300700015-69383#L01"

# Timestamps on one clock for every frame: performance.timeOrigin + now().
PROBE = """
window.__t = () => performance.timeOrigin + performance.now();
window.__ready = [];
document.addEventListener("lba:ready", () => window.__ready.push(__t()));
document.addEventListener("focusin", e => { if (e.target.id === "last_name") window.__focusAt = __t(); });
document.addEventListener("load", e => {
  if (e.target.tagName === "IFRAME") window.__iframeAt = __t();
}, true);
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def pages(directory: Path, static_path: str) -> None:
    head = (
        '<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>Bench</title>'
        '<link rel="icon" href="data:,">{extra}</head><body><main><h1>Offres</h1>'
    )
    placeholders = (
        f'<div data-lba-widget="candidature" data-offer-id="{OFFER}"></div>'
        f'<div data-lba-widget="candidature" data-siret="{SIRET}"></div>'
        f'<div data-lba-widget="rdv" data-formation-id="{FORMATION}"></div>'
    )
    loader = '<script async src="{{WIDGET_URL}}/widget/v1/loader.js" data-caller="bench"></script>'
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "widget.html").write_text(head.format(extra=loader) + placeholders + "</main></body></html>")
    (directory / "static.html").write_text(
        head.format(extra="") + f'<iframe title="statique" src="{{{{WIDGET_URL}}}}{static_path}"></iframe>'
        "</main></body></html>"
    )
    (directory / "blank.html").write_text(head.format(extra="") + "</main></body></html>")


def _attribute(ref: str) -> str:
    return "data-siret" if ref.isdigit() else "data-offer-id"


def _focused_at(page: Page, ref: str) -> float:
    """When the form's first field got the focus, on the probe's clock."""
    for _ in range(500):
        for frame in page.frames:
            if f"={ref}&" in frame.url and frame.evaluate("() => window.__focusAt || 0"):
                return float(frame.evaluate("() => window.__focusAt"))
        page.wait_for_timeout(10)
    raise RuntimeError("the form never took the focus")


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values):7.1f} ms (min {min(values):.1f}, max {max(values):.1f})"


def run(browser: Browser, site: str, widget: str, iterations: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {
        name: []
        for name in (
            "load_buttons",
            "load_static",
            "click_form",
            "hover_click_form",
            "click_static",
            "click_plain_form",
        )
    }
    form_url = f"{widget}/widget/v1/candidature?offer_id={OFFER}&caller=bench"
    static_url = ""
    deadline = time.monotonic() + TIME_LIMIT
    for _ in range(iterations):
        if time.monotonic() > deadline:
            print("time limit reached", file=sys.stderr)
            break
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        context.add_init_script(PROBE)
        page = context.new_page()
        page.set_default_timeout(15_000)

        page.goto(site + "/widget.html")
        page.wait_for_function("() => window.__ready.length >= 3")
        start = page.evaluate("() => performance.timeOrigin")
        figures["load_buttons"].append(page.evaluate("() => window.__ready[2]") - start)

        for key, ref in (("click_form", OFFER), ("hover_click_form", SIRET)):
            button = (
                f"document.querySelector('[data-lba-widget][{_attribute(ref)}=\"{ref}\"]')"
                ".shadowRoot.querySelector('button')"
            )
            if key == "hover_click_form":
                # A mouse passes over the button a moment before clicking.
                page.evaluate(f"() => {button}.dispatchEvent(new PointerEvent('pointerenter'))")
                page.wait_for_timeout(150)
            clicked = page.evaluate(f"() => {{ const t = __t(); {button}.click(); return t; }}")
            figures[key].append(_focused_at(page, ref) - clicked)
            page.keyboard.press("Escape")
            page.wait_for_function(
                "() => ![...document.querySelectorAll('[data-lba-widget]')]"
                ".some(e => e.shadowRoot.querySelector('dialog'))"
            )
        context.close()

        # Baselines, in a context as cold as the widget's.
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        context.add_init_script(PROBE)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(site + "/static.html")
        page.wait_for_function("() => window.__iframeAt")
        figures["load_static"].append(page.evaluate("() => window.__iframeAt - performance.timeOrigin"))
        static_url = static_url or page.frames[1].url
        page.goto(site + "/blank.html")
        for key, url in (("click_static", static_url), ("click_plain_form", form_url)):
            figures[key].append(
                page.evaluate(
                    """src => new Promise(done => {
                const t = performance.now(), frame = document.createElement("iframe");
                frame.title = "base"; frame.onload = () => done(performance.now() - t);
                frame.src = src; document.body.append(frame);
            })""",
                    url,
                )
            )
        context.close()
    return figures


def main() -> None:
    iterations = min(int(sys.argv[1]) if len(sys.argv) > 1 else 10, 50)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        port, site_port = free_port(), free_port()
        widget, site = f"http://localhost:{port}", f"http://127.0.0.1:{site_port}"
        env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "PUBLIC_URL": widget,
            "EXAMPLE_HOST_PAGE_PORT": "0",
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/bench.db",
            "VAR_DIR": str(tmp / "var"),
            "SECRET_KEY": "bench",
            "DEMO_DATA": "true",
            "RATE_LIMIT": "100000/minute",
            "LOG_LEVEL": "WARNING",
            "SMTP_URL": "",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "widget_server.cli", "serve"],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = None
        try:
            wait_for(f"http://127.0.0.1:{port}/healthz")
            form_page = f"http://127.0.0.1:{port}/widget/v1/candidature?offer_id={OFFER}"
            with urllib.request.urlopen(form_page) as response:
                css = re.search(r'href="(/widget/v1/assets/form\.[0-9a-f]+\.css)"', response.read().decode())
            assert css, "no stylesheet on the form page"
            pages(tmp / "pages", css.group(1))
            server = uvicorn.Server(
                uvicorn.Config(
                    create_host_app(widget, tmp / "pages"),
                    host="127.0.0.1",
                    port=site_port,
                    log_level="warning",
                    lifespan="off",
                )
            )
            threading.Thread(target=server.run, daemon=True).start()
            wait_for(site + "/blank.html")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                run(browser, site, widget, 1)  # warm-up: server caches, Chromium start-up
                figures = run(browser, site, widget, iterations)
                browser.close()
        finally:
            if server is not None:
                server.should_exit = True
            process.terminate()
            process.wait(10)
    n = len(figures["load_buttons"])
    print(f"Widget in headless Chromium, {n} cold visits, median (min, max):")
    print(f"  page load -> 3 buttons shown        {median_ms(figures['load_buttons'])}")
    print(f"  page load -> static iframe loaded   {median_ms(figures['load_static'])}  (baseline)")
    print(f"  click -> form interactive (modal)   {median_ms(figures['click_form'])}")
    print(f"  same, hovered 150 ms before         {median_ms(figures['hover_click_form'])}")
    print(f"  click -> static iframe loaded       {median_ms(figures['click_static'])}  (baseline)")
    print(f"  click -> form page, plain iframe    {median_ms(figures['click_plain_form'])}")
    ratio = statistics.median(figures["load_buttons"]) / statistics.median(figures["load_static"])
    print(f"  ratio buttons / static iframe:      {ratio:.2f}")
    ratio = statistics.median(figures["click_form"]) / statistics.median(figures["click_static"])
    print(f"  ratio modal form / static iframe:   {ratio:.2f}")
    ratio = statistics.median(figures["click_form"]) / statistics.median(figures["click_plain_form"])
    print(f"  ratio modal form / plain form:      {ratio:.2f}")
    ratio = statistics.median(figures["hover_click_form"]) / statistics.median(figures["click_plain_form"])
    print(f"  ratio hovered modal / plain form:   {ratio:.2f}")


if __name__ == "__main__":
    main()
