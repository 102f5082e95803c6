// Form pages, progressive enhancement only: everything works without it (the
// server checks every field again on submission).
(function () {
  "use strict";
  var summary = document.getElementById("error-summary") || document.getElementById("sent");
  if (summary) summary.focus();
  var form = document.querySelector("form[method=post]");
  if (!form) return;

  // An error next to a field, as the server writes it: after the hint, before the input.
  function show(input, text) {
    var box = input.closest(".field"), id = input.id + "-error", el = document.getElementById(id);
    var hint = document.getElementById(input.id + "-hint"), status = document.getElementById(input.id + "-status");
    var described = [hint && hint.id, text && id, status && status.id].filter(Boolean).join(" ");
    if (described) input.setAttribute("aria-describedby", described);
    else input.removeAttribute("aria-describedby");
    if (!text) {
      if (el) el.remove();
      box.classList.remove("has-error");
      input.removeAttribute("aria-invalid");
      return;
    }
    if (!el) {
      el = document.createElement("span");
      el.id = id;
      el.className = "error-message";
      box.insertBefore(el, input.closest(".file-row") || input);
    }
    el.textContent = "";
    var hidden = document.createElement("span");
    hidden.className = "visually-hidden";
    hidden.textContent = "Erreur : ";
    el.append(hidden, text);
    box.classList.add("has-error");
    input.setAttribute("aria-invalid", "true");
  }

  // Email and phone, checked by the server's own rules as the person leaves them.
  var check = form.getAttribute("data-check");
  ["email", "phone"].forEach(function (name) {
    var input = document.getElementById(name), asked = 0;
    if (!input || !check) return;
    input.addEventListener("change", function () {
      var value = input.value.trim(), mine = ++asked;
      if (!value) return show(input, "");
      fetch(check, { method: "POST", body: new URLSearchParams({ field: name, value: value }) })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (answer) {
          // Only the answer about what the field holds now.
          if (answer && mine === asked) show(input, answer.message);
        })
        .catch(function () {});
    });
  });

  // The CV: a French button and the file's name instead of the browser's own
  // words; the native input stays (visually hidden), labelled and focusable.
  var file = document.getElementById("cv");
  if (!file) return;
  var status = document.getElementById("cv-status"), button = form.querySelector("label.file-button");
  var kept = status.getAttribute("data-kept");
  var max = parseInt(file.getAttribute("data-max-bytes"), 10);
  var ok = new RegExp("\\.(pdf|docx)$", "i");
  form.classList.add("files-enhanced");
  function problem() {
    var f = file.files && file.files[0];
    if (!f) return "";
    if (!ok.test(f.name)) return "Ce fichier n'est ni un PDF ni un document Word (.docx).";
    if (max && f.size > max) return "Ce fichier est trop lourd : " + Math.round(max / 1048576) + " Mo au maximum.";
    return "";
  }
  function describe() {
    var f = file.files && file.files[0];
    if (f) {
      status.textContent = "Fichier choisi : ";
      status.appendChild(document.createElement("strong")).textContent = f.name;
    } else if (!kept) {
      status.textContent = "Aucun fichier choisi";
    }
    button.textContent = f || kept ? "Changer de fichier" : "Choisir mon CV";
  }
  describe();
  file.addEventListener("change", function () {
    describe();
    show(file, problem());
  });
  form.addEventListener("submit", function (event) {
    var text = problem();
    if (text) {
      event.preventDefault();
      show(file, text);
      file.focus();
    }
  });
})();
