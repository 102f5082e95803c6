"""The candidate's follow-up page in headless Chromium: apply in the widget, open
the link of the acknowledgement, see the request delivered, then answered; and,
on a service whose emails wait, withdraw a request before it leaves: its
recruiter never gets it. axe-core on every state of the page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import FilePayload, Page

from tests.browser.support import (
    PDF,
    QuietServer,
    Servers,
    axe_violations,
    form_frame,
    get_json,
    mailbox,
    slot,
    wait_events,
)

pytestmark = pytest.mark.browser

SALON_OFFER = "LBA-2026-01021"  # Salon Coiff'Émilie, Bordeaux: no other browser test writes to it
SALON = "emilie@coiff-emilie.example"
FERRAND_OFFER = "LBA-2026-01007"
FERRAND = "recrutement@boulangerie-ferrand.example"


def _cv(name: str) -> FilePayload:
    return FilePayload(name=name, mimeType="application/pdf", buffer=PDF)


def _link(servers: Servers, message: dict[str, str], path: str) -> str:
    text = get_json(f"{servers.widget}/dev/api/mailbox/{message['id']}")["text"]
    match = re.search(rf"{re.escape(servers.widget)}/{path}/\S+", text)
    assert match, f"no /{path}/ link in {message['subject']!r}"
    return match.group(0)


def _until_shown(page: Page, text: str) -> None:
    """Reload the page until it shows `text` (the worker sends in the background)."""
    for _ in range(50):
        if text in page.locator("main").inner_text():
            return
        page.wait_for_timeout(200)
        page.reload()
    raise AssertionError(f"the page never showed {text!r}")


def test_the_candidate_follows_the_request_until_the_answer(page: Page, servers: Servers) -> None:
    page.goto(servers.site + "/")
    wait_events(page, "ready", 10)
    page.locator(f"{slot(SALON_OFFER)} button").click()
    frame = form_frame(page, slot(SALON_OFFER))
    frame.wait_for_function("() => document.activeElement.id === 'last_name'")
    frame.fill("#last_name", "Da Silva")
    frame.fill("#first_name", "Inès")
    frame.fill("#email", "ines.dasilva@example.org")
    frame.fill("#phone", "06 11 22 33 44")
    frame.set_input_files("#cv", files=_cv("cv-ines.pdf"))
    frame.get_by_role("button", name="Envoyer ma candidature").click()
    wait_events(page, "submitted")
    frame = form_frame(page, slot(SALON_OFFER))
    # The success screen links to the follow-up page, in a new tab.
    assert frame.get_by_role("link", name="Suivre ma candidature").get_attribute("target") == "_blank"

    [ack] = mailbox(page, servers, to="ines.dasilva@example.org", count=1)
    followup = page.context.new_page()
    followup.goto(_link(servers, ack, "suivi"))
    _until_shown(followup, "Remise à Salon Coiff'Émilie")
    assert "Où en est votre candidature" in followup.locator("h1").inner_text()
    assert "ouvert" not in followup.locator("main").inner_text()  # no "opened" status, ever
    assert axe_violations(followup) == []

    # The recruiter answers from their email.
    [pro] = mailbox(page, servers, to=SALON, count=1, about="Inès Da Silva")
    recruiter = page.context.new_page()
    recruiter.goto(_link(servers, pro, "reply"))
    recruiter.get_by_label("Répondre au candidat").check()
    recruiter.fill("#message_accept", "Bonjour Inès, passez au salon mardi à 10 h !")
    recruiter.get_by_role("button", name="Envoyer ma réponse").click()
    recruiter.wait_for_selector("text=Votre réponse a été envoyée")

    followup.reload()
    main = followup.locator("main").inner_text()
    assert "Réponse de Salon Coiff'Émilie" in main
    assert "passez au salon mardi à 10 h" in main
    assert "Retirer ma candidature" not in main
    assert axe_violations(followup) == []
    assert page.context.cookies() == []


def test_withdrawn_before_delivery_nothing_reaches_the_recruiter(
    page: Page, quiet_server: QuietServer
) -> None:
    servers = quiet_server.servers
    page.goto(f"{servers.widget}/widget/v1/candidature?offer_id={FERRAND_OFFER}&caller=browser-tests")
    page.fill("#last_name", "Roux")
    page.fill("#first_name", "Malo")
    page.fill("#email", "malo.roux@example.org")
    page.fill("#phone", "07 98 76 54 31")
    page.set_input_files("#cv", files=_cv("cv-malo.pdf"))
    page.get_by_role("button", name="Envoyer ma candidature").click()
    with page.expect_popup() as popup:
        page.get_by_role("link", name="Suivre ma candidature").click()
    followup = popup.value
    followup.wait_for_load_state()
    main = followup.locator("main").inner_text()
    assert "En cours d'envoi" in main
    assert axe_violations(followup) == []

    followup.get_by_role("link", name="Retirer ma candidature").click()
    followup.wait_for_selector('h1:has-text("Retirer votre candidature")')
    assert "Boulangerie Ferrand ne la recevra pas" in followup.locator("main").inner_text()
    assert axe_violations(followup) == []
    followup.get_by_role("button", name="Oui, retirer ma candidature").click()
    followup.wait_for_selector("text=C'est fait : votre candidature est retirée.")
    main = followup.locator("main").inner_text()
    assert "Candidature retirée" in main and "Retirer ma candidature" not in main
    assert axe_violations(followup) == []

    # Now the emails may leave: another candidate's request goes, Malo's does not.
    page.goto(f"{servers.widget}/widget/v1/candidature?offer_id={FERRAND_OFFER}&caller=browser-tests")
    page.fill("#last_name", "Henry")
    page.fill("#first_name", "Zoé")
    page.fill("#email", "zoe.henry@example.org")
    page.fill("#phone", "06 45 67 89 01")
    page.set_input_files("#cv", files=_cv("cv-zoe.pdf"))
    page.get_by_role("button", name="Envoyer ma candidature").click()
    page.wait_for_selector("text=Suivre ma candidature")
    with quiet_server.worker():
        sent = mailbox(page, servers, to="zoe.henry@example.org", count=1)
        assert len(sent) == 1, "the worker sent nothing"
        recruiter = mailbox(page, servers, to=FERRAND, count=1)
    assert [m["subject"] for m in recruiter if "Zoé Henry" in m["subject"]]
    assert not [m for m in recruiter if "Malo" in m["subject"]]
    assert mailbox(page, servers, to="malo.roux@example.org", count=0) == []
