// Form pages, progressive enhancement only: everything works without it.
(function () {
  "use strict";
  var summary = document.getElementById("error-summary") || document.getElementById("sent");
  if (summary) summary.focus();
  var form = document.querySelector("form[method=post]");
  var file = document.getElementById("cv");
  if (!form || !file) return;
  var max = parseInt(file.getAttribute("data-max-bytes"), 10);
  var ok = new RegExp("\\.(pdf|docx)$", "i");
  function problem() {
    var f = file.files && file.files[0];
    if (!f) return "";
    if (!ok.test(f.name)) return "Ce fichier n'est ni un PDF ni un document Word (.docx).";
    if (max && f.size > max) return "Ce fichier est trop lourd : " + Math.round(max / 1048576) + " Mo au maximum.";
    return "";
  }
  function show(text) {
    var box = file.parentNode, id = "cv-error", el = document.getElementById(id);
    if (!text) {
      if (el) el.remove();
      box.classList.remove("has-error");
      file.removeAttribute("aria-invalid");
      return;
    }
    if (!el) {
      el = document.createElement("span");
      el.id = id;
      el.className = "error-message";
      box.insertBefore(el, file);
      file.setAttribute("aria-describedby", "cv-hint " + id);
    }
    el.textContent = text;
    box.classList.add("has-error");
    file.setAttribute("aria-invalid", "true");
  }
  file.addEventListener("change", function () { show(problem()); });
  form.addEventListener("submit", function (event) {
    var text = problem();
    if (text) {
      event.preventDefault();
      show(text);
      file.focus();
    }
  });
})();
