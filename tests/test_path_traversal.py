"""Paths that try to leave the served folders: the example partner site (which
reads files from disk) and the widget's static assets.

httpx, hence TestClient, removes `..` segments (even encoded ones) before a
request leaves, so a test through it never sends what an attacker would. These
requests go byte for byte to a real uvicorn server, which decodes `%2e` and
`%2f` into the path the application sees."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests import seed
from tests.support import raw_get, serving
from widget_server.host_page import create_host_app

SECRET = b"secret outside the site"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site folder with one page, beside a file with a served suffix that must stay private."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "page.html").write_text("<p>public</p>", encoding="utf-8")
    (tmp_path / "secret.html").write_bytes(SECRET)
    (root / "link.html").symlink_to(tmp_path / "secret.html")
    return root


def test_the_example_site_serves_its_own_pages(site: Path) -> None:
    with serving(create_host_app("http://127.0.0.1:1", site)) as address:
        status, body = raw_get(address, "/page.html")
    assert (status, body) == (200, b"<p>public</p>")


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.html",
        "/%2e%2e/secret.html",
        "/%2E%2E/secret.html",
        "/..%2fsecret.html",
        "/..%2Fsecret.html",
        "/%2e%2e%2fsecret.html",
        "/nowhere/../../secret.html",
        "/link.html",  # a symbolic link out of the folder
        "ABSOLUTE",  # the secret's absolute path after the first slash
    ],
)
def test_the_example_site_serves_nothing_outside_its_folder(site: Path, target: str) -> None:
    if target == "ABSOLUTE":
        target = "/" + str(site.parent / "secret.html")
    with serving(create_host_app("http://127.0.0.1:1", site)) as address:
        status, body = raw_get(address, target)
    assert status == 404
    assert SECRET not in body


def test_the_example_site_serves_only_web_files(site: Path) -> None:
    (site / "settings.toml").write_bytes(SECRET)
    with serving(create_host_app("http://127.0.0.1:1", site)) as address:
        status, body = raw_get(address, "/settings.toml")
    assert status == 404
    assert SECRET not in body


@pytest.mark.parametrize("target", ["/..%5csecret.html", "/..\\secret.html"])
def test_backslashes_are_not_separators(site: Path, target: str) -> None:
    # On Linux `..\secret.html` is a file name inside the folder, not a way
    # out; this keeps it that way if the site is ever served from Windows.
    with serving(create_host_app("http://127.0.0.1:1", site)) as address:
        status, body = raw_get(address, target)
    assert status == 404
    assert SECRET not in body


@pytest.mark.parametrize(
    "name",
    [
        "..%2f..%2fpyproject.toml",
        "%2e%2e%2f%2e%2e%2fpyproject.toml",
        "..%5c..%5cpyproject.toml",
        "form.css",  # the unhashed name of a real asset
    ],
)
def test_assets_are_served_only_by_their_hashed_names(client: TestClient, name: str) -> None:
    # Assets are read into memory at start-up and looked up by name in that
    # table; no path from a request ever reaches the file system.
    response = client.get(f"/widget/v1/assets/{name}")
    assert response.status_code == 404
    assert b"[project]" not in response.content
    assert client.get(seed.state(client).assets.url("form.css")).status_code == 200
