// Form-page side of the widget protocol (SPEC §3): runs only inside the
// widget's iframe, i.e. when framed and the page names its embed id and the
// host's origin. Messages go to that explicit origin, never "*", and only
// messages from it, from the parent window, for this embed id, are read.
// Minified at start-up (widget_server/minifier.py).
(function () {
  "use strict";
  var body = document.body, doc = document.documentElement;
  var id = body && body.getAttribute("data-lba-embed");
  var origin = body && body.getAttribute("data-lba-origin");
  if (window.parent === window || !id || !origin) return;
  var modal = false, height = 0;

  function post(type, payload) {
    window.parent.postMessage({ source: "lba-widget", v: 1, id: id, type: type, payload: payload || {} }, origin);
  }

  // The host sizes the iframe to the page, so the page itself never scrolls
  // (no inner scrollbar, hence no width change feeding back into the height).
  doc.style.overflow = "hidden";
  // For the modal's bar: the page's title without the operator's name, and that name.
  var operator = document.querySelector("meta[name=application-name]");
  operator = operator ? operator.getAttribute("content") : "";
  var title = document.title, suffix = " – " + operator;
  if (operator && title.slice(-suffix.length) === suffix) title = title.slice(0, -suffix.length);
  post("ready", { title: title, operator: operator });

  // The <html> height does not depend on the iframe height (no vh units in
  // form.css), and only changes of 1px or more are sent: no resize loop.
  new ResizeObserver(function () {
    var h = Math.ceil(doc.getBoundingClientRect().height);
    if (Math.abs(h - height) >= 1) {
      height = h;
      post("resize", { height: h });
    }
  }).observe(doc);

  var submitted = body.getAttribute("data-lba-submitted");
  if (submitted) post("submitted", { id: submitted });

  // In a modal, focus is inside this iframe, so the host's <dialog> never sees ESC.
  document.addEventListener("keydown", function (event) {
    if (modal && event.key === "Escape" && !event.defaultPrevented) post("close");
  });

  function focusFirst() {
    var target = document.querySelector("#error-summary, [data-lba-submitted] #sent") ||
      document.querySelector("form input:not([type=hidden]):not([tabindex='-1']), form textarea, form select") ||
      document.querySelector("h1");
    if (!target) return;
    if (target.tabIndex < 0 && !target.hasAttribute("tabindex")) target.setAttribute("tabindex", "-1");
    target.focus();
  }

  window.addEventListener("message", function (event) {
    var data = event.data;
    if (event.origin !== origin || event.source !== window.parent || !data ||
        data.source !== "lba-widget" || data.id !== id) return;
    if (data.type === "init") {
      var payload = data.payload || {};
      modal = !!payload.modal;
      if (payload.focus) focusFirst();
    } else if (data.type === "focus") {
      focusFirst();
    }
  });
})();
