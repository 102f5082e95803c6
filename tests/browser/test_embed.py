"""The widget in a partner's page, in headless Chromium: buttons, events,
the modal and inline forms, several widgets, late placeholders, the JS API.
The partner pages are on other origins than the widget."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Request

from tests.browser.support import (
    BAD_SIRET,
    CLOSED_OFFER,
    EVENTS_SCRIPT,
    FORMATION,
    NO_CONTACT_OFFER,
    OFFER,
    OPTED_OUT_FORMATION,
    OPTED_OUT_SIRET,
    OTHER_OFFER,
    SIRET,
    UNKNOWN_OFFER,
    Servers,
    eligibility_requests,
    events,
    focused_in_slot,
    form_frame,
    slot,
    wait_events,
)

pytestmark = pytest.mark.browser

ELIGIBILITY = "/api/v1/eligibility"


def test_buttons_appear_for_eligible_targets_after_one_request(page: Page, servers: Servers) -> None:
    page.goto(servers.site + "/")
    ready = wait_events(page, "ready", 10)
    unavailable = wait_events(page, "unavailable", 4)
    assert len(eligibility_requests(page)) == 1
    assert {e["ref"] for e in ready} >= {OFFER, OTHER_OFFER, SIRET, FORMATION}
    assert {e["ref"]: e["detail"]["reason"] for e in unavailable} == {
        CLOSED_OFFER: "closed",
        NO_CONTACT_OFFER: "no_contact",
        OPTED_OUT_SIRET: "opted_out",
        OPTED_OUT_FORMATION: "opted_out",
    }
    assert page.locator(f"{slot(OFFER)} button").inner_text() == "Je candidate"
    assert page.locator(f"{slot(SIRET)} button").inner_text() == "Candidater spontanément"
    assert page.locator(f"{slot(FORMATION)} button").inner_text() == "Contacter l'établissement"
    assert (
        page.locator(f"{slot(OFFER)} button").get_attribute("aria-label")
        == "Je candidate : Apprenti boulanger (H/F) – CAP Boulanger"
    )
    # The brand colour, and the host's own `button` rules (uppercase) kept out.
    style = page.locator(f"{slot(FORMATION)} button").evaluate(
        "b => [getComputedStyle(b).backgroundColor, getComputedStyle(b).textTransform]"
    )
    assert style == ["rgb(122, 46, 140)", "none"]
    for ref in (CLOSED_OFFER, NO_CONTACT_OFFER, OPTED_OUT_SIRET):
        assert page.locator(f"{slot(ref)} button").count() == 0
        # The fallback link inside the placeholder goes away with the widget.
        assert page.locator(f"{slot(ref)} a.fallback").is_hidden()
    assert page.locator(f"{slot(OFFER)} a.fallback").is_hidden()
    assert page.errors == []  # type: ignore[attr-defined]


def test_unknown_or_malformed_targets_stay_empty(page: Page, servers: Servers) -> None:
    page.goto(servers.fixtures + "/unavailable.html")
    wait_events(page, "ready")
    unavailable = wait_events(page, "unavailable")
    errors = wait_events(page, "error", 2)
    assert [(e["ref"], e["detail"]["reason"]) for e in unavailable] == [(UNKNOWN_OFFER, "unknown_target")]
    assert sorted((e["ref"] or "", e["detail"]["reason"]) for e in errors) == [
        ("", "invalid_placeholder"),
        (BAD_SIRET, "invalid_target"),
    ]
    # A malformed SIRET does not take the other placeholders down.
    assert page.locator(f"{slot(SIRET)} button").count() == 1
    assert page.locator(f"{slot(UNKNOWN_OFFER)} a.fallback").is_hidden()
    assert page.locator("[data-lba-widget] button").count() == 1
    # One request: the malformed target is answered in its own result.
    assert len(eligibility_requests(page)) == 1


def test_the_fallback_link_stays_when_the_service_is_unreachable(page: Page, servers: Servers) -> None:
    page.route(f"{servers.widget}{ELIGIBILITY}*", lambda route: route.abort())
    page.goto(servers.fixtures + "/unavailable.html")
    errors = wait_events(page, "error", 4)
    assert {e["detail"]["reason"] for e in errors} == {"network", "invalid_placeholder"}
    assert page.locator(f"{slot(UNKNOWN_OFFER)} a.fallback").is_visible()


def test_loader_twice_and_two_widgets_on_a_page(page: Page, servers: Servers) -> None:
    page.goto(servers.fixtures + "/twice.html")  # returns once both copies of the loader have run
    wait_events(page, "ready", 2)
    # A second copy that ran would have asked (synchronously, as it started) and drawn.
    assert len(eligibility_requests(page)) == 1
    assert len(events(page, "ready")) == 2
    assert page.locator(f"{slot(OFFER)} button").count() == 1
    assert page.locator(f"{slot(FORMATION)} button").inner_text() == "Poser une question"
    assert page.evaluate("() => Object.keys(window.LBAWidget).sort()") == ["open", "scan"]

    page.locator(f"{slot(FORMATION)} button").click()
    frame = form_frame(page)
    assert "/widget/v1/rdv?formation_id=" in frame.url
    assert events(page, "open")[0]["ref"] == FORMATION
    # Escape goes where the focus is: wait until the form took it (the modal moves it in).
    frame.wait_for_function("() => document.activeElement.id === 'last_name'")
    page.keyboard.press("Escape")
    wait_events(page, "close")
    page.locator(f"{slot(OFFER)} button").click()
    frame = form_frame(page)
    assert f"/widget/v1/candidature?offer_id={OFFER}&caller=fixture" in frame.url
    assert [e["ref"] for e in events(page, "open")] == [FORMATION, OFFER]
    # The modal code is loaded now: still one global, with nothing more on it.
    assert page.evaluate("() => Object.getOwnPropertyNames(window.LBAWidget).sort()") == ["open", "scan"]
    assert page.evaluate("() => Object.keys(window).filter(k => k.startsWith('LBA'))") == ["LBAWidget"]


def test_modal_code_is_fetched_once_a_button_is_shown(page: Page, servers: Servers) -> None:
    # No pointer over a button, no focus, no click: a button shown is enough,
    # so that a click then waits for the form's page alone.
    with page.expect_request(lambda request: "/widget/v1/assets/widget." in request.url) as fetched:
        page.goto(servers.fixtures + "/twice.html")
        wait_events(page, "ready", 2)
    assert fetched.value.frame == page.main_frame
    assert events(page, "open") == []
    assert page.locator("[data-lba-widget] iframe").count() == 0


def test_a_pointer_over_a_button_loads_its_form_hidden_and_the_click_shows_it(
    page: Page, servers: Servers
) -> None:
    forms: list[str] = []
    page.on("request", lambda r: forms.append(r.url) if "/widget/v1/rdv?" in r.url else None)
    page.goto(servers.fixtures + "/twice.html")
    wait_events(page, "ready", 2)
    page.locator(f"{slot(OFFER)} button[part=button]").hover()
    page.locator(f"{slot(OFFER)} iframe").wait_for(state="attached")
    assert not page.locator(f"{slot(OFFER)} dialog").evaluate("d => d.open")
    # Another button pointed at: the first hidden form goes, the other loads.
    page.locator(f"{slot(FORMATION)} button[part=button]").hover()
    iframe = page.locator(f"{slot(FORMATION)} iframe")
    iframe.wait_for(state="attached")
    assert page.locator(f"{slot(OFFER)} dialog").count() == 0
    handle = iframe.element_handle()
    frame = handle.content_frame()
    handle.dispose()
    assert frame is not None
    # Loaded and said so while hidden: no focus taken, nothing opened.
    frame.wait_for_function("() => document.documentElement.style.overflow === 'hidden'")
    page.wait_for_timeout(100)
    assert focused_in_slot(page) == ""
    assert events(page, "open") == []
    page.locator(f"{slot(FORMATION)} button[part=button]").click()
    wait_events(page, "open")
    frame.wait_for_function("() => document.activeElement && document.activeElement.id === 'last_name'")
    assert len(forms) == 1  # the click showed the form already loaded
    assert page.locator(f"{slot(FORMATION)} dialog").evaluate("d => d.open && d.matches(':modal')")
    page.keyboard.press("Escape")
    wait_events(page, "close")
    assert page.locator("[data-lba-widget] dialog").count() == 0
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_form_loaded_hidden_long_ago_is_loaded_again_on_the_click(page: Page, servers: Servers) -> None:
    forms: list[str] = []
    page.on("request", lambda r: forms.append(r.url) if "/widget/v1/candidature?" in r.url else None)
    page.clock.install()
    page.goto(servers.fixtures + "/twice.html")
    wait_events(page, "ready", 2)
    button = page.locator(f"{slot(OFFER)} button[part=button]")
    button.hover()
    page.locator(f"{slot(OFFER)} iframe").wait_for(state="attached")
    page.clock.fast_forward("06:00")  # five minutes at most
    button.click()
    frame = form_frame(page, slot(OFFER))
    frame.wait_for_function("() => document.activeElement && document.activeElement.id === 'last_name'")
    assert len(forms) == 2
    assert page.locator(f"{slot(OFFER)} iframe").count() == 1


def test_inline_forms_are_sized_by_their_own_messages(page: Page, servers: Servers) -> None:
    page.goto(servers.fixtures + "/inline.html")
    ready = wait_events(page, "ready", 2)
    assert {e["ref"] for e in ready} == {OFFER, FORMATION}
    assert page.locator("[data-lba-widget] button").count() == 0
    heights = {}
    for ref, path in ((OFFER, "/candidature"), (FORMATION, "/rdv")):
        frame = next(f for f in page.frames if path + "?" in f.url)
        iframe = page.locator(f"{slot(ref)} iframe")
        # The frame's page is on another origin: compare from here, until the host has
        # applied the height the frame last reported (the content reflows as the
        # frame takes its width, so one early reading may be stale).
        deadline = time.monotonic() + 10
        while True:
            content = frame.evaluate(
                "() => Math.ceil(document.documentElement.getBoundingClientRect().height)"
            )
            outer = iframe.evaluate("el => el.getBoundingClientRect().height")
            if abs(outer - content) < 2 or time.monotonic() > deadline:
                break
            page.wait_for_timeout(100)
        assert abs(outer - content) < 2, (outer, content)
        # No inner scrollbar: the page fits its frame.
        assert frame.evaluate("() => document.documentElement.scrollHeight <= innerHeight + 1")
        heights[ref] = content
    assert heights[OFFER] != heights[FORMATION]
    # Inline forms never take the focus on load.
    assert focused_in_slot(page) == ""


def test_placeholders_added_later_are_batched(page: Page, servers: Servers) -> None:
    page.goto(servers.site + "/recherche.html")
    wait_events(page, "ready", 3)
    assert len(eligibility_requests(page)) == 1
    page.get_by_role("button", name="Afficher plus de résultats").click()
    wait_events(page, "ready", 6)
    assert len(eligibility_requests(page)) == 2
    assert page.locator("#results [data-lba-widget] button").count() == 6

    page.goto(servers.fixtures + "/empty.html")  # the loader has run when it returns
    assert page.evaluate("() => typeof LBAWidget") == "object"
    assert eligibility_requests(page) == []
    page.evaluate(
        """refs => refs.forEach(ref => {
        const el = document.createElement("div");
        el.dataset.lbaWidget = "candidature";
        el.dataset.offerId = ref;
        document.getElementById("slot").append(el);
    })""",
        [OFFER, OTHER_OFFER, UNKNOWN_OFFER],
    )
    wait_events(page, "ready", 2)
    wait_events(page, "unavailable")
    assert len(eligibility_requests(page)) == 1


def test_modal_takes_focus_closes_on_escape_and_gives_it_back(page: Page, servers: Servers) -> None:
    page.goto(servers.site + "/")
    wait_events(page, "ready", 10)
    button = page.locator(f"{slot(OTHER_OFFER)} button")
    button.focus()
    page.keyboard.press("Enter")
    wait_events(page, "open")
    dialog = page.locator(f"{slot(OTHER_OFFER)} dialog")
    assert dialog.evaluate("d => d.open && d.matches(':modal')")
    frame = form_frame(page)
    frame.wait_for_function("() => document.activeElement && document.activeElement.id === 'last_name'")
    assert focused_in_slot(page) == f"{OTHER_OFFER} IFRAME"
    title = page.locator(f"{slot(OTHER_OFFER)} iframe").get_attribute("title")
    assert title == "Formulaire « Je candidate » : Apprenti mécanicien automobile (H/F)"
    assert dialog.get_attribute("aria-label") == title

    page.keyboard.press("Escape")  # pressed inside the form's iframe
    wait_events(page, "close")
    assert dialog.count() == 0
    assert focused_in_slot(page) == f"{OTHER_OFFER} BUTTON"

    # The labelled close button, and ESC from the host side of the dialog.
    page.keyboard.press("Enter")
    form_frame(page).wait_for_function("() => document.activeElement.id === 'last_name'")
    close = page.locator(f"{slot(OTHER_OFFER)} dialog").get_by_role("button", name="Fermer")
    close.focus()
    page.keyboard.press("Escape")
    wait_events(page, "close", 2)
    page.keyboard.press("Enter")
    page.locator(f"{slot(OTHER_OFFER)} dialog").get_by_role("button", name="Fermer").click()
    wait_events(page, "close", 3)
    assert focused_in_slot(page) == f"{OTHER_OFFER} BUTTON"
    assert page.errors == []  # type: ignore[attr-defined]


def test_modal_is_full_screen_on_small_screens(page: Page, servers: Servers) -> None:
    page.set_viewport_size({"width": 360, "height": 640})
    page.goto(servers.fixtures + "/twice.html")
    wait_events(page, "ready", 2)
    page.locator(f"{slot(OFFER)} button").click()
    form_frame(page)
    box = page.locator(f"{slot(OFFER)} dialog").bounding_box()
    assert box == {"x": 0, "y": 0, "width": 360, "height": 640}


def test_open_and_scan_from_javascript(page: Page, servers: Servers) -> None:
    page.goto(servers.fixtures + "/twice.html")
    wait_events(page, "ready", 2)
    assert page.evaluate("() => LBAWidget.open(document.querySelector('h1'))") is False
    assert page.evaluate("() => LBAWidget.scan().then(() => 'scanned')") == "scanned"
    assert page.evaluate(f"() => LBAWidget.open(document.querySelector('{slot(OFFER)}'))") is True
    wait_events(page, "open")
    frame = form_frame(page)
    frame.wait_for_function("() => document.activeElement && document.activeElement.id === 'last_name'")
    assert page.locator(f"{slot(OFFER)} dialog").evaluate("d => d.open")


def test_messages_from_elsewhere_are_ignored(page: Page, servers: Servers) -> None:
    page.goto(servers.fixtures + "/twice.html")
    wait_events(page, "ready", 2)
    page.locator(f"{slot(OFFER)} button").click()
    frame = form_frame(page)
    frame.wait_for_function("() => document.activeElement && document.activeElement.id === 'last_name'")
    embed = frame.evaluate("() => document.body.dataset.lbaEmbed")
    # The host page itself (another origin than the widget) forges messages.
    page.evaluate(
        """id => {
        window.postMessage({source: "lba-widget", v: 1, id, type: "submitted", payload: {id: "forged"}}, "*");
        window.postMessage({source: "lba-widget", v: 1, id, type: "close", payload: {}}, "*");
    }""",
        embed,
    )
    # The real iframe, but another embed id, or not the widget's message format.
    frame.evaluate(
        """([origin, id]) => {
        parent.postMessage({source: "lba-widget", v: 1, id: "w999", type: "close", payload: {}}, origin);
        parent.postMessage({source: "other", v: 1, id, type: "close", payload: {}}, origin);
        const real = {source: "lba-widget", v: 1, id, type: "submitted", payload: {id: "real"}};
        parent.postMessage(real, origin);
    }""",
        [servers.fixtures, embed],
    )
    # The last, genuine message is read: the page has processed all the others
    # (the host's own were queued before it, the frame's are delivered in order).
    wait_events(page, "submitted")
    assert [e["detail"]["id"] for e in events(page, "submitted")] == ["real"]
    assert events(page, "close") == []
    assert page.locator(f"{slot(OFFER)} dialog").evaluate("d => d.open")


def test_messages_from_another_origin_in_the_frame_are_ignored(browser: Browser, servers: Servers) -> None:
    # The fixture site's policy would keep the frame from going elsewhere; a
    # partner's page may have none.
    context = browser.new_context(bypass_csp=True)
    context.add_init_script(EVENTS_SCRIPT)
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto(servers.fixtures + "/twice.html")
    wait_events(page, "ready", 2)
    page.locator(f"{slot(OFFER)} button").click()
    frame = form_frame(page)
    embed = frame.evaluate("() => document.body.dataset.lbaEmbed")
    page.evaluate(
        """([url, id]) => {
        addEventListener("message", e => { if (e.data === "elsewhere-done") window.__elsewhere = true; });
        document.querySelector("[data-lba-widget]").shadowRoot.querySelector("iframe").src = url + "#" + id;
    }""",
        [servers.fixtures + "/elsewhere.html", embed],
    )
    # Messages from one window arrive in order: the forged one was read first.
    page.wait_for_function("() => window.__elsewhere")
    assert events(page, "submitted") == []
    context.close()


def test_widget_sets_no_cookie_and_calls_no_third_party(page: Page, servers: Servers) -> None:
    seen: list[tuple[bool, str]] = []

    def record(request: Request) -> None:
        seen.append((request.frame == page.main_frame, request.url))

    page.on("request", record)
    page.goto(servers.site + "/")
    wait_events(page, "ready", 10)
    page.locator(f"{slot(OFFER)} button").click()
    form_frame(page).wait_for_load_state("networkidle")
    widget = origin(servers.widget)
    framed = [url for main, url in seen if not main]
    assert framed and all(origin(url) == widget for url in framed)
    assert {origin(url) for main, url in seen if main} <= {widget, origin(servers.site)}
    assert page.context.cookies() == []


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def test_integration_page_live_preview(page: Page, servers: Servers) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=servers.widget)
    page.goto(servers.widget + "/integration")
    wait_events(page, "ready")
    assert page.locator("#p-stage button").inner_text() == "Je candidate"
    page.get_by_label("Service et cible").select_option("formation")
    assert page.get_by_label("Identifiant").input_value() != ""
    page.get_by_label("Texte du bouton").fill("Une question ?")
    page.wait_for_function(
        "() => (document.querySelector('#p-stage [data-lba-widget]').shadowRoot || {})"
        ".textContent === 'Une question ?'"
    )
    snippet = page.locator("#p-snippet").inner_text()
    assert 'data-lba-widget="rdv" data-formation-id="' in snippet
    assert 'data-label="Une question ?"' in snippet
    assert f'<script async src="{servers.widget}/widget/v1/loader.js"' in snippet
    page.get_by_role("button", name="Copier le code").click()
    page.wait_for_function("() => document.querySelector('#preview .copied').textContent !== ''")
    assert page.evaluate("() => navigator.clipboard.readText()") == snippet
    page.get_by_label("Identifiant").fill("INCONNU-1")
    wait_events(page, "unavailable")
    assert "lba:unavailable" in page.locator("#p-log").inner_text()
    assert page.locator("#p-stage button").count() == 0


ADD = """([ref, mode]) => {
    const el = document.createElement("div");
    el.dataset.lbaWidget = "candidature";
    el.dataset.offerId = ref;
    if (mode) el.dataset.mode = mode;
    document.getElementById("slot").append(el);
}"""


def seen(page: Page) -> list[tuple[str, str]]:
    """The page's lba:* events so far, as (type, placeholder's id)."""
    return [(e["type"], e["ref"]) for e in events(page)]


def slot_buttons(page: Page) -> list[str | None]:
    """The accessible names of the widget buttons in #slot, in order."""
    return [
        b.get_attribute("aria-label")
        for b in page.locator("#slot [data-lba-widget] button[part=button]").element_handles()
    ]


