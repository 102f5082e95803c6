"""The recruiter's and the CFA's pages in Chromium: an rdv answer left empty is
refused on the page (axe on the error state) and the filled-in one goes out;
"L'offre est pourvue" asks, then closes the offer (axe on both states)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Page

from tests.browser.support import FILLED_OFFER, FORMATION, PDF, Servers, axe_violations, get_json, mailbox

pytestmark = pytest.mark.browser


def message_links(servers: Servers, message: dict[str, Any]) -> list[str]:
    return [link["href"] for link in get_json(f"{servers.widget}/dev/api/mailbox/{message['id']}")["links"]]


def test_an_empty_rdv_answer_is_refused_on_the_page(page: Page, servers: Servers) -> None:
    email = f"ines.{int(time.time() * 1000)}@example.org"
    page.goto(f"{servers.widget}/widget/v1/rdv?formation_id={quote(FORMATION)}&caller=answers-test")
    page.fill("#last_name", "Garnier")
    page.fill("#first_name", "Inès")
    page.fill("#email", email)
    page.fill("#phone", "06 44 55 66 77")
    page.get_by_label("l'apprenti(e)").check()
    page.get_by_label("Places disponibles").check()
    page.get_by_role("button", name="Envoyer ma demande").click()
    page.wait_for_selector("[data-lba-submitted]")
    [cfa] = mailbox(page, servers, to="rdv@ateliers-rhone.example", count=1, about="Inès Garnier")
    reply = next(
        u
        for u in message_links(servers, cfa)
        if "/reply/" in u and page.goto(u) and page.locator("input[value=reply]").is_checked()
    )

    # "Envoyer ma réponse" with the default text as it is: its middle is blank.
    page.goto(reply)
    assert "Écrivez votre réponse entre la salutation et la signature" in page.inner_text(".answer-fields")
    page.get_by_role("button", name="Envoyer ma réponse").click()
    summary = page.locator("#error-summary")
    summary.wait_for()
    assert "Votre réponse n'est pas partie" in summary.inner_text()
    assert "le candidat recevrait un message vide" in summary.inner_text()
    field = page.locator("#message_reply")
    assert field.get_attribute("aria-invalid") == "true"
    assert "message_reply-error" in (field.get_attribute("aria-describedby") or "")
    assert "Bonjour Inès" in field.input_value()  # the text is kept
    assert axe_violations(page) == []
    summary.get_by_role("link").click()
    assert page.evaluate("() => location.hash") == "#message_reply"

    # Written in the blank, it goes out: nothing had been answered before.
    field.fill(field.input_value().replace("\n\n\n\n", "\n\nOui, il reste des places en septembre.\n\n"))
    page.get_by_role("button", name="Envoyer ma réponse").click()
    page.wait_for_selector(".success")
    assert "Vous avez répondu au candidat le" in page.inner_text(".success")
    assert axe_violations(page) == []
    received = mailbox(page, servers, to=email, count=2)
    [answer] = [m for m in received if m["subject"].startswith("Réponse de")]
    text = get_json(f"{servers.widget}/dev/api/mailbox/{answer['id']}")["text"]
    assert "Oui, il reste des places en septembre." in text
    assert len(received) == 2  # the acknowledgement and this answer


def test_offer_filled_asks_then_closes(page: Page, servers: Servers, tmp_path: Path) -> None:
    cv = tmp_path / "cv.pdf"
    cv.write_bytes(PDF)
    email = f"jade.{int(time.time() * 1000)}@example.org"
    page.goto(f"{servers.widget}/widget/v1/candidature?offer_id={FILLED_OFFER}&caller=answers-test")
    page.fill("#last_name", "Morel")
    page.fill("#first_name", "Jade")
    page.fill("#email", email)
    page.fill("#phone", "06 11 22 33 55")
    page.set_input_files("#cv", str(cv))
    page.get_by_role("button", name="Envoyer ma candidature").click()
    page.wait_for_selector("[data-lba-submitted]")
    [pro] = mailbox(page, servers, to="gerance@superette-limousin.example", count=1, about="Jade Morel")
    [filled] = [u for u in message_links(servers, pro) if "/filled/" in u]

    page.goto(filled)
    assert page.locator("h1").inner_text() == "Votre offre est pourvue ?"
    assert axe_violations(page) == []
    eligibility = f"{servers.widget}/api/v1/eligibility?target=offer:{FILLED_OFFER}"
    assert get_json(eligibility)["results"][0]["eligible"] is True  # the page changed nothing
    page.get_by_role("button", name="Confirmer : l'offre est pourvue").click()
    page.wait_for_selector(".success")
    assert "C'est fait : l'offre est fermée" in page.inner_text("h1")
    assert axe_violations(page) == []
    assert get_json(eligibility)["results"][0]["reason"] == "closed"
    received = mailbox(page, servers, to=email, count=2)
    assert [m for m in received if "Réponse à votre candidature" in m["subject"]]
