// The modal and inline forms of the widget, fetched by the loader on first use
// (content-hashed, cached for good) and handed the loader's internals `I`.
// Host <-> iframe messages (SPEC §3): {source: "lba-widget", v: 1, id, type,
// payload}, posted to the service's origin only; a message is read only from
// that origin, from the iframe of its own embed id.
// Served compacted by widget_server/minify.py: whole-line comments only.
LBAWidget._(I => {
var M = {}, n = 0;
var CSS = "dialog{box-sizing:border-box;width:min(42rem,100% - 2rem);max-width:none;max-height:calc(100% - 2rem);padding:0;border:0;border-radius:.5rem;overflow:auto;overscroll-behavior:contain;background:#fff}" +
  "dialog::backdrop{background:#000a}.h{position:sticky;top:0;display:flex;justify-content:flex-end;padding:.5rem;background:#fff;border-bottom:1px solid #ccc}" +
  ".h button{background:#fff;color:#1a4fa0;border:2px solid;padding:.6em 1em}" +
  "iframe{display:block;width:100%;height:34rem;border:0;background:#fff}" +
  "@media(max-width:40rem){dialog{width:100%;height:100%;max-height:none;margin:0;border-radius:0}}";

// The form page in an iframe, with a fresh embed id so that several widgets
// on a page never read each other's messages.
function frame(el, s, parent, dlg) {
  var id = "w" + ++n + Math.random().toString(36).slice(2, 8), name = s.x && s.x.name;
  var f = I.E("iframe", {
    title: "Formulaire « " + I.labels[s.k] + " »" + (name ? " : " + name : ""),
    src: I.B + "/widget/v1/" + s.k + "?" + s.q + "&caller=" + encodeURIComponent(I.caller) +
      "&embed=" + id + "&origin=" + encodeURIComponent(location.origin)
  }, parent);
  return M[id] = {id: id, el: el, s: s, f: f, d: dlg};
}

function send(x, type, payload) {
  x.f.contentWindow.postMessage({source: "lba-widget", v: 1, id: x.id, type: type, payload: payload}, I.O);
}

function open(el, back) {
  var s = I.S.get(el), dlg, x;
  if (s.d) return;
  dlg = s.d = I.E("dialog", 0, I.root(el, s, CSS));
  I.E("button", {type: "button", textContent: "Fermer", onclick: () => dlg.close()}, I.E("div", {className: "h"}, dlg));
  x = frame(el, s, dlg, dlg);
  dlg.setAttribute("aria-label", x.f.title);
  dlg.addEventListener("close", () => {
    delete M[x.id];
    dlg.remove();
    s.d = 0;
    back && back.focus();
    I.fire(el, "close");
  });
  dlg.showModal();
  I.fire(el, "open");
}

addEventListener("message", e => {
  var m = e.data, x = m && M[m.id], p = m && m.payload || {}, focus;
  if (e.origin != I.O || !x || m.source != "lba-widget" || e.source != x.f.contentWindow) return;
  if (m.type == "ready") {
    // In the modal, keyboard users land in the form. An inline form takes
    // focus only after a page change inside it, never on the host's load.
    focus = !!x.d || x.s.r.activeElement == x.f;
    focus && x.f.focus();
    send(x, "init", {modal: !!x.d, focus: focus});
    x.d || x.ready || (x.ready = 1, I.fire(x.el, "ready", {name: x.s.x.name}));
  } else if (m.type == "resize") {
    // The iframe is as tall as its page: no inner scrollbar.
    x.f.style.height = +p.height + "px";
  } else if (m.type == "submitted") {
    I.fire(x.el, "submitted", {id: p.id});
  } else if (m.type == "close" && x.d) {
    x.d.close();
  }
});

return {open: open, inline: (el, s) => frame(el, s, I.root(el, s, CSS))};
});
