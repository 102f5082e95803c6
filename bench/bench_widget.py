"""The widget as a visitor meets it, in headless Chromium, beside what the
browser does anyway, measured in the same run. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_widget.py [--rounds N] [--seconds S]

The real server (`widget-server serve`, SQLite, demo directory) runs on
http://localhost:PORT; the partner pages on http://127.0.0.1:PORT2, another
origin (another site: the form is a cross-site iframe, as on a partner's page).
Each round opens fresh browser contexts (cold HTTP cache, a first visit) and
measures, in turns:

- ours: a page with three placeholders (offer, company, formation): page load
  to the third button shown (`lba:ready`); then, 500 ms later (a visitor does
  not click the instant a button appears), a click on the offer's button
  (`button.click()`: no pointer or focus before it, the worst case) to the
  form's first field focused; then a click on the company's button hovered
  150 ms before (a note).
- baselines: the same page holding, instead of the widget, an iframe of a
  static file of the widget's origin (page load to that iframe's `load`: the
  floor of showing anything of ours); and, 500 ms after a blank page loaded,
  the form page itself in a plain iframe (creation to the iframe's `load`:
  what the form costs without the widget).

Figures are medians of the rounds. The browser is driven by a child process
killed at the time limit (the rounds done by then are counted), so the run is
bounded even if Chromium stalls. Also measured: the loader's gzipped size as
served (budget 2,048 B) and the resident memory of the idle `serve` process
after the rounds (budget 100 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import uvicorn
from support import Row, free_port

from widget_server.host_page import create_host_app

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
LOADER_BUDGET = 2048  # bytes, gzipped
RSS_BUDGET = 100.0  # MB
CLICK_GOAL = 1 / 1.2  # the plain iframe's time over ours: ours at most 1.2 times it
LAST: dict[str, float] = {}  # the medians of the last measure(), every figure
REACTION_MS = 500  # between a button shown (or a blank page loaded) and the click

# Timestamps on one clock for every frame: performance.timeOrigin + now().
PROBE = """
window.__t = () => performance.timeOrigin + performance.now();
window.__ready = [];
document.addEventListener("lba:ready", () => window.__ready.push(__t()));
document.addEventListener("focusin", e => { if (e.target.id === "last_name") window.__focusAt = __t(); });
// When the widget puts an iframe in the page (its own element, in a shadow root).
for (const proto of [Element.prototype, DocumentFragment.prototype]) {
  const append = proto.append;
  proto.append = function (...nodes) {
    if (nodes.some(node => node && node.tagName === "IFRAME")) window.__iframeAddedAt = __t();
    return append.apply(this, nodes);
  };
}
document.addEventListener("load", e => {
  if (e.target.tagName === "IFRAME") window.__iframeAt = __t();
}, true);
"""


def wait_for(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def write_pages(directory: Path, static_path: str) -> None:
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


# --- the browser side (a child process) ---------------------------------------


def _button(ref: str) -> str:
    attribute = "data-siret" if ref.isdigit() else "data-offer-id"
    placeholder = f"document.querySelector('[data-lba-widget][{attribute}=\"{ref}\"]')"
    return placeholder + ".shadowRoot.querySelector('button')"


def _focused_at(page: Any, ref: str) -> float:
    """When the form's first field got the focus, on the probe's clock."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for frame in page.frames:
            if f"={ref}&" in frame.url:
                at = frame.evaluate("() => window.__focusAt || 0")
                if at:
                    return float(at)
        page.wait_for_timeout(10)
    raise RuntimeError("the form never took the focus")


def _close_dialogs(page: Any) -> None:
    page.evaluate(
        "() => document.querySelectorAll('[data-lba-widget]')"
        ".forEach(e => e.shadowRoot.querySelector('dialog[open]')?.close())"
    )


