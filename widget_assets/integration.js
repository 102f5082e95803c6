// The live preview of /integration: builds the snippet from the form, puts a
// real placeholder on the page (the loader picks it up by itself) and lists
// the lba:* events it receives. Minified at start-up (widget_server/minifier.py).
(function () {
  "use strict";
  var form = document.getElementById("preview-form");
  if (!form) return;
  var stage = document.getElementById("p-stage"), snippet = document.getElementById("p-snippet");
  var log = document.getElementById("p-log"), copy = document.getElementById("p-copy");
  var copied = document.getElementById("p-copied"), kind = form.elements.kind, ref = form.elements.ref;
  var ATTRIBUTE = {offer: "data-offer-id", company: "data-siret", formation: "data-formation-id"};
  var timer = 0;

  function quote(value) {
    return value.split("&").join("&amp;").split("\"").join("&quot;").split("<").join("&lt;");
  }

  function attributes() {
    var list = [["data-lba-widget", kind.value === "formation" ? "rdv" : "candidature"],
      [ATTRIBUTE[kind.value], ref.value.trim()]];
    var label = form.elements.label.value.trim(), color = form.elements.color.value.trim();
    if (label) list.push(["data-label", label]);
    if (color) list.push(["data-color", color]);
    if (form.elements.mode.value) list.push(["data-mode", form.elements.mode.value]);
    return list;
  }

  function render() {
    var list = attributes(), placeholder = document.createElement("div");
    snippet.textContent = '<script async src="' + form.getAttribute("data-loader") + '" data-caller="mon-site"></script>\n' +
      "<div " + list.map(function (pair) { return pair[0] + '="' + quote(pair[1]) + '"'; }).join(" ") + "></div>";
    list.forEach(function (pair) { placeholder.setAttribute(pair[0], pair[1]); });
    // A new element: the loader's observer checks it and draws the button.
    stage.replaceChildren(placeholder);
  }

  form.addEventListener("submit", function (event) { event.preventDefault(); render(); });
  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(render, 400);
  });
  kind.addEventListener("change", function () {
    ref.value = kind.selectedOptions[0].getAttribute("data-example") || "";
  });

  ["ready", "open", "submitted", "close", "unavailable", "error"].forEach(function (type) {
    stage.addEventListener("lba:" + type, function (event) {
      var item = document.createElement("li");
      item.textContent = "lba:" + type + " " + JSON.stringify(event.detail);
      log.prepend(item);
      while (log.children.length > 8) log.lastElementChild.remove();
    });
  });

  copy.hidden = false;
  copy.addEventListener("click", function () {
    var text = snippet.textContent;
    var done = function () { copied.textContent = "Code copié."; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, select);
    } else {
      select();
    }
    function select() {
      var range = document.createRange();
      range.selectNodeContents(snippet);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      copied.textContent = document.execCommand("copy") ? "Code copié." : "Code sélectionné : copiez-le avec Ctrl+C.";
    }
  });
})();
