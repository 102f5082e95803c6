"""What every page shows (issue #13, items 10–14): the operator's identity in a
thin header, the favicon, "Erreur – " titles on error pages, the privacy notice
(RGPD article 13), links that open a new window saying so, the CFA's phone as a
`tel:` link, "Retour au site" after a standalone success, and /integration's
playground and code blocks."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests import seed
from tests.smtp_server import SMTPServer
from tests.support import appointment, form_token, links, make_settings, path, smtp_client, submit_application
from widget_server.app import create_app
from widget_server.framing import host_policy, widget_policy_line
from widget_server.resources import PAGES_DIR

RDV = "/widget/v1/rdv"
FORM = "/widget/v1/candidature"


def title(page: str) -> str:
    found = re.search(r"<title>(.*?)</title>", page, re.S)
    assert found, "no <title>"
    return html.unescape(found.group(1))


def header(page: str) -> str:
    """The identity header's text, or "" when the page has none."""
    found = re.search(r'<header class="site-header">(.*?)</header>', page, re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split()) if found else ""


# --- the identity header (item 10) ---------------------------------------------------


def test_pages_reached_from_an_email_say_who_runs_the_service(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    with smtp_client(tmp_path, smtp_server) as client:
        seed.offer(client)
        urls = links(submit_application(client, smtp_server))
        reply = client.get(path(next(u for u in urls if "/reply/" in u))).text
        optout = client.get(path(next(u for u in urls if "/optout/" in u))).text
        privacy = client.get("/confidentialite").text
        [ack] = [r for r in smtp_server.received if r.message["X-LBA-Template"].endswith("_ack")]
        followup = client.get(path(next(u for u in links(ack) if "/suivi/" in u))).text
    assert header(reply) == "La bonne alternance (démo) · Répondre à Léa Moreau"
    assert header(followup).startswith("La bonne alternance (démo) · Suivi de votre candidature")
    assert header(optout).startswith("La bonne alternance (démo) · Ne plus recevoir")
    assert header(privacy) == "La bonne alternance (démo) · Vos données personnelles"


def test_the_header_names_the_operator_of_the_settings(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, OPERATOR_NAME="Région <Sud> & Co"))) as client:
        page = client.get("/nowhere").text
    assert header(page) == "Région <Sud> & Co · Page introuvable"
    assert "Région &lt;Sud&gt; &amp; Co" in page


def test_the_form_in_the_widget_frame_has_no_header_of_its_own(client: TestClient) -> None:
    """In the modal, the widget's top bar is the page's chrome: one bar only."""
    seed.offer(client)
    framed = client.get(
        FORM, params={"offer_id": seed.OFFER_ID, "embed": "w1", "origin": "https://a.example"}
    )
    standalone = client.get(FORM, params={"offer_id": seed.OFFER_ID})
    assert header(framed.text) == ""
    assert "page." not in re.sub(r"form\.[0-9a-f]+\.css", "", framed.text).split("</head>")[0]
    assert header(standalone.text).startswith("La bonne alternance (démo) · Je candidate")


# --- titles (item 12) ----------------------------------------------------------------


def test_error_pages_have_titles_that_say_so(client: TestClient) -> None:
    seed.offer(client, offer_id="LBA-CLOSED", status="closed")
    pages = {
        "404": client.get("/nowhere"),
        "405": client.post("/confidentialite"),
        "400": client.get(FORM),
        "unknown target": client.get(FORM, params={"offer_id": "NOPE-1"}),
        "reply token": client.get("/reply/not-a-token"),
        "optout token": client.get("/optout/not-a-token"),
        "unavailable": client.get(FORM, params={"offer_id": "LBA-CLOSED"}),
    }
    for name, response in pages.items():
        assert response.status_code >= 400, name
        assert title(response.text).startswith("Erreur – "), name
    assert title(pages["404"].text) == "Erreur – Page introuvable – La bonne alternance (démo)"
    assert header(pages["404"].text) == "La bonne alternance (démo) · Page introuvable"


def test_other_pages_have_plain_titles(client: TestClient) -> None:
    seed.offer(client)
    for url in ("/confidentialite", "/integration", f"{FORM}?offer_id={seed.OFFER_ID}"):
        assert not title(client.get(url).text).startswith("Erreur"), url