def test_single_page_app_re_renders_removes_and_adds_back(page: Page, servers: Servers) -> None:
    page.goto(servers.fixtures + "/empty.html")
    page.evaluate(ADD, [OFFER, ""])
    wait_events(page, "ready")
    assert slot_buttons(page) == ["Je candidate : Apprenti boulanger (H/F) – CAP Boulanger"]

    # The framework re-renders the same element with another offer.
    page.evaluate(f"() => document.querySelector('#slot {slot(OFFER)}').dataset.offerId = '{OTHER_OFFER}'")
    wait_events(page, "ready", 2)
    assert slot_buttons(page) == ["Je candidate : Apprenti mécanicien automobile (H/F)"]
    page.locator(f"#slot {slot(OTHER_OFFER)} button").click()
    frame = form_frame(page)
    assert f"offer_id={OTHER_OFFER}&" in frame.url
    # Escape goes where the focus is: wait until the form took it (the modal moves it in).
    frame.wait_for_function("() => document.activeElement.id === 'last_name'")
    page.keyboard.press("Escape")
    wait_events(page, "close")

    # Then with one that cannot be contacted: no button left, the reason told.
    page.evaluate(
        f"() => document.querySelector('#slot {slot(OTHER_OFFER)}').dataset.offerId = '{CLOSED_OFFER}'"
    )
    wait_events(page, "unavailable")
    assert slot_buttons(page) == []

    # The list is emptied, then the very same element comes back.
    page.evaluate(
        "() => { window.__kept = document.querySelector('#slot [data-lba-widget]'); window.__kept.remove(); }"
    )
    page.evaluate(ADD, [OFFER, ""])  # a new element meanwhile: proves the removal was processed
    wait_events(page, "ready", 3)
    page.evaluate(
        "ref => { __kept.dataset.offerId = ref; document.getElementById('slot').append(__kept); }",
        OTHER_OFFER,
    )
    wait_events(page, "ready", 4)
    assert slot_buttons(page) == [
        "Je candidate : Apprenti boulanger (H/F) – CAP Boulanger",
        "Je candidate : Apprenti mécanicien automobile (H/F)",
    ]
    # A move (removed and added back in one go) is not a new placeholder.
    page.evaluate(
        "() => { const slot = document.getElementById('slot'); slot.append(slot.firstElementChild); }"
    )
    page.evaluate(ADD, [UNKNOWN_OFFER, ""])
    wait_events(page, "unavailable", 2)
    assert seen(page) == [
        ("ready", OFFER),
        ("ready", OTHER_OFFER),
        ("open", OTHER_OFFER),
        ("close", OTHER_OFFER),
        ("unavailable", CLOSED_OFFER),
        ("ready", OFFER),
        ("ready", OTHER_OFFER),
        ("unavailable", UNKNOWN_OFFER),
    ]
    assert len(slot_buttons(page)) == 2
    assert [e["detail"]["target"] for e in events(page, "ready")] == [
        f"offer:{OFFER}",
        f"offer:{OTHER_OFFER}",
        f"offer:{OFFER}",
        f"offer:{OTHER_OFFER}",
    ]
    assert page.errors == []  # type: ignore[attr-defined]


