"""A mail security scanner opening every link of a pro email (HEAD, GET and a
headless browser with JavaScript on) answers nothing, opts nobody out and queues
nothing; the recruiter's own click and POST then sends exactly one email to the
candidate, threaded on the acknowledgement, and replaying that POST sends none."""

from __future__ import annotations

import re
import sqlite3
import time
import urllib.parse
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.support import OTHER_OFFER, PDF, Servers, axe_violations, get_json, mailbox

pytestmark = pytest.mark.browser

WATCHED = ("contact_requests", "reply_tokens", "contacts", "offers", "companies", "formations")


def apply_without_javascript(page: Page, servers: Servers, email: str, cv: Path) -> None:
    page.goto(f"{servers.widget}/widget/v1/candidature?offer_id={OTHER_OFFER}&caller=scanner-test")
    page.fill("#last_name", "Scanner")
    page.fill("#first_name", "Sam")
    page.fill("#email", email)
    page.fill("#phone", "06 11 22 33 44")
    page.set_input_files("#cv", str(cv))
    page.click("button[type=submit]")
    page.wait_for_selector("[data-lba-submitted]")


def query(servers: Servers, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Reads the server's SQLite database (read-only): what a click would have changed."""
    path = servers.var_dir.parent / "widget.db"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        return db.execute(sql, args).fetchall()


def snapshot(servers: Servers) -> list[Any]:
    # Outbox rows change status as the worker delivers them: only their ids count.
    return [query(servers, f"SELECT * FROM {table} ORDER BY 1") for table in WATCHED] + [
        query(servers, "SELECT id, template, recipient FROM outbox ORDER BY id")
    ]


def every_link(message: dict[str, Any], servers: Servers) -> list[str]:
    """The service's links in both parts of the email, and in List-Unsubscribe."""
    found = [link["href"] for link in message["links"]]
    found += re.findall(r"https?://\S+", message["text"])
    found += [h["value"].strip("<>") for h in message["headers"] if h["name"] == "List-Unsubscribe"]
    return sorted({u for u in found if u.startswith(servers.widget)})


def answers_to(servers: Servers, email: str) -> list[tuple[Any, ...]]:
    return query(
        servers,
        "SELECT o.template FROM outbox o JOIN contact_requests r "
        "ON r.id = o.request_id WHERE r.email = ? AND o.template LIKE 'answer%'",
        email,
    )


def test_scanner_opens_every_link_and_nothing_happens(
    browser: Browser, page: Page, servers: Servers, tmp_path: Path
) -> None:
    cv = tmp_path / "cv.pdf"
    cv.write_bytes(PDF)
    email = f"sam.{int(time.time() * 1000)}@example.org"
    apply_without_javascript(page, servers, email, cv)
    [ack] = mailbox(page, servers, to=email, count=1)  # queued with the pro email, in one transaction
    [pro] = [
        m
        for m in get_json(servers.widget + "/dev/api/mailbox")["messages"]
        if m["subject"].startswith("Candidature") and m["subject"].endswith("Sam Scanner")
    ]
    urls = every_link(get_json(f"{servers.widget}/dev/api/mailbox/{pro['id']}"), servers)
    assert len([u for u in urls if "/reply/" in u]) == 2 and [u for u in urls if "/optout/" in u]
    before = snapshot(servers)

    # The scanner: its own browser context, JavaScript on, every link, plus HEAD and GET.
    scanner = browser.new_context()
    for url in urls:
        scan = scanner.new_page()
        assert (response := scan.goto(url, wait_until="networkidle")) and response.status == 200
        scan.close()
        for method in ("HEAD", "GET"):
            with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as r:
                assert r.status == 200
    scanner.close()
    assert snapshot(servers) == before
    assert (
        get_json(f"{servers.widget}/api/v1/eligibility?target=offer:{OTHER_OFFER}")["results"][0]["eligible"]
        is True
    )

    # The recruiter: one click on "Répondre au candidat", then the page's button.
    accept = next(
        u
        for u in urls
        if "/reply/" in u and page.goto(u) and page.locator("input[value=accept]").is_checked()
    )
    optout = next(u for u in urls if "/optout/" in u)
    page.goto(optout)
    assert axe_violations(page) == []
    page.goto(accept)
    assert axe_violations(page) == []
    form = page.evaluate(
        "() => new URLSearchParams(new FormData(document.querySelector('form.reply-form'))).toString()"
    )
    page.click("button[type=submit]")
    page.wait_for_selector(".success")
    assert axe_violations(page) == []
    assert answers_to(servers, email) == [("answer_accept",)]

    # Replaying the very same POST sends nothing more.
    replay = urllib.request.Request(
        accept,
        data=form.encode(),
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(replay, timeout=5) as response:
        assert "déjà reçu une réponse" in response.read().decode()
    assert answers_to(servers, email) == [("answer_accept",)]
    assert dict(urllib.parse.parse_qsl(form))["answer"] == "accept"

    received = mailbox(page, servers, to=email, count=2)
    [answer] = [m for m in received if m["subject"].startswith("Suite donnée")]
    headers = get_json(f"{servers.widget}/dev/api/mailbox/{answer['id']}")["headers"]
    ack_id = next(
        h["value"]
        for h in get_json(f"{servers.widget}/dev/api/mailbox/{ack['id']}")["headers"]
        if h["name"] == "Message-ID"
    )
    assert {"name": "In-Reply-To", "value": ack_id} in headers