def test_a_form_sent_back_with_errors_says_so_in_its_title(client: TestClient) -> None:
    seed.offer(client)
    page = client.get(FORM, params={"offer_id": seed.OFFER_ID}).text
    response = client.post(FORM, data={"form_token": form_token(page), "offer_id": seed.OFFER_ID})
    assert response.status_code == 422
    assert title(response.text).startswith("Erreur – Je candidate")


# --- favicon (item 12) ---------------------------------------------------------------


def test_every_page_links_the_service_favicon(client: TestClient) -> None:
    icons = set()
    for url in ("/confidentialite", "/integration", "/nowhere"):
        page = client.get(url).text
        icons |= set(re.findall(r'<link rel="icon" href="(/widget/v1/assets/favicon\.[0-9a-f]+\.svg)"', page))
    [href] = icons
    icon = client.get(href)
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/svg+xml"
    assert icon.text.startswith("<svg") and "</svg>" in icon.text
    # Self-contained: nothing fetched from anywhere, no script.
    assert "href" not in icon.text and "<script" not in icon.text and "url(" not in icon.text


# --- new windows (item 12) -----------------------------------------------------------


def test_every_link_opening_a_new_window_says_so() -> None:
    """In every page template: what a screen reader or a careful reader learns before clicking."""
    found = 0
    for template in sorted(PAGES_DIR.rglob("*.html")):
        for match in re.finditer(r"<a\b([^>]*)>(.*?)</a>", template.read_text(), re.S):
            if "_blank" in match.group(1):
                found += 1
                assert "(nouvelle fenêtre)" in match.group(2), f"{template.name}: {match.group(0)}"
    assert found >= 2


def test_the_form_page_privacy_link_says_it_opens_a_new_window(client: TestClient) -> None:
    seed.offer(client)
    page = client.get(FORM, params={"offer_id": seed.OFFER_ID}).text
    new_windows = re.findall(r'<a [^>]*target="_blank"[^>]*>(.*?)</a>', page, re.S)
    assert len(new_windows) == 2  # the hint under the button, the footer
    assert all("(nouvelle fenêtre)" in text for text in new_windows)


# --- the rdv success page: the CFA's phone (item 12) ------------------------------


def rdv_sent(client: TestClient, **params: str) -> str:
    page = client.get(RDV, params={"formation_id": seed.FORMATION_ID, "caller": "site", **params}).text
    data = {
        "form_token": form_token(page),
        "formation_id": seed.FORMATION_ID,
        "caller": "site",
        **appointment(formation_id=None),
    }
    if 'name="back"' in page:
        data["back"] = html.unescape(re.search(r'name="back" value="([^"]*)"', page).group(1))  # type: ignore[union-attr]
    response = client.post(RDV, data=data)
    assert response.status_code == 200, response.text
    return response.text


def test_the_rdv_success_page_links_the_cfa_phone(client: TestClient) -> None:
    seed.formation(client)
    page = rdv_sent(client)
    assert '<a href="tel:+33199001234">01 99 00 12 34</a>' in page


# --- "Retour au site" after a standalone success (item 12) ---------------------------


def back_link(page: str) -> str | None:
    found = re.search(r'<a class="button secondary" href="([^"]*)">Retour au site</a>', page)
    return html.unescape(found.group(1)) if found else None


def with_referer(client: TestClient, referer: str) -> TestClient:
    client.headers["Referer"] = referer
    return client


def test_a_standalone_success_leads_back_to_the_site_it_came_from(client: TestClient) -> None:
    seed.formation(client)
    page = rdv_sent(with_referer(client, "https://partenaire.example/formations?q=boulanger&page=2"))
    assert back_link(page) == "https://partenaire.example/formations?q=boulanger&page=2"


def test_no_way_back_when_the_site_is_unknown(client: TestClient) -> None:
    seed.formation(client)
    assert back_link(rdv_sent(client)) is None


@pytest.mark.parametrize(
    "referer",
    [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        'https://partenaire.example/"><script>alert(1)</script>',
        "https:///no-host",
        "https://partenaire.example/" + "a" * 2000,
    ],
)
def test_only_a_web_page_is_offered_as_the_way_back(client: TestClient, referer: str) -> None:
    seed.formation(client)
    page = rdv_sent(with_referer(client, referer))
    assert back_link(page) is None
    assert "alert(1)" not in page


