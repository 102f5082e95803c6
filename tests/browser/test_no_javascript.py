"""The hosted form pages as plain links, in a browser with JavaScript turned off."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.browser.support import FORMATION, PDF, SIRET, Servers, mailbox

pytestmark = pytest.mark.browser


@pytest.fixture
def no_js_page(browser: Any) -> Any:
    context = browser.new_context(java_script_enabled=False, locale="fr-FR")
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def test_spontaneous_application_without_javascript(
    no_js_page: Any, servers: Servers, tmp_path: Path
) -> None:
    page = no_js_page
    cv = tmp_path / "cv.docx.pdf"
    cv.write_bytes(PDF)
    email = f"nojs.{int(time.time() * 1000)}@example.org"
    page.goto(f"{servers.widget}/widget/v1/candidature?siret={SIRET}&caller=sans-js")
    assert "Candidature spontanée" in page.content()
    page.fill("#last_name", "Sansjs")
    page.fill("#first_name", "Inès")
    page.fill("#email", "pas-un-email")
    page.fill("#phone", "06 55 44 33 22")
    page.set_input_files("#cv", str(cv))
    page.click("button[type=submit]")
    # The server's errors, inline and in the summary, and the typed values kept.
    page.wait_for_selector(".error-summary")
    assert page.locator("#email-error").is_visible()
    assert page.input_value("#last_name") == "Sansjs"
    # Browsers never keep a file after a page load: the server kept it.
    assert "CV reçu : cv.docx.pdf ✓" in page.locator("#cv-status").inner_text()
    assert page.locator("#cv").is_visible()  # the browser's own control, to change it
    page.fill("#email", email)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-lba-submitted]")
    assert "Votre candidature a bien été envoyée" in page.content()
    assert len(mailbox(page, servers, to=email, count=1)) == 1
    assert page.context.cookies() == []


def test_rdv_without_javascript(no_js_page: Any, servers: Servers) -> None:
    page = no_js_page
    email = f"rdv.nojs.{int(time.time() * 1000)}@example.org"
    page.goto(f"{servers.widget}/widget/v1/rdv?formation_id={quote(FORMATION)}&caller=sans-js")
    page.fill("#last_name", "Sansjs")
    page.fill("#first_name", "Noé")
    page.fill("#email", email)
    page.fill("#phone", "06 55 44 33 21")
    page.check("input[name=role][value=parent]")
    page.check("#topic-autre")
    page.click("button[type=submit]")
    page.wait_for_selector("#message-error")  # "Autre" needs a message, even without script
    assert page.is_checked("#topic-autre") and page.is_checked("input[value=parent]")
    page.fill("#message", "Y a-t-il un internat ?")
    page.click("button[type=submit]")
    page.wait_for_selector("[data-lba-submitted]")
    assert "Votre demande a bien été envoyée" in page.content()
    assert len(mailbox(page, servers, to=email, count=1)) == 1
