"""A mail security scanner opening every link of a pro email in a headless browser
answers nothing, opts nobody out and sends nothing; the recruiter's own click and
POST then sends exactly one email to the candidate."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import OTHER_OFFER, Servers, get_json
from tests.browser.test_flows import PDF, mailbox

pytestmark = pytest.mark.browser


def apply_without_javascript(page: Page, servers: Servers, email: str, cv: Path) -> None:
    page.goto(f"{servers.widget}/widget/v1/candidature?offer_id={OTHER_OFFER}&caller=scanner-test")
    page.fill("#last_name", "Scanner")
    page.fill("#first_name", "Sam")
    page.fill("#email", email)
    page.fill("#phone", "06 11 22 33 44")
    page.set_input_files("#cv", str(cv))
    page.click("button[type=submit]")
    page.wait_for_selector("[data-lba-submitted]")


def eligibility(servers: Servers) -> Any:
    return get_json(f"{servers.widget}/api/v1/eligibility?target=offer:{OTHER_OFFER}")["results"][0]


def test_scanner_opens_every_link_and_nothing_happens(
    browser: Any, page: Page, servers: Servers, tmp_path: Path
) -> None:
    cv = tmp_path / "cv.pdf"
    cv.write_bytes(PDF)
    email = f"sam.{int(time.time() * 1000)}@example.org"
    apply_without_javascript(page, servers, email, cv)
    mailbox(servers, to=email, count=1)  # the acknowledgement is there, so is the pro email
    [pro] = [m for m in get_json(servers.widget + "/dev/api/mailbox")["messages"]
             if m["subject"].startswith("Candidature") and m["subject"].endswith("Sam Scanner")]
    message = get_json(f"{servers.widget}/dev/api/mailbox/{pro['id']}")
    urls = sorted({link["href"] for link in message["links"] if link["href"].startswith(servers.widget)})
    assert any("/reply/" in u for u in urls) and any("/optout/" in u for u in urls)
    before = len(get_json(servers.widget + "/dev/api/mailbox")["messages"])

    # The scanner: its own browser context, JavaScript on, every link, plus HEAD and GET.
    scanner = browser.new_context()
    for url in urls:
        scan = scanner.new_page()
        scan.goto(url, wait_until="networkidle")
        scan.close()
        for method in ("HEAD", "GET"):
            with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5):
                pass
    scanner.close()
    time.sleep(1)  # the in-process worker polls every 0.2 s: give it a chance to send
    assert len(get_json(servers.widget + "/dev/api/mailbox")["messages"]) == before
    assert eligibility(servers)["eligible"] is True

    # The recruiter: one click on "Répondre au candidat", then the page's button.
    accept = next(u for u in urls if "/reply/" in u and page.goto(u) and
                  page.locator("input[value=accept]").is_checked())
    page.goto(accept)
    page.click("button[type=submit]")
    page.wait_for_selector(".success")
    answers = mailbox(servers, to=email, count=2)
    assert [m for m in answers if m["subject"].startswith("Suite donnée")]
    # Replaying the POST sends nothing more.
    data = json.dumps({}).encode()
    request = urllib.request.Request(accept, data=data, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert "déjà reçu une réponse" in response.read().decode()
    time.sleep(1)
    assert len(mailbox(servers, to=email, count=3)) == 2
