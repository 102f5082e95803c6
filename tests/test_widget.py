"""The widget's server side: the loader as served, its size, the framing policy,
the integration page and the example partner site."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests import seed
from tests.support import make_settings, template_context, template_name
from widget_server import host_page
from widget_server.app import create_app

LOADER = "/widget/v1/loader.js"
FORM = "/widget/v1/candidature"
LOADER_MAX_GZIPPED = 2048
BEFORE_CLICK_MAX_GZIPPED = 3 * 1024
FORM_PAGE_MAX_GZIPPED = 25 * 1024


def gzipped_size(body: bytes) -> int:
    return len(gzip.compress(body, 9))


def test_loader_has_the_service_urls_written_in(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, PUBLIC_URL="https://widget.example.org/")
    with TestClient(create_app(settings)) as client:
        response = client.get(LOADER)
        chunk = re.search(
            r'"(https://widget\.example\.org/widget/v1/assets/widget\.[0-9a-f]+\.js)"', response.text
        )
        assert chunk, "the modal code is loaded from a content-hashed URL"
        asset = client.get(chunk.group(1).removeprefix("https://widget.example.org"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert '"https://widget.example.org"' in response.text
    assert "__LBA_" not in response.text
    assert asset.status_code == 200
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_loader_is_cached_briefly_and_revalidated_with_an_etag(client: TestClient) -> None:
    first = client.get(LOADER)
    assert first.headers["cache-control"] == "public, max-age=300"
    etag = first.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{20}"', etag)
    again = client.get(LOADER, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    other = client.get(LOADER, headers={"If-None-Match": '"0000"'})
    assert other.status_code == 200
    assert other.content == first.content


def test_loader_is_served_gzipped_to_browsers_that_accept_it(client: TestClient) -> None:
    plain = client.get(LOADER, headers={"Accept-Encoding": "identity"})
    packed = client.get(LOADER, headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.content == plain.content  # httpx decodes it back
    assert packed.headers["vary"] == "Accept-Encoding"


def test_loader_is_not_one_of_the_hashed_assets(client: TestClient) -> None:
    assets = seed.state(client).assets
    with pytest.raises(KeyError):
        assets.url("loader.js")


def test_sizes_stay_within_budget(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    seed.offer(client)
    for n in range(19):  # a listing page: 20 placeholders
        seed.offer(client, f"OFF-{n + 100}", title=f"Offre d'apprentissage numéro {n} (H/F)")
    loader = client.get(LOADER, headers={"Accept-Encoding": "identity"}).content
    chunk_url = re.search(r'"http://testserver(/widget/v1/assets/widget\.[0-9a-f]+\.js)"', loader.decode())
    assert chunk_url
    chunk = client.get(chunk_url.group(1)).content
    targets = [f"offer:{seed.OFFER_ID}", *(f"offer:OFF-{n + 100}" for n in range(19))]
    answer = client.get("/api/v1/eligibility", params={"target": targets})
    assert answer.headers["content-encoding"] == "gzip"  # sent compressed, as measured below
    eligibility = answer.content
    page = client.get(
        FORM,
        params={
            "offer_id": seed.OFFER_ID,
            "caller": "mon-site",
            "embed": "w1",
            "origin": "https://partner.example",
        },
    )
    assert page.status_code == 200
    page_assets = [
        client.get(url).content for url in re.findall(r'(?:src|href)="(/widget/v1/assets/[^"]+)"', page.text)
    ]
    assert len(page_assets) >= 2  # form.css and frame.js
    sizes = {
        "loader.js": (len(loader), gzipped_size(loader)),
        "widget.js (once a button is shown)": (len(chunk), gzipped_size(chunk)),
        "eligibility answer, 20 targets": (len(eligibility), gzipped_size(eligibility)),
        "form page + CSS + JS": (
            len(page.content) + sum(map(len, page_assets)),
            gzipped_size(page.content) + sum(map(gzipped_size, page_assets)),
        ),
    }
    with capsys.disabled():
        for name, (raw, packed) in sizes.items():
            print(f"\n  {name}: {raw} bytes raw, {packed} bytes gzipped", end="")
        print()
    assert sizes["loader.js"][1] <= LOADER_MAX_GZIPPED
    # Before a click a host page gets the loader and the eligibility answer.
    assert sizes["loader.js"][1] + sizes["eligibility answer, 20 targets"][1] <= BEFORE_CLICK_MAX_GZIPPED
    assert sizes["form page + CSS + JS"][1] <= FORM_PAGE_MAX_GZIPPED


def test_form_pages_may_be_framed_with_a_strict_policy(client: TestClient) -> None:
    seed.offer(client)
    response = client.get(FORM, params={"offer_id": seed.OFFER_ID, "caller": "mon-site"})
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors *" in policy
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
    ):
        assert directive in policy
    assert "x-frame-options" not in response.headers
    # Error pages of the form routes too: the modal shows them instead of a blocked frame.
    missing = client.get(FORM, params={"offer_id": "NOPE-1", "caller": "mon-site"})
    assert missing.status_code == 404
    assert "frame-ancestors *" in missing.headers["content-security-policy"]


def test_frame_ancestors_setting_limits_who_frames_the_forms(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, FRAME_ANCESTORS="https://a.example, https://b.example")
    with TestClient(create_app(settings)) as client:
        seed.formation(client)
        response = client.get("/widget/v1/rdv", params={"formation_id": seed.FORMATION_ID})
    assert response.status_code == 200
    assert response.headers["content-security-policy"].endswith(
        "frame-ancestors 'self' https://a.example https://b.example"
    )


@pytest.mark.parametrize("path", ["/integration", "/confidentialite", "/nowhere"])
def test_other_pages_refuse_to_be_framed(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


def test_json_is_left_alone_by_the_framing_policy(client: TestClient) -> None:
    response = client.get("/api/v1/eligibility", params={"target": "offer:NOPE"})
    assert "content-security-policy" not in response.headers


def test_integration_page_shows_the_snippet_for_real_targets(client: TestClient) -> None:
    seed.offer(client)
    seed.company(client)
    seed.formation(client)
    response = client.get("/integration")
    assert response.status_code == 200
    assert template_name(response) == "pages/integration.html"
    assert template_context(response)["examples"] == {
        "offer": seed.OFFER_ID,
        "company": seed.SIRET,
        "formation": seed.FORMATION_ID,
    }
    text = response.text
    assert '&lt;script async src="http://testserver/widget/v1/loader.js" data-caller="mon-site"&gt;' in text
    assert f'data-lba-widget="candidature" data-offer-id="{seed.OFFER_ID}"' in text
    for name in (
        "data-label",
        "data-color",
        'data-mode="inline"',
        "lba:ready",
        "lba:open",
        "lba:submitted",
        "lba:close",
        "lba:unavailable",
        "lba:error",
        "LBAWidget.open(element)",
        "LBAWidget.scan()",
    ):
        assert name in text, name
    assert 'href="/api/docs"' in text
    assert 'data-copy="p-snippet"' in text
    assert 'data-copy="p-csp"' in text
    assert re.search(r'<script src="/widget/v1/assets/integration\.[0-9a-f]+\.js" defer>', text)


def test_integration_page_skips_targets_that_cannot_be_contacted(client: TestClient) -> None:
    seed.offer(client, status="closed")
    response = client.get("/integration")
    assert "offer" not in template_context(response)["examples"]
    assert 'data-offer-id="OFFER_ID"' in response.text


def test_example_site_points_at_the_widget(tmp_path: Path) -> None:
    app = host_page.create_host_app("http://localhost:9999")
    with TestClient(app) as client:
        index = client.get("/")
        spa = client.get("/recherche.html")
    assert index.status_code == 200
    assert '<script async src="http://localhost:9999/widget/v1/loader.js"' in index.text
    assert "{{WIDGET_URL}}" not in index.text
    assert "frame-src http://localhost:9999" in index.headers["content-security-policy"]
    assert "script-src 'self' http://localhost:9999" in index.headers["content-security-policy"]
    assert index.text.count("data-lba-widget=") >= 12
    # Every placeholder also carries a link to the hosted page, for when scripts can't run.
    assert index.text.count('class="fallback" href="http://localhost:9999/widget/v1/') == index.text.count(
        "data-lba-widget="
    )
    assert spa.status_code == 200
    assert "loader.js" in spa.text
    # Paths out of the folder: tests/test_path_traversal.py (through a real server).


def test_malformed_targets_are_reported_to_partner_pages(client: TestClient) -> None:
    # The loader, on a partner's origin, must read which placeholder is wrong.
    response = client.get("/api/v1/eligibility", params={"target": ["offer:A-1", "company:12345678901235"]})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert [(r["target"], r["reason"]) for r in response.json()["results"]] == [
        ("offer:A-1", "unknown_target"),
        ("company:12345678901235", "invalid_target"),
    ]
