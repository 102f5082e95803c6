// A stand-in for a single-page search: results arrive after the page has
// loaded, each with a widget placeholder the loader has never seen.
(function () {
  "use strict";
  var RESULTS = [
    {kind: "candidature", attr: "data-offer-id", id: "LBA-2026-01084", title: "Commis de cuisine en apprentissage (H/F) – CAP Cuisine", meta: "Hôtel des Tanneurs · Tours (37)"},
    {kind: "rdv", attr: "data-formation-id", id: "032888P011084240560001910842405600019-34172#L01", title: "CAP Cuisine", meta: "CFA Hôtellerie Méditerranée · Montpellier (34)"},
    {kind: "candidature", attr: "data-offer-id", id: "LBA-2026-01070", title: "Apprenti charcutier-traiteur (H/F)", meta: "Charcuterie Maison Gautier · Dijon (21)"},
    {kind: "rdv", attr: "data-formation-id", id: "049332P011126360840001711263608400017-37261#L01", title: "BTS Management en hôtellerie-restauration", meta: "CFA Hôtellerie Val de Loire · Tours (37)"},
    {kind: "candidature", attr: "data-siret", id: "91244402800019", title: "Hôtel des Tanneurs", meta: "Tours (37) · recrute souvent des apprentis", label: "Candidater spontanément"},
    {kind: "candidature", attr: "data-offer-id", id: "LBA-2026-01077", title: "Réceptionniste d'hôtel en alternance (H/F) – BTS MHR", meta: "Hôtel des Tanneurs · Tours (37)"}
  ];
  var list = document.getElementById("results"), more = document.getElementById("more");
  var status = document.getElementById("status"), shown = 0;

  function card(result) {
    var item = document.createElement("li"), title = document.createElement("h2");
    var meta = document.createElement("p"), slot = document.createElement("div");
    item.className = "card";
    title.textContent = result.title;
    meta.className = "meta";
    meta.textContent = result.meta;
    slot.className = "apply";
    slot.setAttribute("data-lba-widget", result.kind);
    slot.setAttribute(result.attr, result.id);
    if (result.label) slot.setAttribute("data-label", result.label);
    item.append(title, meta, slot);
    return item;
  }

  function showNext(count) {
    RESULTS.slice(shown, shown + count).forEach(function (result) { list.append(card(result)); });
    shown = Math.min(shown + count, RESULTS.length);
    status.textContent = shown + " résultats sur " + RESULTS.length + ".";
    more.hidden = shown >= RESULTS.length;
  }

  document.getElementById("search").addEventListener("submit", function (event) {
    event.preventDefault();
    list.replaceChildren();
    shown = 0;
    status.textContent = "Recherche en cours…";
    // As if the results came back from the partner's own API.
    setTimeout(function () { showNext(3); }, 300);
  });
  more.addEventListener("click", function () { showNext(3); });
  document.getElementById("search").requestSubmit();
})();
