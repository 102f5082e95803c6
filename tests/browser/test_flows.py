"""Whole requests through the widget, in headless Chromium: a candidature
with a CV, keyboard only, from the partner's button to the acknowledgement and
the emails; an rdv request; the form's errors; axe-core on all of them."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.browser.support import (
    FORMATION,
    OFFER,
    PDF,
    SIRET,
    Servers,
    axe_violations,
    focused_id,
    focused_in_slot,
    form_frame,
    get_json,
    mailbox,
    slot,
    wait_events,
)

pytestmark = pytest.mark.browser


def test_candidature_with_a_cv_keyboard_only(page: Page, servers: Servers, tmp_path: Path) -> None:
    cv = tmp_path / "cv-lea.pdf"
    cv.write_bytes(PDF)
    page.goto(servers.site + "/")
    wait_events(page, "ready", 10)
    page.locator(f"{slot(OFFER)} button").focus()  # as if reached with Tab
    page.keyboard.press("Enter")
    frame = form_frame(page)
    frame.wait_for_function("() => document.activeElement.id === 'last_name'")
    assert axe_violations(page) == []
    assert axe_violations(frame) == []

    page.keyboard.type("Moreau")
    page.keyboard.press("Tab")
    page.keyboard.type("Léa")
    page.keyboard.press("Tab")
    page.keyboard.type("lea.moreau@example.org")
    page.keyboard.press("Tab")
    page.keyboard.type("06 12 34 56 78")
    page.keyboard.press("Tab")
    assert focused_id(frame) == "cv"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(cv)
    page.keyboard.press("Tab")
    assert focused_id(frame) == "message"
    page.keyboard.type("Bonjour, je suis motivée pour apprendre le métier.")
    page.keyboard.press("Tab")
    assert frame.evaluate("() => document.activeElement.type") == "submit"
    page.keyboard.press("Enter")

    submitted = wait_events(page, "submitted")
    assert submitted[0]["ref"] == OFFER
    request_id = submitted[0]["detail"]["id"]
    frame = form_frame(page)
    assert frame.evaluate("() => document.body.dataset.lbaSubmitted") == request_id
    frame.wait_for_function("() => document.activeElement.id === 'sent'")
    assert "Votre candidature a bien été envoyée" in frame.locator("h1").inner_text()
    assert axe_violations(frame) == []
    assert page.locator("#notice").inner_text().endswith(f"(référence {request_id}).")

    # The modal's one "Fermer", in its bar just before the acknowledgement,
    # closes it, back to the button.
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("() => document.activeElement.shadowRoot.activeElement.textContent") == "Fermer"
    page.keyboard.press("Enter")
    wait_events(page, "close")
    assert focused_in_slot(page) == f"{OFFER} BUTTON"

    recruiter = mailbox(page, servers, to="recrutement@boulangerie-ferrand.example", count=1)
    candidate = mailbox(page, servers, to="lea.moreau@example.org", count=1)
    assert len(recruiter) == 1 and len(candidate) == 1
    message = get_json(f"{servers.widget}/dev/api/mailbox/{recruiter[0]['id']}")
    assert "Moreau" in message["text"]
    assert [(a["content_type"], a["size"]) for a in message["attachments"]] == [("application/pdf", len(PDF))]
    assert page.context.cookies() == []


def test_rdv_request_through_the_modal(page: Page, servers: Servers) -> None:
    page.goto(servers.site + "/")
    wait_events(page, "ready", 10)
    page.locator(f"{slot(FORMATION)} button").click()
    frame = form_frame(page)
    frame.wait_for_function("() => document.activeElement.id === 'last_name'")
    frame.fill("#last_name", "Petit")
    frame.fill("#first_name", "Yanis")
    frame.fill("#email", "yanis.petit@example.org")
    frame.fill("#phone", "07 98 76 54 32")
    frame.get_by_label("un parent", exact=False).check()
    frame.get_by_label("Places disponibles").check()
    frame.fill("#message", "Reste-t-il des places pour la rentrée ?")
    frame.get_by_role("button", name="Envoyer ma demande").click()
    submitted = wait_events(page, "submitted")
    assert submitted[0]["ref"] == FORMATION
    page.locator(f"{slot(FORMATION)} dialog").get_by_role("button", name="Fermer").click()
    wait_events(page, "close")
    cfa = mailbox(page, servers, to="rdv@ateliers-rhone.example", count=1, about="Yanis Petit")
    assert len(cfa) == 1


def test_form_errors_inside_the_modal(page: Page, servers: Servers) -> None:
    page.goto(servers.site + "/")
    wait_events(page, "ready", 10)
    page.locator(f"{slot(SIRET)} button").click()
    frame = form_frame(page)
    frame.wait_for_function("() => document.activeElement.id === 'last_name'")
    iframe = page.locator(f"{slot(SIRET)} iframe")
    before = iframe.bounding_box()
    frame.fill("#email", "pas-une-adresse")
    frame.get_by_role("button", name="Envoyer ma candidature").click()
    frame.wait_for_selector("#error-summary")
    frame = form_frame(page)
    frame.wait_for_function("() => document.activeElement.id === 'error-summary'")
    # The frame grew with the errors: still no inner scrollbar.
    page.wait_for_function(
        "([el, h]) => el.getBoundingClientRect().height > h",
        arg=[iframe.element_handle(), before["height"] if before else 0],
    )
    assert frame.evaluate("() => document.documentElement.scrollHeight <= innerHeight + 1")
    assert frame.locator("#email").input_value() == "pas-une-adresse"
    assert axe_violations(frame) == []
    assert axe_violations(page) == []
