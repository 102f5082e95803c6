"""The installable package (SPEC section 13): the built wheel, installed into a
fresh virtual environment, runs `widget-server serve` from an empty directory
and serves the loader, a form page, its assets, the example partner site, and
renders emails, all from package data.

Offline and quick: the wheel is built with the setuptools already installed
(`--no-build-isolation`), installed without its dependencies, which the fresh
environment reads from this one's site-packages (a plain path in a `.pth`
file: this environment's editable install of the project is not carried over).
Runs in CI (`.ci/run`); locally with `-m wheel`.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import application
from widget_server.bundled import BUNDLE, SOURCES
from widget_server.settings import SETTINGS

pytestmark = [pytest.mark.wheel, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parent.parent
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)
DEMO_OFFER = "LBA-2026-01007"  # eligible in the demo directory
STARTUP_SECONDS = 60
DELIVERY_SECONDS = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def post_json(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **headers}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the fresh environment, the wheel installed into it)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy: the build writes build/ and *.egg-info next to the sources
    shutil.copytree(REPO, source, ignore=NOT_SOURCES)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
        "--wheel-dir", tmp / "dist", source)  # fmt: skip
    [wheel] = (tmp / "dist").glob("widget_server-*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel)
    fresh_site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    (fresh_site / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield venv, wheel


def test_the_wheel_carries_templates_assets_and_demo_data(installed: tuple[Path, Path]) -> None:
    _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for name, folder in SOURCES.items():
        expected = {
            f"widget_server/{BUNDLE}/{name}/{path.relative_to(REPO / folder).as_posix()}"
            for path in (REPO / folder).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        }
        assert expected and expected <= names, name
    assert "widget_server/templates/pages/form.html" in names


def test_the_installed_package_serves_from_an_empty_directory(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    venv, _ = installed
    workdir = tmp_path / "empty"
    workdir.mkdir()
    # Neither this run's settings nor its import path reach the installed package.
    env = {k: v for k, v in os.environ.items() if k not in {s.name for s in SETTINGS} | {"PYTHONPATH"}}
    env.update(OUTBOX_POLL_SECONDS="0.2", LOG_FORMAT="json", PYTHONDONTWRITEBYTECODE="1")
    # The package imported is the installed one, not this checkout.
    where = run(venv / "bin" / "python", "-c", "import widget_server; print(widget_server.__file__)",
                cwd=workdir, env=env)  # fmt: skip
    assert where.startswith(str(venv))
    with (tmp_path / "serve.log").open("w+") as log:
        server, port, host_page_port = start_serve(venv, workdir, env, log)
        base = f"http://127.0.0.1:{port}"
        try:
            status, _, loader = get(f"{base}/widget/v1/loader.js")
            assert status == 200 and b"LBAWidget" in loader
            status, _, page = get(f"{base}/widget/v1/candidature?offer_id={DEMO_OFFER}")
            assert status == 200, page[:300]
            assets = re.findall(r"/widget/v1/assets/[\w.-]+\.(?:css|js)", page.decode())
            assert assets
            for asset in assets:
                assert get(base + asset)[0] == 200
            status, _, host_page = get(f"http://127.0.0.1:{host_page_port}/")
            # PUBLIC_URL is unset: it follows PORT.
            assert status == 200 and f"http://localhost:{port}/widget/v1/loader.js".encode() in host_page

            output = run(venv / "bin" / "widget-server", "keys", "create", "wheel-test", cwd=workdir, env=env)
            key = output.strip().splitlines()[-1]
            status, body = post_json(
                f"{base}/api/v1/applications",
                application(offer_id=DEMO_OFFER),
                {"Authorization": f"Bearer {key}"},
            )
            assert status == 202, body
            messages = wait_for_mail(base, count=2)
            pro = next(m for m in messages if m["template"] == "candidature_pro")
            status, _, raw = get(f"{base}/dev/api/mailbox/{pro['id']}")
            rendered = json.loads(raw)
            assert status == 200
            assert "Léa" in rendered["html"] and "<table" in rendered["html"]  # MJML, rendered
            assert rendered["text"] and rendered["attachments"]
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.seek(0)
        lines = [json.loads(line) for line in log.read().splitlines() if line.startswith("{")]
        access = [
            line
            for line in lines
            if line["logger"] == "uvicorn.access" and "/api/v1/applications" in line["message"]
        ]
        assert access and access[0]["request_id"]
        # State stays in VAR_DIR (default `var`), under the working directory.
        assert (workdir / "var" / "widget.db").is_file()


def start_serve(
    venv: Path, workdir: Path, env: dict[str, str], log: Any
) -> tuple[subprocess.Popen[bytes], int, int]:
    """`widget-server serve` on two free ports, once ready. Another process of this
    busy machine may take a port between our pick and the bind: then pick again."""
    for _ in range(3):
        port, host_page_port = free_port(), free_port()
        ports = {"HOST": "127.0.0.1", "PORT": str(port), "EXAMPLE_HOST_PAGE_PORT": str(host_page_port)}
        server = subprocess.Popen(
            [venv / "bin" / "widget-server", "serve"],
            cwd=workdir,
            env={**env, **ports},
            stdout=log,
            stderr=log,
        )
        if wait_until_ready(f"http://127.0.0.1:{port}", server):
            return server, port, host_page_port
        log.seek(0)
        output = log.read()
        if server.returncode is None or "address already in use" not in output:
            server.kill()
            server.wait()
            pytest.fail(
                f"serve not ready after {STARTUP_SECONDS} s (exit code {server.returncode}):\n{output}"
            )
    pytest.fail("no free port for serve after three tries")


def wait_until_ready(base: str, server: subprocess.Popen[bytes]) -> bool:
    """True once /readyz says ready; False if serve exited or took too long."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and server.poll() is None:
        try:
            status, _, body = get(f"{base}/readyz")
            if status == 200 and json.loads(body)["status"] == "ready":
                return True
        except (OSError, http.client.HTTPException, ValueError):
            pass  # not listening yet (or someone else is: serve will exit)
        time.sleep(0.2)
    return False


def wait_for_mail(base: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + DELIVERY_SECONDS
    messages: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        messages = json.loads(get(f"{base}/dev/api/mailbox")[2])["messages"]
        if len(messages) >= count:
            return messages
        time.sleep(0.2)
    pytest.fail(f"{len(messages)} of {count} emails in the dev mailbox after {DELIVERY_SECONDS} s")
