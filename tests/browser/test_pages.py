"""The pages everyone sees, in Chromium, each state checked by axe (issue #13,
items 10–14): /integration and its playground, the privacy notice, a reply page
reached from an email with its identity header, an error page, a standalone
success with its way back."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.browser.support import (
    FORMATION,
    UNKNOWN_OFFER,
    Servers,
    axe_violations,
    get_json,
    mailbox,
    wait_events,
)

pytestmark = pytest.mark.browser


def verdict(page: Page, containing: str) -> str:
    """The playground's answer about the previewed target, once it says `containing`."""
    page.wait_for_function(
        "(text) => document.getElementById('p-verdict').textContent.includes(text)", arg=containing
    )
    return page.locator("#p-verdict").inner_text()


def test_integration_code_blocks_are_reached_with_the_keyboard(page: Page, servers: Servers) -> None:
    page.goto(servers.widget + "/integration")
    wait_events(page, "ready")
    assert axe_violations(page) == []
    blocks = page.locator("pre")
    assert blocks.count() >= 6
    names = set()
    for n in range(blocks.count()):
        block = blocks.nth(n)
        block.focus()
        assert block.evaluate("(el) => el === document.activeElement && el.matches(':focus-visible')")
        # The focus is seen: an outline is drawn.
        assert block.evaluate("(el) => getComputedStyle(el).outlineStyle") != "none"
        names.add(block.get_attribute("aria-label") or block.get_attribute("aria-labelledby"))
    assert len(names) == blocks.count()  # each one named for itself
    # Reached by Tab from what comes before it, like any other stop.
    page.locator("#snippet + p").evaluate("(el) => el.setAttribute('tabindex', '-1')")
    page.locator("#snippet + p").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.tagName") == "PRE"


def test_playground_says_why_there_is_no_button(page: Page, servers: Servers) -> None:
    page.goto(servers.widget + "/integration")
    wait_events(page, "ready")
    assert verdict(page, "Éligible").startswith("Éligible : le bouton s'affiche pour « ")

    # An unknown id: no button, and the reason next to the preview.
    page.get_by_label("Identifiant").fill(UNKNOWN_OFFER)
    wait_events(page, "unavailable")
    assert verdict(page, "Pas de bouton") == (
        "Pas de bouton : identifiant inconnu de l'annuaire (unknown_target). "
        "L'emplacement reste vide sur votre page."
    )
    assert page.locator("#p-stage button").count() == 0
    assert axe_violations(page) == []

    # A malformed SIRET: an integration error, said as such.
    page.get_by_label("Service et cible").select_option("company")
    page.get_by_label("Identifiant").fill("12345678901235")
    wait_events(page, "error")
    assert verdict(page, "mal formé") == "Pas de bouton : cet identifiant est mal formé (invalid_target)."


def test_playground_offers_the_directory_targets(page: Page, servers: Servers) -> None:
    page.goto(servers.widget + "/integration")
    wait_events(page, "ready")
    choice = page.get_by_label("Une cible de l'annuaire")
    labels = choice.locator("option").all_inner_texts()
    assert any(label.endswith(f"– {FORMATION}") for label in labels)
    closed = choice.locator("option", has_text="(pas de bouton : offre fermée ou expirée)")
    assert closed.count() == 1  # one per reason
    closed_value = closed.get_attribute("value") or ""
    assert closed_value.startswith("offer:LBA-")

    # A formation of the list: kind and id follow, the rdv button shows.
    choice.select_option(f"formation:{FORMATION}")
    assert page.get_by_label("Service et cible").input_value() == "formation"
    assert page.get_by_label("Identifiant").input_value() == FORMATION
    page.wait_for_function(
        "() => (document.querySelector('#p-stage [data-lba-widget]').shadowRoot || {}).textContent"
        ' === "Contacter l\'établissement"'
    )
    assert 'data-lba-widget="rdv"' in page.locator("#p-snippet").inner_text()

    # A closed offer of the list: its reason.
    choice.select_option(closed_value)
    assert "offre fermée ou expirée (closed)" in verdict(page, "closed")
    assert axe_violations(page) == []


