// The modal and inline forms of the widget, fetched by the loader on first
// use (content-hashed, cached for good) and minified at start-up like every
// script of widget_assets/ (widget_server/minifier.py). The loader hands it
// its internals through this script's own element (document.currentScript),
// never through a global: the page keeps one global, LBAWidget {open, scan}.
// Host <-> iframe messages (SPEC §3): {source: "lba-widget", v: 1, id, type,
// payload}, posted to the service's origin only; a message is read only from
// that origin, from the iframe of its own embed id.
((script) => {
  script?.lbaStart?.((loader) => {
    var ORIGIN = new URL(loader.base).origin;
    // The modal: a thin bar that stays on top (who runs the service, the form
    // page's title, the one "Fermer"), then the form's iframe. The dialog
    // scrolls; its scroll-padding keeps whatever the form focuses or links to
    // (the error summary, a field) from sitting under the bar.
    var CSS = "dialog{box-sizing:border-box;width:min(42rem,100% - 2rem);max-width:none;max-height:calc(100% - 2rem);padding:0;border:0;border-radius:.5rem;overflow:auto;overscroll-behavior:contain;scroll-padding-top:4.5rem;background:#fff;color:#1e1e1e;font:1rem/1.3 system-ui,sans-serif}" +
      "dialog::backdrop{background:#000a}" +
      ".h{position:sticky;top:0;display:flex;align-items:center;gap:.75rem;padding:.35rem .5rem .35rem 1rem;background:#fff;border-bottom:1px solid #ccc}" +
      ".t{flex:1;min-width:0;margin:0}.t span{display:block;overflow:hidden;white-space:nowrap;text-overflow:ellipsis}.o{font-size:.8rem;color:#555}.p{font-weight:700}" +
      ".h button{background:#fff;color:#1a4fa0;border:2px solid;padding:.6em 1em}" +
      "iframe{display:block;width:100%;height:34rem;border:0;background:#fff}" +
      "@media(max-width:40rem){dialog{width:100%;height:100%;max-height:none;margin:0;border-radius:0}}";
    // embed id -> {id, placeholder, state, iframe, dialog}: the live frames.
    // An entry goes when its dialog closes or its placeholder is forgotten
    // (removed from the page, or given another target).
    var frames = new Map();
    var count = 0;

    // The form page in an iframe, with a fresh embed id so that several
    // widgets on a page never read each other's messages.
    function frame(placeholder, state, parent, dialog) {
      var id = "w" + ++count + Math.random().toString(36).slice(2, 8), name = state.answer?.name;
      var iframe = loader.element("iframe", {
        title: "Formulaire « " + loader.labels[state.kind] + " »" + (name ? " : " + name : ""),
        src: loader.base + "/widget/v1/" + state.kind + "?" + state.query +
          "&caller=" + encodeURIComponent(loader.caller) +
          "&embed=" + id + "&origin=" + encodeURIComponent(location.origin)
      }, parent);
      var entry = {id: id, placeholder: placeholder, state: state, iframe: iframe, dialog: dialog};
      frames.set(id, entry);
      return entry;
    }

    function send(entry, type, payload) {
      entry.iframe.contentWindow.postMessage({source: "lba-widget", v: 1, id: entry.id, type: type, payload: payload}, ORIGIN);
    }

    // The dialog and its form's frame, built hidden when a pointer comes over
    // the button (the form's page loads while the hand moves), or on the
    // click. One unopened dialog at a time: the one of the last button
    // pointed, and none older than five minutes (the target may have changed
    // since: the click then loads the form again).
    function prepare(placeholder) {
      var state = loader.states.get(placeholder), dialog, entry, bar, heading, operator, title;
      if (!state) return;
      if (state.modal?.dialog.open || Date.now() - state.modal?.at < 3e5) return state.modal;
      frames.forEach((other) => {
        if (other.dialog && !other.dialog.open) drop(other);
      });
      dialog = loader.element("dialog", null, loader.root(placeholder, CSS));
      bar = loader.element("div", {className: "h"}, dialog);
      heading = loader.element("p", {className: "t"}, bar);
      operator = loader.element("span", {className: "o"}, heading);
      title = loader.element("span", {className: "p", textContent: loader.labels[state.kind] + (state.answer?.name ? " – " + state.answer.name : "")}, heading);
      loader.element("button", {type: "button", textContent: "Fermer", onclick: () => dialog.close()}, bar);
      entry = state.modal = frame(placeholder, state, dialog, dialog);
      entry.bar = {operator: operator, title: title};
      entry.at = Date.now();
      dialog.setAttribute("aria-label", entry.iframe.title);
      dialog.addEventListener("close", () => {
        drop(entry);
        entry.back?.focus();
        loader.fire(placeholder, "close");
      });
      return entry;
    }

    function drop(entry) {
      frames.delete(entry.id);
      entry.dialog.remove();
      entry.state.modal = null;
    }

    function open(placeholder, back) {
      var entry = prepare(placeholder);
      if (!entry || entry.dialog.open) return;
      entry.back = back;
      entry.dialog.showModal();
      // A form that loaded while hidden takes the focus now.
      if (entry.ready) {
        entry.iframe.focus();
        send(entry, "focus");
      }
      loader.fire(placeholder, "open");
    }

    function inline(placeholder, state) {
      frame(placeholder, state, loader.root(placeholder, CSS));
    }

    // The placeholder left the page or changed target: its frames and dialog
    // go (quietly: no lba:close for a form the page itself took away).
    function forget(placeholder) {
      frames.forEach((entry, id) => {
        if (entry.placeholder != placeholder) return;
        frames.delete(id);
        (entry.dialog || entry.iframe).remove();
      });
    }

    addEventListener("message", (event) => {
      var message = event.data, entry = frames.get(message?.id), payload = message?.payload || {}, focus;
      if (event.origin != ORIGIN || !entry || message.source != "lba-widget" || event.source != entry.iframe.contentWindow) return;
      if (message.type == "ready") {
        // In the modal, keyboard users land in the form. An inline form takes
        // focus only after a page change inside it, never on the host's load.
        focus = entry.dialog ? entry.dialog.open : entry.iframe.getRootNode().activeElement == entry.iframe;
        if (focus) entry.iframe.focus();
        // The bar names the page the form shows now, and who runs the service.
        if (entry.bar) {
          entry.bar.operator.textContent = String(payload.operator || "");
          if (payload.title) entry.bar.title.textContent = String(payload.title);
        }
        send(entry, "init", {modal: !!entry.dialog, focus: focus});
        if (!entry.ready) {
          entry.ready = true;
          if (!entry.dialog) loader.fire(entry.placeholder, "ready", {name: entry.state.answer.name});
        }
      } else if (message.type == "resize") {
        // The iframe is as tall as its page: no inner scrollbar.
        entry.iframe.style.height = +payload.height + "px";
      } else if (message.type == "submitted") {
        loader.fire(entry.placeholder, "submitted", {id: payload.id});
      } else if (message.type == "close" && entry.dialog) {
        entry.dialog.close();
      }
    });

    return {open: open, prepare: prepare, inline: inline, forget: forget};
  });
})(document.currentScript);