def _context(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.add_init_script(PROBE)
    context.set_default_timeout(15_000)
    return context


def ours(browser: Any, site: str, reaction_ms: int) -> dict[str, float]:
    context = _context(browser)
    try:
        page = context.new_page()
        page.goto(site + "/widget.html")
        page.wait_for_function("() => window.__ready.length >= 3")
        figures = {"buttons": page.evaluate("() => window.__ready[2] - performance.timeOrigin")}
        page.wait_for_timeout(reaction_ms)
        clicked = page.evaluate(f"() => {{ const t = __t(); {_button(OFFER)}.click(); return t; }}")
        figures["click"] = _focused_at(page, OFFER) - clicked
        figures["click_to_iframe"] = page.evaluate("() => window.__iframeAddedAt") - clicked
        _close_dialogs(page)
        page.evaluate(f"() => {_button(SIRET)}.dispatchEvent(new PointerEvent('pointerenter'))")
        page.wait_for_timeout(150)
        clicked = page.evaluate(f"() => {{ const t = __t(); {_button(SIRET)}.click(); return t; }}")
        figures["hovered_click"] = _focused_at(page, SIRET) - clicked
        return figures
    finally:
        context.close()


def baselines(browser: Any, site: str, form_url: str, reaction_ms: int) -> dict[str, float]:
    figures = {}
    context = _context(browser)
    try:
        page = context.new_page()
        page.goto(site + "/static.html")
        page.wait_for_function("() => window.__iframeAt")
        figures["bare_iframe"] = page.evaluate("() => window.__iframeAt - performance.timeOrigin")
    finally:
        context.close()
    context = _context(browser)
    try:
        page = context.new_page()
        page.goto(site + "/blank.html")
        page.wait_for_timeout(reaction_ms)
        figures["plain_form"] = page.evaluate(
            """src => new Promise(done => {
                const t = performance.now(), frame = document.createElement("iframe");
                frame.title = "base"; frame.onload = () => done(performance.now() - t);
                frame.src = src; document.body.append(frame);
            })""",
            form_url,
        )
    finally:
        context.close()
    return figures


def browse(site: str, form_url: str, rounds: int, reaction_ms: int) -> None:
    """One JSON line per round on stdout, ours and the baselines in turns."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        ours(browser, site, reaction_ms)  # warm-up: the server's caches, Chromium's start
        baselines(browser, site, form_url, reaction_ms)
        for n in range(rounds):
            # Which side goes first alternates too.
            if n % 2:
                figures = {
                    **baselines(browser, site, form_url, reaction_ms),
                    **ours(browser, site, reaction_ms),
                }
            else:
                figures = {
                    **ours(browser, site, reaction_ms),
                    **baselines(browser, site, form_url, reaction_ms),
                }
            print(json.dumps(figures), flush=True)
        browser.close()


# --- the measuring side -------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants, in MB."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total / 1024


def loader_size(widget: str) -> tuple[int, int]:
    """The loader's body as served to a browser (gzipped), and its raw size."""
    url = widget + "/widget/v1/loader.js"
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})) as answer:
        assert answer.headers["Content-Encoding"] == "gzip"
        packed = len(answer.read())
    with urllib.request.urlopen(url) as answer:
        return packed, len(answer.read())


def _rounds(command: list[str], seconds: float) -> list[dict[str, float]]:
    """The child's rounds until it ends or `seconds` have passed (then it is killed)."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    timer = threading.Timer(seconds, lambda: os.killpg(child.pid, 9))
    timer.start()
    results = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            results.append(json.loads(line))
    finally:
        timer.cancel()
        if child.poll() is None:
            os.killpg(child.pid, 9)
        child.wait()
    if timer.finished.is_set() and child.returncode == -9:
        print(f"  browser rounds cut at {seconds:.0f} s", file=sys.stderr)
    return results


def measure(rounds: int = 12, seconds: float = 90.0, reaction_ms: int = REACTION_MS) -> list[Row]:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"no Chromium at {CHROMIUM}")
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
            form_url = f"{widget}/widget/v1/candidature?offer_id={OFFER}&caller=bench"
            with urllib.request.urlopen(form_url) as response:
                css = re.search(r'href="(/widget/v1/assets/form\.[0-9a-f]+\.css)"', response.read().decode())
            assert css, "no stylesheet on the form page"
            write_pages(tmp / "pages", css.group(1))
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
            packed, raw = loader_size(widget)
            command = [sys.executable, __file__, "--browse", site, form_url, str(rounds), str(reaction_ms)]
            results = _rounds(command, seconds)
            time.sleep(1)  # idle: the last requests answered
            rss = rss_mb(process.pid)
        finally:
            if server is not None:
                server.should_exit = True
            process.terminate()
            process.wait(10)
    if not results:
        raise RuntimeError("no browser round finished in time")
    median = {key: statistics.median(r[key] for r in results) for key in results[0]}
    LAST.clear()
    LAST.update(median)
    n = len(results)
    return [
        Row(
            "loader.js, gzipped as served",
            "-",
            packed,
            LOADER_BUDGET,
            "B",
            1.0,
            f"budget; raw {raw:,} B",
            True,
        ),
        Row(
            "page load → 3 buttons shown",
            "sqlite",
            median["buttons"],
            median["bare_iframe"],
            "ms",
            1.0,
            f"baseline: a bare iframe of our origin; median of {n}",
            True,
        ),
        Row(
            "click → interactive form (modal)",
            "sqlite",
            median["click"],
            median["plain_form"],
            "ms",
            round(CLICK_GOAL, 2),
            f"baseline: the form page, plain iframe; click → our iframe {median['click_to_iframe']:.0f} ms;"
            f" hovered 150 ms before: {median['hovered_click']:.0f} ms",
            True,
        ),
        Row("idle RSS of serve", "sqlite", rss, RSS_BUDGET, "MB", 1.0, "budget; after the rounds", True),
    ]


def main() -> None:
    if sys.argv[1:2] == ["--browse"]:
        browse(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=90.0, help="time limit of the browser rounds")
    parser.add_argument(
        "--reaction", type=int, default=REACTION_MS, help="ms from a button shown to the click"
    )
    args = parser.parse_args()
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        sys.exit("Chromium is missing")
    for row in measure(args.rounds, args.seconds, args.reaction):
        print(
            f"{row.path:36} ours {row.ours:9,.1f} {row.unit:2}  baseline {row.baseline:9,.1f} {row.unit:2}"
            f"  ratio {row.ratio:4.2f} (goal ≥ {row.goal:.2f}) {'pass' if row.passed else 'FAIL'}  {row.note}"
        )


if __name__ == "__main__":
    main()
