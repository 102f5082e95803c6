"""A partner plays the whole loop with a test key, as the integration page says:
create the key, post an application, read the test mailbox, answer through a
reply link in the browser, see the answer and the status. Nothing reaches the
dev mailbox, and the pages on the way are axe-clean."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.browser.support import OTHER_OFFER, PDF, Servers, axe_violations

pytestmark = pytest.mark.browser

CANDIDATE = "camille.sandbox@example.org"


def create_test_key(servers: Servers) -> str:
    """`widget-server keys create … --test` on the server's database, as the operator would."""
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ", "SYSTEMROOT")},
        "DATABASE_URL": f"sqlite+aiosqlite:///{servers.var_dir.parent / 'widget.db'}",
        "VAR_DIR": str(servers.var_dir),
        "SECRET_KEY": "browser-tests",
        "PUBLIC_URL": servers.widget,
    }
    done = subprocess.run(
        [sys.executable, "-m", "widget_server.cli", "keys", "create", "partenaire-test", "--test"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    [key] = [line for line in done.stdout.splitlines() if line.startswith("lba_test_")]
    return key


def read_test_mailbox(
    page: Page, servers: Servers, key: str, request_id: str, template: str
) -> dict[str, Any]:
    """The message of `template` in the test mailbox, once it arrived (polled through
    Playwright, see support.mailbox)."""
    for _ in range(75):
        answer = page.request.get(
            f"{servers.widget}/api/v1/test-mailbox?request_id={request_id}",
            headers={"Authorization": f"Bearer {key}"},
        )
        assert answer.status == 200, answer.text()
        found = [m for m in answer.json()["messages"] if m["template"] == template]
        if found:
            return dict(found[0])
        page.wait_for_timeout(200)
    raise AssertionError(f"no {template} in the test mailbox")


def test_a_partner_plays_the_whole_loop_with_a_test_key(page: Page, servers: Servers) -> None:
    page.goto(servers.widget + "/integration#test-keys")
    assert page.get_by_role("heading", name="Tester toute la boucle avec une clé de test").is_visible()
    assert axe_violations(page) == []

    key = create_test_key(servers)
    auth = {"Authorization": f"Bearer {key}"}
    posted = page.request.post(
        servers.widget + "/api/v1/applications",
        headers=auth,
        data={
            "offer_id": OTHER_OFFER,
            "first_name": "Camille",
            "last_name": "Sandbox",
            "email": CANDIDATE,
            "phone": "06 12 34 56 78",
            "cv": "data:application/pdf;base64," + base64.b64encode(PDF).decode(),
        },
    )
    assert posted.status == 202, posted.text()
    request_id = posted.json()["id"]

    pro = read_test_mailbox(page, servers, key, request_id, "candidature_pro")
    assert "Camille Sandbox" in pro["text"]
    [accept] = [
        link["href"]
        for link in pro["links"]
        if "/reply/" in link["href"]
        and page.goto(link["href"])
        and page.locator("input[value=accept]").is_checked()
    ]
    page.goto(accept)
    assert axe_violations(page) == []
    page.get_by_role("button", name="Envoyer ma réponse").click()
    page.wait_for_selector("text=Votre réponse a été envoyée")

    answer = read_test_mailbox(page, servers, key, request_id, "answer_accept")
    assert CANDIDATE in answer["to"]
    status = page.request.get(f"{servers.widget}/api/v1/requests/{request_id}", headers=auth).json()
    assert status["status"] == "answered" and status["test"] is True
    # Nothing of this request went to the dev mailbox (the service's other emails do).
    dev = page.request.get(servers.widget + "/dev/api/mailbox").json()["messages"]
    assert not [m for m in dev if CANDIDATE in m["to"] or "boite-de-test" in m["to"]]
