"""The candidate's form in the widget's modal, in headless Chromium (issue #13):
the CV kept across errors, email and phone checked as the person leaves them,
the error summary in full view below the modal's bar, rdv error links that move
the focus, "too fast" that keeps everything, a French file picker, and the
modal's bar (who runs the service, the page's title, one "Fermer"). axe-core
on every state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Frame, Page

from tests.browser.support import (
    EVENTS_SCRIPT,
    FORMATION,
    OFFER,
    PDF,
    SIRET,
    Servers,
    axe_violations,
    focused_id,
    focused_in_slot,
    form_frame,
    free_port,
    get_json,
    mailbox,
    slot,
    start_widget_server,
    stop_widget_server,
    wait_events,
    wait_for,
)

pytestmark = pytest.mark.browser

OPERATOR = "La bonne alternance (démo)"  # OPERATOR_NAME's default
# An offer of the example site no other browser test writes to (they count
# the messages in the shared mailbox).
SALON = "LBA-2026-01021"  # Salon Coiff'Émilie, Bordeaux
SALON_CONTACT = "emilie@coiff-emilie.example"


def open_modal(page: Page, servers: Servers, ref: str) -> Frame:
    page.goto(servers.site + "/")
    wait_events(page, "ready", 10)
    page.locator(f"{slot(ref)} button").click()
    frame = form_frame(page)
    frame.wait_for_function("() => document.activeElement && document.activeElement.id === 'last_name'")
    return frame


def after_submit(page: Page, ref: str, focused: str) -> Frame:
    """The form's frame once the next page loaded and `focused` has the focus."""
    frame = form_frame(page, slot(ref))
    frame.wait_for_function(f"() => document.activeElement && document.activeElement.id === '{focused}'")
    return frame


def clean(page: Page, frame: Frame) -> None:
    assert axe_violations(frame) == []
    assert axe_violations(page) == []


def test_the_cv_is_kept_across_errors_and_fields_are_checked_on_leaving(
    page: Page, servers: Servers, tmp_path: Path
) -> None:
    cv = tmp_path / "cv-lea.pdf"
    cv.write_bytes(PDF)
    email = f"nour.{int(time.time() * 1000)}@example.org"
    frame = open_modal(page, servers, SALON)
    # A French picker, whatever the browser's language: the native input is
    # visually hidden, still labelled and focusable.
    assert frame.locator("label.file-button").inner_text() == "Choisir mon CV"
    assert frame.locator("#cv-status").inner_text() == "Aucun fichier choisi"
    assert frame.get_by_label("Votre CV").evaluate("el => el.id") == "cv"
    box = frame.locator("#cv").bounding_box()
    assert box is not None and box["width"] <= 1 and box["height"] <= 1

    frame.fill("#last_name", "Kept-Test")
    frame.fill("#first_name", "Nour")
    # Checked by the server's rules as the person leaves the field.
    frame.fill("#email", "lea@mailinator.com")
    frame.press("#email", "Tab")
    frame.wait_for_selector("#email-error")
    assert "jetables" in frame.locator("#email-error").inner_text()
    assert frame.get_attribute("#email", "aria-invalid") == "true"
    assert frame.get_attribute("#email", "aria-describedby") == "email-hint email-error"
    clean(page, frame)
    frame.fill("#email", email)
    frame.press("#email", "Tab")
    frame.wait_for_selector("#email-error", state="detached")
    assert frame.get_attribute("#email", "aria-invalid") is None
    frame.fill("#phone", "08 99 12 34 56")  # premium rate: refused
    frame.press("#phone", "Tab")
    frame.wait_for_selector("#phone-error")
    assert "surtaxés" in frame.locator("#phone-error").inner_text()
    # The visually hidden input is in the tab order, its button shows the focus.
    assert focused_id(frame) == "cv"
    assert frame.locator("label.file-button").evaluate("el => getComputedStyle(el).outlineStyle") == "solid"

    frame.set_input_files("#cv", str(cv))
    assert frame.locator("#cv-status").inner_text() == "Fichier choisi : cv-lea.pdf"
    assert frame.locator("label.file-button").inner_text() == "Changer de fichier"
    clean(page, frame)
    frame.get_by_role("button", name="Envoyer ma candidature").click()

    # The phone is wrong: the CV stays, on the server, under the new form token.
    frame = after_submit(page, SALON, "error-summary")
    assert frame.locator("#cv-status").inner_text() == "CV reçu : cv-lea.pdf ✓"
    assert frame.locator("label.file-button").inner_text() == "Changer de fichier"
    assert "sécurité" not in frame.locator("form").inner_text()
    assert frame.input_value("#email") == email
    clean(page, frame)
    frame.fill("#phone", "06 12 34 56 78")
    frame.get_by_role("button", name="Envoyer ma candidature").click()

    submitted = wait_events(page, "submitted")
    recruiter = mailbox(page, servers, to=SALON_CONTACT, count=1, about="Kept-Test")
    assert recruiter, "no email to the recruiter"
    message = get_json(f"{servers.widget}/dev/api/mailbox/{recruiter[-1]['id']}")
    assert [(a["content_type"], a["size"]) for a in message["attachments"]] == [("application/pdf", len(PDF))]
    assert submitted[0]["detail"]["id"]
    assert page.context.cookies() == []


