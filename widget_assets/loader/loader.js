// The widget loader (SPEC §3), served at /widget/v1/loader.js by
// widget_server/widget.py, which compacts it (widget_server/minify.py: whole-
// line comments, plain quotes, no regular-expression literals) and writes in
// the service's URLs: partners never edit their snippet.
// It finds the placeholders, asks for their eligibility in one request and
// draws the buttons. The modal and iframe code (widget.js, content-hashed and
// cached for good) is fetched when a button is about to be used, or at once
// for an inline form. Written compact on purpose: the served file must stay
// under 2 KB gzipped.
// One global, window.LBAWidget; everything else lives in this closure.
((w, d) => {
// A second copy of the loader on the page does nothing.
if (w.LBAWidget) return;
var B = "__LBA_BASE__", O = "__LBA_ORIGIN__", CHUNK = "__LBA_CHUNK__";
var me = d.currentScript, S = new WeakMap, sheets = {}, chunk;
var I = {
  B: B, O: O, S: S, E: E, fire: fire, root: root,
  caller: me && me.getAttribute("data-caller") || "direct",
  labels: {candidature: "Je candidate", rdv: "Contacter l'établissement"}
};
var CSS = "button{all:initial;cursor:pointer;font:700 1rem/1.25 system-ui,sans-serif;padding:.75em 1.3em;border-radius:.4em;background:#1a4fa0;color:#fff}" +
  "button:hover{filter:brightness(.88)}button:focus-visible{outline:3px solid #ffbf47;outline-offset:2px}";

function E(tag, props, parent) {
  var e = Object.assign(d.createElement(tag), props);
  parent && parent.append(e);
  return e;
}

function fire(el, type, detail) {
  el.dispatchEvent(new CustomEvent("lba:" + type, {bubbles: !0, detail: Object.assign({target: S.get(el).t}, detail)}));
}

// What a placeholder asks for: k = form kind, t = target reference, q = form
// query; later c = checked, x = eligibility, r = shadow root, b = button, d = dialog.
function info(el) {
  var a = el.dataset, k = a.lbaWidget, v = a.formationId, t = "formation", p = "formation_id", s = S.get(el);
  if (s) return s;
  if (k == "candidature") {
    if (v = a.offerId) t = "offer", p = "offer_id";
    else v = a.siret, t = "company", p = "siret";
  } else if (k != "rdv") v = 0;
  S.set(el, s = v ? {k: k, t: t + ":" + v, q: p + "=" + encodeURIComponent(v)} : {});
  return s;
}

// Our styles and markup live in the placeholder's shadow root: host CSS can't
// reach in (except ::part(button)), ours can't leak out, and a fallback link
// left inside the placeholder disappears once the widget takes over.
// Constructed style sheets are not blocked by a host page's CSP.
function root(el, s, css) {
  var r = s.r;
  if (!r) {
    try { r = el.attachShadow({mode: "open"}) }
    catch (e) { r = E("span", 0, el).attachShadow({mode: "open"}) }
    s.r = r;
  }
  css = css || CSS;
  // Each style sheet once per root, the flag kept on the root itself.
  if (!r[css]) {
    r[css] = 1;
    if (r.adoptedStyleSheets) {
      sheets[css] || (sheets[css] = new CSSStyleSheet).replaceSync(css);
      r.adoptedStyleSheets = r.adoptedStyleSheets.concat(sheets[css]);
    } else E("style", {textContent: css}, r);
  }
  return r;
}

// widget.js hands its functions over through LBAWidget._ once it has run.
// A failed load is forgotten (the next try loads again) and never left
// unhandled when it was only a prefetch.
function load() {
  return chunk || (chunk = new Promise((ok, ko) => {
    w.LBAWidget._ = f => ok(f(I));
    E("script", {src: CHUNK, onerror: () => { chunk = 0; ko(Error("widget.js")) }}, d.head);
  }), chunk.catch(Boolean), chunk);
}

function use(el, f) {
  load().then(f, e => fire(el, "error", {reason: "network", message: e.message}));
}

// `back`: where focus returns on close (our button; otherwise the browser's
// own choice, the element focused before opening).
function open(el, back) {
  el = el && el.closest && el.closest("[data-lba-widget]");
  if (!el || !info(el).t) return !1;
  use(el, c => c.open(el, back));
  return !0;
}

function scan() {
  var todo = [], ts = [], jobs = [];
  d.querySelectorAll("[data-lba-widget]").forEach(el => {
    var s = info(el);
    if (s.c) return;
    s.c = 1;
    if (!s.t) return fire(el, "error", {reason: "invalid_placeholder"});
    todo.push(el);
    ts.indexOf(s.t) < 0 && ts.push(s.t);
  });
  // One request per scan; the API takes at most 100 targets at a time.
  for (var i = 0; i < ts.length; i += 100) jobs.push(ask(ts.slice(i, i + 100), todo));
  return Promise.all(jobs);
}

function ask(ts, els) {
  var each = f => els.forEach(el => f(el, S.get(el)));
  return fetch(B + "/api/v1/eligibility?" + ts.map(t => "target=" + encodeURIComponent(t)).join("&"), {credentials: "omit"})
    .then(r => r.json().then(j => {
      if (r.ok) return j.results.forEach(x => each((el, s) => s.t == x.target && show(el, s, x)));
      // A malformed target (say, a SIRET with a wrong key) must not take the
      // others down: report it and ask again without it.
      var bad = (j.errors || []).map(e => ts[+e.field.slice(7, -1)]);
      if (r.status != 400 || !bad.length) throw Error(j.detail || r.status);
      each((el, s) => bad.indexOf(s.t) < 0 || (s.x = 1, fire(el, "error", {reason: "invalid_target"})));
      ts = ts.filter(t => bad.indexOf(t) < 0);
      return ts.length && ask(ts, els);
    }))
    .catch(e => each((el, s) => s.x || ts.indexOf(s.t) < 0 || fire(el, "error", {reason: "network", message: e.message})));
}

function show(el, s, x) {
  var r = root(el, s), a = el.dataset, label = a.label || I.labels[s.k], b;
  s.x = x;
  if (!x.eligible) return fire(el, "unavailable", {reason: x.reason});
  if (a.mode == "inline") return use(el, c => c.inline(el, s));
  b = s.b = E("button", {type: "button", textContent: label, onclick: () => open(el, b)}, r);
  b.setAttribute("part", "button");
  x.name && b.setAttribute("aria-label", label + " : " + x.name);
  a.color && (b.style.background = a.color);
  // Fetch the modal code as soon as the button is about to be used.
  b.onpointerenter = b.onfocus = load;
  fire(el, "ready", {name: x.name});
}

w.LBAWidget = {v: 1, scan: scan, open: open};
// In <head>, wait for the whole document so that a static page costs one request.
function start() {
  scan();
  new MutationObserver(scan).observe(d.documentElement, {childList: !0, subtree: !0});
}
d.readyState == "loading" ? d.addEventListener("DOMContentLoaded", start) : start();
})(window, document);