def test_playground_caller_goes_into_the_snippet(page: Page, servers: Servers) -> None:
    page.goto(servers.widget + "/integration")
    wait_events(page, "ready")
    caller = page.get_by_label("Le nom de votre site (data-caller)")
    caller.fill("ma-boutique.fr")
    page.wait_for_function(
        "() => document.getElementById('p-snippet').textContent.includes('ma-boutique.fr')"
    )
    assert 'data-caller="ma-boutique.fr"' in page.locator("#p-snippet").inner_text()
    assert caller.get_attribute("aria-invalid") is None

    caller.fill("mon site!")
    page.wait_for_function("() => !document.getElementById('p-caller-error').hidden")
    assert caller.get_attribute("aria-invalid") == "true"
    assert "p-caller-error" in (caller.get_attribute("aria-describedby") or "")
    assert axe_violations(page) == []


def test_playground_copies_the_csp_line(page: Page, servers: Servers) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=servers.widget)
    page.goto(servers.widget + "/integration")
    line = page.locator("#p-csp").inner_text()
    assert line == f"script-src {servers.widget}; connect-src {servers.widget}; frame-src {servers.widget}"
    page.get_by_role("button", name="Copier les directives").click()
    page.wait_for_function("() => navigator.clipboard.readText().then((t) => t.startsWith('script-src'))")
    assert page.evaluate("() => navigator.clipboard.readText()") == line


def test_privacy_page_and_error_page(page: Page, servers: Servers) -> None:
    page.goto(servers.widget + "/confidentialite")
    assert page.title() == "Vos données personnelles – La bonne alternance (démo)"
    assert page.locator("header.site-header").inner_text().startswith("La bonne alternance (démo)")
    assert page.locator("a[href='https://www.cnil.fr/fr/plaintes']").count() == 1
    assert axe_violations(page) == []

    response = page.goto(servers.widget + "/reply/not-a-token")
    assert response is not None and response.status == 404
    assert page.title() == "Erreur – Page introuvable – La bonne alternance (démo)"
    assert page.locator("header.site-header").inner_text().startswith("La bonne alternance (démo)")
    assert axe_violations(page) == []

    # The favicon is the service's own, and loads.
    href = page.locator("link[rel=icon]").get_attribute("href")
    assert href and href.startswith("/widget/v1/assets/favicon.")
    icon = page.request.get(servers.widget + href)
    assert icon.ok and icon.headers["content-type"] == "image/svg+xml"


def create_key(servers: Servers, caller: str, *, test: bool) -> str:
    """A partner key of the browser tests' server, made by the operator's command."""
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ")},
        "DATABASE_URL": f"sqlite+aiosqlite:///{servers.var_dir.parent}/widget.db",
        "VAR_DIR": str(servers.var_dir),
        "PUBLIC_URL": servers.widget,
    }
    command = [
        sys.executable,
        "-m",
        "widget_server.cli",
        "keys",
        "create",
        caller,
        *(["--test"] if test else []),
    ]
    printed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=True).stdout
    found = re.search(r"^(lba_\S+)$", printed, re.M)
    assert found, printed
    return found.group(1)


