// The partner's own script: it listens to the widget's events, which bubble up
// from each placeholder, to thank the candidate and to explain empty slots.
(function () {
  "use strict";
  var notice = document.getElementById("notice");

  document.addEventListener("lba:submitted", function (event) {
    if (notice) notice.textContent = "Merci ! Votre demande est bien partie (référence " + event.detail.id + ").";
  });

  document.addEventListener("lba:unavailable", function (event) {
    var note = document.createElement("p");
    note.className = "unavailable";
    note.textContent = event.detail.reason === "closed"
      ? "Cette offre n'accepte plus de candidatures."
      : "Pas de contact en ligne pour le moment.";
    event.target.after(note);
  });
})();