def test_the_error_summary_is_in_full_view_below_the_bar(page: Page, servers: Servers) -> None:
    page.set_viewport_size({"width": 1280, "height": 800})
    frame = open_modal(page, servers, SIRET)
    frame.fill("#email", "pas-une-adresse")
    # Sent from the bottom of the form: the modal is scrolled down.
    frame.get_by_role("button", name="Envoyer ma candidature").click()
    frame = after_submit(page, SIRET, "error-summary")
    # Measured once the host sized the frame to its new page.
    height = frame.evaluate("() => Math.ceil(document.documentElement.getBoundingClientRect().height)")
    page.wait_for_function(
        "([el, h]) => Math.abs(el.getBoundingClientRect().height - h) < 2",
        arg=[page.locator(f"{slot(SIRET)} iframe").element_handle(), height],
    )
    bar = page.locator(f"{slot(SIRET)} dialog .h").bounding_box()
    dialog = page.locator(f"{slot(SIRET)} dialog").bounding_box()
    heading = frame.locator("#error-summary h2").bounding_box()
    assert bar is not None and dialog is not None and heading is not None
    assert heading["y"] >= bar["y"] + bar["height"], (heading, bar)
    assert heading["y"] + heading["height"] <= dialog["y"] + dialog["height"]
    assert frame.locator("#error-summary h2").inner_text() == "Il reste 5 points à corriger"
    clean(page, frame)


def test_rdv_error_links_move_the_focus_to_the_first_option(page: Page, servers: Servers) -> None:
    frame = open_modal(page, servers, FORMATION)
    frame.get_by_role("button", name="Envoyer ma demande").click()
    frame = after_submit(page, FORMATION, "error-summary")
    clean(page, frame)
    frame.get_by_role("link", name="Indiquez si vous êtes l'apprenti(e) ou un parent.").click()
    assert focused_id(frame) == "role-student"
    frame.get_by_role("link", name="Choisissez au moins un sujet.").click()
    assert focused_id(frame) == "topic-modalites"
    clean(page, frame)


def test_the_modal_has_one_close_button_and_says_who_and_what(
    page: Page, servers: Servers, tmp_path: Path
) -> None:
    cv = tmp_path / "cv.pdf"
    cv.write_bytes(PDF)
    frame = open_modal(page, servers, SALON)
    dialog = page.locator(f"{slot(SALON)} dialog")
    bar = dialog.locator(".h")
    page.wait_for_function(
        "el => el.textContent.includes('La bonne')", arg=bar.locator(".o").element_handle()
    )
    assert bar.locator(".o").inner_text() == OPERATOR
    assert bar.locator(".p").inner_text().startswith("Je candidate – ")
    closes = (
        dialog.get_by_role("button", name="Fermer").count()
        + frame.get_by_role("button", name="Fermer").count()
    )
    assert closes == 1
    clean(page, frame)

    frame.fill("#last_name", "Petit")
    frame.fill("#first_name", "Lou")
    frame.fill("#email", f"lou.{int(time.time() * 1000)}@example.org")
    frame.fill("#phone", "06 12 34 56 70")
    frame.set_input_files("#cv", str(cv))
    frame.get_by_role("button", name="Envoyer ma candidature").click()
    wait_events(page, "submitted")
    frame = after_submit(page, SALON, "sent")
    page.wait_for_function(
        "el => el.textContent.startsWith('Votre candidature')", arg=bar.locator(".p").element_handle()
    )
    assert dialog.get_by_role("button", name="Fermer").count() == 1
    assert frame.get_by_role("button", name="Fermer").count() == 0
    clean(page, frame)
    # From the acknowledgement, back to the bar's "Fermer", which closes the modal.
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("() => document.activeElement.shadowRoot.activeElement.textContent") == "Fermer"
    page.keyboard.press("Enter")
    wait_events(page, "close")
    assert focused_in_slot(page) == f"{SALON} BUTTON"


@pytest.fixture
def patient_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A service that refuses forms sent within 60 s of being shown."""
    tmp = tmp_path_factory.mktemp("patient")
    port = free_port()
    process = start_widget_server(tmp, port, FORM_MIN_FILL_SECONDS="60")
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", process)
        yield f"http://localhost:{port}"
    finally:
        stop_widget_server(process)


def test_too_fast_asks_to_wait_and_keeps_everything(
    browser: Browser, patient_servers: str, tmp_path: Path
) -> None:
    cv = tmp_path / "cv-autofill.pdf"
    cv.write_bytes(PDF)
    context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="fr-FR")
    context.add_init_script(EVENTS_SCRIPT)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        page.goto(f"{patient_servers}/widget/v1/candidature?offer_id={OFFER}&caller=autofill")
        page.fill("#last_name", "Rapide")
        page.fill("#first_name", "Sam")
        page.fill("#email", "sam.rapide@example.org")
        page.fill("#phone", "06 12 34 56 79")
        page.set_input_files("#cv", str(cv))
        page.fill("#message", "Rempli par mon navigateur.")
        page.get_by_role("button", name="Envoyer ma candidature").click()
        page.wait_for_function(
            "() => document.activeElement && document.activeElement.id === 'error-summary'"
        )
        summary = page.locator("#error-summary").inner_text()
        assert "Votre demande n'est pas partie" in summary
        assert "attendez quelques secondes, puis renvoyez-le" in summary
        assert page.input_value("#last_name") == "Rapide" and page.input_value("#phone") == "06 12 34 56 79"
        assert page.input_value("#message") == "Rempli par mon navigateur."
        assert page.locator("#cv-status").inner_text() == "CV reçu : cv-autofill.pdf ✓"
        assert axe_violations(page) == []
    finally:
        context.close()