def test_playground_sends_a_test_request_with_a_test_key_only(page: Page, servers: Servers) -> None:
    page.goto(servers.widget + "/integration")
    wait_events(page, "ready")
    key = page.get_by_label("Votre clé de test")
    send = page.get_by_role("button", name="Envoyer la demande de test")
    error = page.locator("#p-key-error")

    # Not a test key: refused in the page, nothing sent.
    key.fill("lba_0123abcd_not-a-test-key")
    send.click()
    assert error.inner_text() == "Indiquez une clé de test : elle commence par lba_test_."
    assert key.get_attribute("aria-invalid") == "true"
    assert axe_violations(page) == []
    # A live key renamed to look like a test key: the service says no before anything is sent.
    live = create_key(servers, "playground-live", test=False)
    key.fill(live.replace("lba_", "lba_test_", 1))
    send.click()
    page.wait_for_function("() => document.getElementById('p-key-error').textContent.includes('reconnue')")

    # A test key: the fictional candidate's application to the previewed offer, and its emails.
    key.fill(create_key(servers, "playground", test=True))
    send.click()
    page.wait_for_function(
        "() => /e-mails dans la boîte de test/.test(document.getElementById('p-try-status').textContent)",
        timeout=30_000,
    )
    assert error.is_hidden()
    mails = page.locator("#p-try-mails > li")
    assert mails.count() == 2
    texts = mails.all_inner_texts()
    assert any("recruteur@boite-de-test.invalid" in text for text in texts)
    assert any("lea.essai@example.org" in text for text in texts)
    replies = page.locator("#p-try-mails a[href*='/reply/']")
    assert replies.count() >= 2
    assert all(text.endswith("(nouvelle fenêtre)") for text in replies.all_inner_texts())
    assert axe_violations(page) == []
    # Nothing left for a real mailbox: the dev mailbox never saw the test request.
    assert not [
        m for m in get_json(servers.widget + "/dev/api/mailbox")["messages"] if "Essai" in m["subject"]
    ]


def pro_links(servers: Servers, name: str) -> list[str]:
    """The service's links in the email the CFA received about `name`'s request."""
    [pro] = [
        m
        for m in get_json(servers.widget + "/dev/api/mailbox")["messages"]
        if name in m["subject"] and "rdv@" in m["to"]
    ]
    message: dict[str, Any] = get_json(f"{servers.widget}/dev/api/mailbox/{pro['id']}")
    return [link["href"] for link in message["links"] if link["href"].startswith(servers.widget)]


def test_standalone_success_then_the_reply_page_from_the_email(page: Page, servers: Servers) -> None:
    """A plain link from a partner page (no widget): the rdv sent, the CFA's phone
    as a link and the way back; then the CFA's reply page, with who runs it."""
    stamp = int(time.time() * 1000)
    email = f"pages.{stamp}@example.org"
    page.goto(servers.site + "/")  # the partner page the candidate comes from
    page.goto(
        f"{servers.widget}/widget/v1/rdv?formation_id={FORMATION.replace('#', '%23')}&caller=pages-test",
        referer=servers.site + "/formations",
    )
    assert page.locator("header.site-header").inner_text().startswith("La bonne alternance (démo)")
    page.fill("#last_name", f"Pages{stamp % 100000}")
    page.fill("#first_name", "Inès")
    page.fill("#email", email)
    page.fill("#phone", "06 11 22 33 44")
    page.check("input[name=role][value=student]")
    page.check("#topic-places")
    page.click("button[type=submit]")
    page.wait_for_selector("[data-lba-submitted]")
    phone = page.locator("a[href^='tel:']")
    assert phone.get_attribute("href") == "tel:+33465712334" and phone.inner_text() == "04 65 71 23 34"
    back = page.get_by_role("link", name="Retour au site")
    assert back.get_attribute("href") == servers.site + "/formations"
    assert axe_violations(page) == []

    mailbox(page, servers, to=email, count=1)
    urls = pro_links(servers, f"Pages{stamp % 100000}")
    reply = next(u for u in urls if "/reply/" in u)
    page.goto(reply)
    header = page.locator("header.site-header")
    assert header.inner_text().startswith("La bonne alternance (démo)")
    assert f"Pages{stamp % 100000}" in header.inner_text()
    assert axe_violations(page) == []
    page.set_viewport_size({"width": 375, "height": 740})
    assert axe_violations(page) == []
    # One line of identity on a phone: the header does not crowd the page.
    assert header.bounding_box()["height"] < 80  # type: ignore[index]
