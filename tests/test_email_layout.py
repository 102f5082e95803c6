"""What holds for every email, checked on each kind as the outbox stores it: one
real <h1>, the privacy link, a preheader hidden without low-contrast text,
nothing fetched from elsewhere, and every template covered."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.email_kinds import TO_CANDIDATE, every_kind, html_links, parse
from tests.smtp_server import running as running_smtp_server
from tests.support import body, smtp_client
from widget_server.emails import EMAILS_DIR

PRIVACY_URL = "http://testserver/confidentialite"


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, EmailMessage]]:
    with running_smtp_server() as smtp, smtp_client(tmp_path_factory.mktemp("kinds"), smtp) as client:
        yield {kind: parse(raw) for kind, raw in every_kind(client).items()}


def test_every_template_is_among_the_kinds_checked(kinds: dict[str, EmailMessage]) -> None:
    # A new template (say, a notice to the recruiter) must be added to
    # tests/email_kinds.py, and so to these checks and to SpamAssassin's.
    templates = {p.stem for p in Path(EMAILS_DIR).glob("*.mjml") if not p.name.startswith("_")}
    assert {str(m["X-LBA-Template"]) for m in kinds.values()} == templates


def test_every_email_has_one_real_h1_its_headline(kinds: dict[str, EmailMessage]) -> None:
    for kind, message in kinds.items():
        headings = re.findall(r"<h1\b[^>]*>(.*?)</h1>", body(message, "html"), re.S)
        assert len(headings) == 1, kind
        text = html.unescape(re.sub(r"<[^>]+>", "", headings[0])).strip()
        # The text part opens with the same headline (a reminder, after its one line).
        opening = body(message).splitlines()[:3]
        assert text and any(line.startswith(text.rstrip(".")) for line in opening), (kind, text)


def test_every_email_links_the_privacy_notice(kinds: dict[str, EmailMessage]) -> None:
    for kind, message in kinds.items():
        assert PRIVACY_URL in html_links(message), kind
        # The text part too: some recruiters read only that one.
        assert PRIVACY_URL in body(message), kind
    for kind in TO_CANDIDATE:
        assert f"Vos données personnelles : {PRIVACY_URL}" in body(kinds[kind]), kind


def test_the_preheader_is_hidden_without_a_font_colour(kinds: dict[str, EmailMessage]) -> None:
    for kind, message in kinds.items():
        page = body(message, "html")
        opening = page[page.index("<body") :]
        preheader = re.search(r'<div style="display:none;[^"]*">([^<]+)</div>', opening)
        assert preheader and preheader.group(1).strip(), kind
        style = preheader.group(0).split('"')[1]
        assert "color" not in style and "font-size:1px" not in style, kind


def test_nothing_is_fetched_from_elsewhere(kinds: dict[str, EmailMessage]) -> None:
    # No tracking pixel, no remote image or font: an email shows as it is.
    for kind, message in kinds.items():
        page = body(message, "html")
        assert not re.search(r"<img\b|<link\b|@import|url\(", page, re.I), kind