def test_removed_placeholders_and_their_frames_are_forgotten(page: Page, servers: Servers) -> None:
    page.goto(servers.fixtures + "/empty.html")
    # The button first: an inline frame above it would move it as the form reports
    # its height, and a click could land where the button was.
    page.evaluate(ADD, [OTHER_OFFER, ""])
    page.evaluate(ADD, [OFFER, "inline"])
    wait_events(page, "ready", 2)  # the inline form's page has loaded and said so
    page.locator(f"{slot(OTHER_OFFER)} button").click()
    form_frame(page, slot(OTHER_OFFER)).wait_for_function("() => document.activeElement.id === 'last_name'")
    assert page.locator("[data-lba-widget] iframe").count() == 2
    page.evaluate(
        """() => {
        window.__gone = [...document.querySelectorAll("#slot [data-lba-widget]")].map(el => new WeakRef(el));
        document.getElementById("slot").replaceChildren();
    }"""
    )
    assert page.locator("iframe").count() == 0
    # Chromium itself keeps the last clicked node until the next click.
    page.locator("h1").click()
    # Nothing in the widget holds on to the removed placeholders (their frames
    # registered for messages included): the garbage collector takes them.
    collected = page.evaluate(
        """async () => {
        for (let i = 0; i < 50 && window.__gone.some(ref => ref.deref()); i++) {
            await new Promise(done => setTimeout(done, 100));
            gc();
        }
        return window.__gone.map(ref => !ref.deref());
    }"""
    )
    assert collected == [True, True]
    assert page.errors == []  # type: ignore[attr-defined]