def test_a_posted_way_back_is_ignored(client: TestClient) -> None:
    """The way back is the one signed into the form token, never a posted field."""
    seed.formation(client)
    ways = ((None, None), ("https://partenaire.example/", "https://partenaire.example/"))
    for n, (referer, expected) in enumerate(ways):
        if referer:
            with_referer(client, referer)
        page = client.get(RDV, params={"formation_id": seed.FORMATION_ID}).text
        assert 'name="back"' not in page
        data = {
            "form_token": form_token(page),
            "formation_id": seed.FORMATION_ID,
            **appointment(formation_id=None, email=f"candidat{n}@example.org"),
        }
        client.headers.pop("Referer", None)
        for forged in ("javascript:alert(1)", "https://evil.example/"):
            response = client.post(RDV, data={**data, "back": forged})
            assert response.status_code == 200
            assert back_link(response.text) == expected


def test_no_way_back_inside_the_widget(client: TestClient) -> None:
    """In the modal the host page is right there: "Fermer" is the way back."""
    seed.formation(client)
    page = rdv_sent(
        with_referer(client, "https://partenaire.example/"), embed="w1", origin="https://partenaire.example"
    )
    assert back_link(page) is None


# --- the privacy notice (item 11) ----------------------------------------------------


def privacy_page(tmp_path: Path, **settings: str) -> str:
    with TestClient(create_app(make_settings(tmp_path, **settings))) as client:
        response = client.get("/confidentialite")
    assert response.status_code == 200
    return " ".join(html.unescape(response.text).split())


def test_the_privacy_notice_names_the_operator_and_how_to_reach_them(tmp_path: Path) -> None:
    page = privacy_page(
        tmp_path,
        OPERATOR_NAME="Région Exemple",
        OPERATOR_ADDRESS="1 place de l'Hôtel de Région, 13002 Marseille",
        PRIVACY_CONTACT_EMAIL="donnees@region.example",
        DPO_CONTACT="dpo@region.example",
    )
    assert "proposé par <strong>Région Exemple</strong>, responsable du traitement" in page
    assert "1 place de l'Hôtel de Région, 13002 Marseille" in page
    assert page.count('<a href="mailto:donnees@region.example">donnees@region.example</a>') == 2
    assert '<a href="mailto:dpo@region.example">dpo@region.example</a>' in page


def test_the_privacy_notice_says_what_article_13_asks(tmp_path: Path) -> None:
    page = privacy_page(tmp_path)
    for heading in (
        "Qui s'en occupe",
        "Pourquoi et sur quelle base",
        "Qui les reçoit",
        "Combien de temps",
        "Vos droits",
    ):
        assert f">{heading}</h2>" in page, heading
    assert "article 6.1.e du RGPD" in page
    assert "il apprend seulement où en est la demande" in page  # the partner site
    assert "recevoir une copie dans un format lisible par une machine" in page
    # The CNIL: a plain link, nothing loaded from there.
    assert '<a href="https://www.cnil.fr/fr/plaintes">' in page
    assert "cnil.fr" not in re.sub(r'<a href="https://www\.cnil\.fr/fr/plaintes">[^<]*</a>', "", page)


def test_the_privacy_notice_reads_retention_and_legal_basis_from_the_settings(tmp_path: Path) -> None:
    page = privacy_page(
        tmp_path,
        CV_RETENTION_DAYS="10",
        PERSONAL_DATA_RETENTION_DAYS="1095",
        LEGAL_BASIS="legitimate_interest",
    )
    assert "Votre CV est supprimé de nos serveurs 10 jours après avoir été transmis" in page
    assert "anonymisées 3 ans après votre dernière démarche" in page
    assert "article 6.1.f du RGPD" in page and "6.1.e" not in page
    odd = privacy_page(tmp_path / "odd", CV_RETENTION_DAYS="1", PERSONAL_DATA_RETENTION_DAYS="400")
    assert "supprimé de nos serveurs 1 jour après" in odd
    assert "anonymisées 400 jours après" in odd


