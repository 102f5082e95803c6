"""The operator page in a real browser: axe-core finds nothing, nothing is
fetched from anywhere, nothing breaks the page's content policy."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.browser.support import Servers, axe_violations
from widget_server import operator_page
from widget_server.settings import load_settings

pytestmark = pytest.mark.browser


def test_the_operator_page_is_accessible_and_self_contained(page: Page, servers: Servers) -> None:
    settings = load_settings(
        {"SECRET_KEY": "browser-tests", "PUBLIC_URL": servers.widget, "VAR_DIR": str(servers.var_dir)},
        env_file=None,
    )
    requests: list[str] = []
    console: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: console.append(message.text))
    response = page.goto(operator_page.signed_link(settings, 1))
    assert response is not None and response.status == 200
    assert page.locator("h1").inner_text() == "Tableau de bord"
    assert page.locator("svg[role=img]").count() == 4
    assert axe_violations(page) == []
    assert requests == [page.url]  # the page alone: no style, font, image or script fetched
    assert not [text for text in console if "Content Security Policy" in text]
    assert page.errors == []  # type: ignore[attr-defined]