def test_ids_are_trimmed(page: Page, servers: Servers) -> None:
    page.goto(servers.fixtures + "/empty.html")
    page.evaluate(ADD, [f"  {OFFER}\n ", ""])
    [ready] = wait_events(page, "ready")
    assert ready["detail"]["target"] == f"offer:{OFFER}"
    page.locator("#slot [data-lba-widget] button").click()
    assert f"offer_id={OFFER}&caller=fixture" in form_frame(page).url


def test_dom_changes_are_not_answered_by_searching_the_whole_page(page: Page, servers: Servers) -> None:
    page.goto(servers.fixtures + "/empty.html")
    page.evaluate(
        """() => {
        window.__searches = 0;
        const search = Document.prototype.querySelectorAll;
        Document.prototype.querySelectorAll = function (selector) {
            if (String(selector).includes("data-lba-widget")) window.__searches++;
            return search.call(this, selector);
        };
    }"""
    )
    for n in range(5):  # five separate batches of changes that are not placeholders
        page.evaluate(
            """n => {
            const p = document.createElement("p");
            p.textContent = "Résultat " + n;
            p.dataset.offerId = "not-a-placeholder";
            document.querySelector("main").append(p);
            document.querySelector("h1").title = "changed " + n;
        }""",
            n,
        )
    page.evaluate(ADD, [OFFER, ""])
    wait_events(page, "ready")  # every batch before it has been handled
    assert page.evaluate("() => window.__searches") == 0
    # The explicit API still looks at the whole page.
    page.evaluate("() => LBAWidget.scan()")
    assert page.evaluate("() => window.__searches") == 1