def test_the_privacy_notice_links_a_dpo_page(tmp_path: Path) -> None:
    page = privacy_page(tmp_path, DPO_CONTACT="https://region.example/dpo")
    assert '<a href="https://region.example/dpo">https://region.example/dpo</a>' in page


def test_without_a_contact_address_the_notice_says_whom_to_write_to(tmp_path: Path) -> None:
    """Development: no address set, the operator is still named (production refuses this)."""
    page = privacy_page(tmp_path)
    assert "mailto:" not in page
    assert "écrivez à La bonne alternance (démo) en précisant l'adresse e-mail" in page


def test_every_form_links_the_privacy_notice(client: TestClient) -> None:
    seed.offer(client)
    seed.formation(client)
    for url, params in ((FORM, {"offer_id": seed.OFFER_ID}), (RDV, {"formation_id": seed.FORMATION_ID})):
        page = client.get(url, params=params).text
        form = page[page.index("<form") : page.index("</form>")]
        assert 'href="/confidentialite"' in form, url


# --- /integration (items 13, 14) -----------------------------------------------------


def integration(client: TestClient) -> tuple[str, dict[str, Any]]:
    from tests.support import template_context

    response = client.get("/integration")
    assert response.status_code == 200
    return response.text, template_context(response)


def test_every_code_block_can_be_reached_and_is_named(client: TestClient) -> None:
    page, _ = integration(client)
    blocks = re.findall(r"<pre\b[^>]*>", page)
    assert len(blocks) >= 6
    for block in blocks:
        assert 'tabindex="0"' in block, block
        assert 'role="region"' in block, block
        assert "aria-label=" in block or "aria-labelledby=" in block, block


def test_the_playground_offers_the_directory_targets_with_their_answer(client: TestClient) -> None:
    seed.offer(client)
    seed.offer(client, offer_id="LBA-CLOSED", status="closed")
    seed.formation(client, cle="NO-CONTACT-1", contact_email="")
    page, context = integration(client)
    options = dict(re.findall(r'<option value="((?:offer|company|formation):[^"]+)">([^<]*)</option>', page))
    assert options[f"offer:{seed.OFFER_ID}"].endswith(f"– {seed.OFFER_ID}")
    assert html.unescape(options["offer:LBA-CLOSED"]).endswith("(pas de bouton : offre fermée ou expirée)")
    assert html.unescape(options["formation:NO-CONTACT-1"]).endswith(
        "(pas de bouton : aucune adresse de contact connue)"
    )
    # Eligible targets come first within their kind.
    assert list(options).index(f"offer:{seed.OFFER_ID}") < list(options).index("offer:LBA-CLOSED")
    # The playground's words for each reason travel with the page, for the answers it shows.
    assert 'data-unknown-target="identifiant inconnu de l&#39;annuaire"' in page
    assert context["examples"] == {"offer": seed.OFFER_ID}


def test_the_playground_lists_a_few_unavailable_targets_only(client: TestClient) -> None:
    for n in range(8):
        seed.offer(client, offer_id=f"LBA-CLOSED-{n}", status="closed")
    page, _ = integration(client)
    assert len(re.findall(r'<option value="offer:LBA-CLOSED-', page)) == 1  # one per reason


def test_the_csp_line_is_the_one_the_example_site_runs_with(client: TestClient) -> None:
    page, context = integration(client)
    line = context["csp_line"]
    assert line == "script-src http://testserver; connect-src http://testserver; frame-src http://testserver"
    assert f'<code id="p-csp">{line}</code>' in page
    # The example partner site (which the browser tests drive) allows at least that.
    policy = {d.split()[0]: d.split()[1:] for d in host_policy("http://testserver").split("; ")}
    for directive in widget_policy_line("http://testserver").split("; "):
        name, source = directive.split()
        assert source in policy[name], directive


def test_the_playground_takes_a_caller_name(client: TestClient) -> None:
    page, _ = integration(client)
    assert '<input type="text" id="p-caller" name="caller" value="mon-site"' in page
    assert 'id="p-caller-error" hidden' in page


def test_the_playground_has_words_for_every_reason() -> None:
    from widget_server import eligibility, integration

    assert set(integration.REASONS) == set(eligibility.REASONS)
