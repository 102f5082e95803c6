// The playground of /integration: builds the snippet from the form, puts a
// real placeholder on the page (the loader picks it up by itself), says what
// the service answered about the target and lists the lba:* events it
// receives. Minified at start-up (widget_server/minifier.py).
(function () {
  "use strict";
  var form = document.getElementById("preview-form");
  if (!form) return;
  var stage = document.getElementById("p-stage"), snippet = document.getElementById("p-snippet");
  var log = document.getElementById("p-log"), verdict = document.getElementById("p-verdict");
  var kind = form.elements.kind, ref = form.elements.ref, caller = form.elements.caller;
  var callerError = document.getElementById("p-caller-error"), choice = form.elements.choice;
  var ATTRIBUTE = {offer: "data-offer-id", company: "data-siret", formation: "data-formation-id"};
  // The same rule as the server's (widget_server/forms.py): anything else is counted as "direct".
  var CALLER = /^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$/;
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

  // The caller's name as the snippet writes it; an invalid one is said next to the field.
  function callerName() {
    var name = caller.value.trim(), valid = name === "" || CALLER.test(name);
    callerError.hidden = valid;
    if (valid) caller.removeAttribute("aria-invalid");
    else caller.setAttribute("aria-invalid", "true");
    caller.setAttribute("aria-describedby", valid ? "p-caller-hint" : "p-caller-hint p-caller-error");
    return name || "mon-site";
  }

  function render() {
    var list = attributes(), placeholder = document.createElement("div");
    snippet.textContent = '<script async src="' + form.getAttribute("data-loader") + '" data-caller="' +
      quote(callerName()) + '"></script>\n' +
      "<div " + list.map(function (pair) { return pair[0] + '="' + quote(pair[1]) + '"'; }).join(" ") + "></div>";
    list.forEach(function (pair) { placeholder.setAttribute(pair[0], pair[1]); });
    say("En attente de la réponse…");
    // A new element: the loader's observer checks it and draws the button.
    stage.replaceChildren(placeholder);
  }

  function say(text) {
    verdict.textContent = text;
  }

  // The reasons in words, from the page (widget_server/integration.py).
  function reason(code) {
    var text = code && verdict.getAttribute("data-" + code.split("_").join("-"));
    return text ? text + " (" + code + ")" : String(code);
  }

  form.addEventListener("submit", function (event) { event.preventDefault(); render(); });
  form.addEventListener("input", function (event) {
    if (event.target === choice) return;
    clearTimeout(timer);
    timer = setTimeout(render, 400);
  });
  kind.addEventListener("change", function () {
    ref.value = kind.selectedOptions[0].getAttribute("data-example") || "";
    if (choice) choice.value = "";
  });
  if (choice) {
    choice.addEventListener("change", function () {
      if (!choice.value) return;
      var separator = choice.value.indexOf(":");
      kind.value = choice.value.slice(0, separator);
      ref.value = choice.value.slice(separator + 1);
      clearTimeout(timer);
      render();
    });
  }

  stage.addEventListener("lba:ready", function (event) {
    say("Éligible : le bouton s'affiche" + (event.detail.name ? " pour « " + event.detail.name + " »." : "."));
  });
  stage.addEventListener("lba:unavailable", function (event) {
    say("Pas de bouton : " + reason(event.detail.reason) + ". L'emplacement reste vide sur votre page.");
  });
  stage.addEventListener("lba:error", function (event) {
    var text = {invalid_placeholder: "il manque l'identifiant", invalid_target: "cet identifiant est mal formé",
      network: "le service ne répond pas"}[event.detail.reason] || "";
    say("Pas de bouton : " + (text ? text + " (" + event.detail.reason + ")" : event.detail.reason) + ".");
  });

  ["ready", "open", "submitted", "close", "unavailable", "error"].forEach(function (type) {
    stage.addEventListener("lba:" + type, function (event) {
      var item = document.createElement("li");
      item.textContent = "lba:" + type + " " + JSON.stringify(event.detail);
      log.prepend(item);
      while (log.children.length > 8) log.lastElementChild.remove();
    });
  });

  // "Envoyer une demande de test": a fictional candidate's request to the
  // previewed target, sent with a test key (checked first by the service: a
  // live key is never used here), then the emails of the key's test mailbox.
  var trial = document.getElementById("p-try"), trialForm = document.getElementById("p-try-form");
  var keyInput = document.getElementById("p-key"), keyError = document.getElementById("p-key-error");
  var trialStatus = document.getElementById("p-try-status"), mails = document.getElementById("p-try-mails");
  var CANDIDATE = {first_name: "Léa", last_name: "Essai", email: "lea.essai@example.org", phone: "06 12 34 56 78",
    message: "Une demande de test, envoyée depuis la page d'intégration."};
  var polling = 0;

  function keyProblem(text) {
    keyError.textContent = text;
    keyError.hidden = !text;
    if (text) keyInput.setAttribute("aria-invalid", "true");
    else keyInput.removeAttribute("aria-invalid");
    keyInput.setAttribute("aria-describedby", text ? "p-key-hint p-key-error" : "p-key-hint");
    if (text) keyInput.focus();
  }

  function call(method, path, key, body) {
    return fetch(path, {
      method: method,
      credentials: "omit",
      headers: Object.assign({Authorization: "Bearer " + key}, body ? {"Content-Type": "application/json"} : {}),
      body: body ? JSON.stringify(body) : undefined
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (json) {
        return {status: response.status, ok: response.ok, body: json};
      });
    });
  }

  function sampleCv() {
    return fetch(trialForm.getAttribute("data-sample-cv")).then(function (response) {
      return response.blob();
    }).then(function (blob) {
      return new Promise(function (resolve) {
        var reader = new FileReader();
        reader.onload = function () { resolve(reader.result); };
        reader.readAsDataURL(blob);
      });
    });
  }

  function request() {
    var body = Object.assign({}, CANDIDATE), id = ref.value.trim();
    if (kind.value === "formation") {
      return Promise.resolve(["/api/v1/appointment-requests",
        Object.assign(body, {formation_id: id, role: "student", topics: ["places"]})]);
    }
    body[kind.value === "company" ? "siret" : "offer_id"] = id;
    return sampleCv().then(function (cv) {
      return ["/api/v1/applications", Object.assign(body, {cv: cv, cv_filename: "cv-exemple.pdf"})];
    });
  }

  function refused(answer) {
    var errors = (answer.body.errors || []).map(function (error) { return error.message; });
    return "Demande refusée (" + answer.status + ") : " + (answer.body.detail || "") +
      (errors.length ? " " + errors.join(" ") : "");
  }

  function showMails(list) {
    mails.replaceChildren();
    list.slice().reverse().forEach(function (mail) {
      var item = document.createElement("li"), head = document.createElement("p");
      head.textContent = mail.subject + " — à " + mail.to;
      item.append(head);
      var links = (mail.links || []).filter(function (link) { return link.href.indexOf(location.origin) === 0; });
      if (links.length) {
        var list = document.createElement("ul");
        links.forEach(function (link) {
          var entry = document.createElement("li"), anchor = document.createElement("a");
          anchor.href = link.href;
          anchor.target = "_blank";
          anchor.rel = "noopener";
          anchor.textContent = (link.text || link.href) + " (nouvelle fenêtre)";
          entry.append(anchor);
          list.append(entry);
        });
        item.append(list);
      }
      mails.append(item);
    });
  }

  function follow(key, id, tries) {
    call("GET", "/api/v1/test-mailbox?request_id=" + encodeURIComponent(id), key).then(function (answer) {
      var list = answer.ok ? answer.body.messages : [];
      showMails(list);
      // The recruiter's (or CFA's) email and the candidate's acknowledgement.
      if (list.length >= 2 || tries <= 0) {
        trialStatus.textContent = "Demande de test " + id + " : " + list.length +
          " e-mail" + (list.length > 1 ? "s" : "") + " dans la boîte de test. Répondez à la place du recruteur avec un lien ci-dessous.";
        return;
      }
      polling = setTimeout(function () { follow(key, id, tries - 1); }, 1000);
    });
  }

  if (trial) {
    trial.hidden = false;
    trialForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var key = keyInput.value.trim();
      clearTimeout(polling);
      mails.replaceChildren();
      if (!/^lba_test_/.test(key)) {
        keyProblem("Indiquez une clé de test : elle commence par lba_test_.");
        return;
      }
      keyProblem("");
      trialStatus.textContent = "Vérification de la clé…";
      call("GET", "/api/v1/test-mailbox", key).then(function (answer) {
        if (!answer.ok) {
          trialStatus.textContent = "";
          keyProblem(answer.status === 401 ? "Cette clé n'est pas reconnue : vérifiez-la." : (answer.body.detail || "Clé refusée."));
          return;
        }
        trialStatus.textContent = "Envoi de la demande de test…";
        return request().then(function (made) {
          return call("POST", made[0], key, made[1]);
        }).then(function (sent) {
          if (!sent.ok) {
            trialStatus.textContent = refused(sent);
            return;
          }
          trialStatus.textContent = "Demande de test " + sent.body.id + " enregistrée : les e-mails arrivent…";
          follow(key, sent.body.id, 20);
        });
      }).catch(function () {
        trialStatus.textContent = "Le service ne répond pas : réessayez dans un moment.";
      });
    });
  }

  // Every "Copier" button copies the code block it names.
  Array.prototype.forEach.call(document.querySelectorAll("button[data-copy]"), function (button) {
    var block = document.getElementById(button.getAttribute("data-copy"));
    var copied = button.parentNode.querySelector(".copied");
    button.hidden = false;
    button.addEventListener("click", function () {
      var done = function () { copied.textContent = "Copié."; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(block.textContent).then(done, select);
      } else {
        select();
      }
      function select() {
        var range = document.createRange();
        range.selectNodeContents(block);
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        copied.textContent = document.execCommand("copy") ? "Copié." : "Sélectionné : copiez avec Ctrl+C.";
      }
    });
  });
})();
