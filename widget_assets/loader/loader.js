// The widget loader (SPEC §3), served at /widget/v1/loader.js by
// widget_server/widget.py, which minifies it (widget_server/minifier.py renames
// the local names and drops these comments) and writes in the service's URLs:
// partners never edit their snippet. Budget: 2 KB gzipped once minified
// (tests/test_widget.py measures it).
//
// It finds the placeholders, asks for their eligibility in one request and
// draws the buttons. The modal and iframe code (widget.js, content-hashed and
// cached for good) is fetched as soon as a button is shown, or at once for an
// inline form; a pointer over a button has it load that button's form, hidden,
// so that a click mostly shows what is already there. Single-page apps are followed: placeholders added,
// removed, or whose attributes change are picked up from the mutation
// records alone, never by searching the whole document again.
//
// One global, window.LBAWidget = {open, scan}; everything else lives in this
// closure.
((window, document) => {
  // A second copy of the loader on the page does nothing.
  if (window.LBAWidget) return;

  var BASE = "__LBA_BASE__", CHUNK = "__LBA_CHUNK__";
  var PLACEHOLDER = "[data-lba-widget]";
  // What makes a placeholder what it is: a change to one of these (and only
  // these) makes the loader read it again.
  var ATTRIBUTES = ["lba-widget", "offer-id", "siret", "formation-id", "mode", "label", "color"].map((name) => "data-" + name);
  // Per form kind, the attributes that may name its target, in order of
  // preference: [target type, attribute]. The form page takes the id under
  // the attribute's name with "_" for "-" (data-offer-id -> offer_id=).
  var TARGETS = {
    candidature: [["offer", "offer-id"], ["company", "siret"]],
    rdv: [["formation", "formation-id"]]
  };
  var BUTTON_CSS = "button{all:initial;cursor:pointer;font:700 1rem/1.25 system-ui,sans-serif;padding:.75em 1.3em;border-radius:.4em;background:#1a4fa0;color:#fff}" +
    "button:hover{filter:brightness(.88)}button:focus-visible{outline:3px solid #ffbf47;outline-offset:2px}";

  var script = document.currentScript;
  // placeholder -> what it asks for: {kind, target, query, key}; later
  // `answer` (its eligibility), `button`, `modal` (widget.js's). Weak: a placeholder
  // dropped by the page is never kept alive by the widget.
  var states = new WeakMap();
  // placeholder -> its shadow root, kept across changes of target (a shadow
  // root cannot be attached twice).
  var roots = new WeakMap();
  var sheets = {};
  // widget.js: the promise of its functions, and the functions once loaded.
  var chunk, widget;

  // What widget.js gets from the loader.
  var internals = {
    base: BASE,
    states: states,
    element: element,
    fire: fire,
    root: root,
    caller: script?.dataset.caller || "direct",
    labels: {candidature: "Je candidate", rdv: "Contacter l'établissement"}
  };

  function element(tag, properties, parent) {
    var created = Object.assign(document.createElement(tag), properties);
    parent?.append(created);
    return created;
  }

  function fire(placeholder, type, detail) {
    placeholder.dispatchEvent(new CustomEvent("lba:" + type, {
      bubbles: true,
      detail: {target: states.get(placeholder)?.target, ...detail}
    }));
  }

  // What a placeholder asks for, from its attributes. Ids are trimmed: a
  // stray space in a partner's template must not cost the button.
  function describe(placeholder) {
    var kind = placeholder.dataset.lbaWidget;
    var description = {kind: kind, key: ATTRIBUTES.map((name) => placeholder.getAttribute(name)).join("\n")};
    for (var [type, attribute] of TARGETS[kind] || []) {
      var id = placeholder.getAttribute("data-" + attribute)?.trim();
      if (id) {
        return Object.assign(description, {
          target: type + ":" + id,
          query: attribute.replace("-", "_") + "=" + encodeURIComponent(id)
        });
      }
    }
    return description;
  }

  // Our styles and markup live in the placeholder's shadow root: host CSS
  // can't reach in (except ::part(button)), ours can't leak out, and a
  // fallback link left inside the placeholder disappears once the widget
  // takes over. Constructed style sheets are not blocked by a host page's CSP.
  function root(placeholder, css = BUTTON_CSS) {
    var shadow = roots.get(placeholder);
    if (!shadow) {
      try {
        shadow = placeholder.attachShadow({mode: "open"});
      } catch (error) {
        // The host element cannot have a shadow root (or already has one).
        shadow = element("span", null, placeholder).attachShadow({mode: "open"});
      }
      roots.set(placeholder, shadow);
    }
    // One constructed sheet per text, adopted once per root.
    if (!sheets[css]) (sheets[css] = new CSSStyleSheet()).replaceSync(css);
    if (!shadow.adoptedStyleSheets.includes(sheets[css])) {
      shadow.adoptedStyleSheets = shadow.adoptedStyleSheets.concat(sheets[css]);
    }
    return shadow;
  }

  // widget.js hands its functions over through its own script element
  // (document.currentScript while it runs), never through a global. A failed
  // load is forgotten (the next try loads again) and never left unhandled
  // when it was only a prefetch.
  function load() {
    if (!chunk) {
      chunk = new Promise((resolve, reject) => {
        var tag = element("script", {
          src: CHUNK,
          onerror: () => {
            chunk = null;
            reject(Error("widget.js"));
          }
        });
        tag.lbaStart = (start) => {
          resolve(widget = start(internals));
        };
        document.head.append(tag);
      });
      chunk.catch(Boolean);
    }
    return chunk;
  }

  function use(placeholder, then) {
    load().then(then, (error) => {
      fire(placeholder, "error", {reason: "network", message: error.message});
    });
  }

  // `back`: where focus returns on close (our button; otherwise the
  // browser's own choice, the element focused before opening).
  function open(placeholder, back) {
    placeholder = placeholder?.closest?.(PLACEHOLDER);
    if (!placeholder) return false;
    // A placeholder the observer has not seen yet (added in this very task).
    if (!states.has(placeholder)) ask(check([placeholder]));
    if (!states.get(placeholder).target) return false;
    use(placeholder, (loaded) => {
      loaded.open(placeholder, back);
    });
    return true;
  }

  // A placeholder that left the page, or whose target changed: its button,
  // dialog and frames go, and the widget keeps no reference to it.
  function forget(placeholder) {
    var state = states.get(placeholder);
    states.delete(placeholder);
    state?.button?.remove();
    widget?.forget(placeholder);
  }

  // Brings placeholders in step with their attributes; returns those that
  // need an eligibility answer (new, or with a new target).
  function check(placeholders) {
    var waiting = [];
    placeholders.forEach((placeholder) => {
      var now = describe(placeholder), before = states.get(placeholder);
      if (before && before.key == now.key) return;
      if (before) forget(placeholder);
      states.set(placeholder, now);
      if (!now.target) fire(placeholder, "error", {reason: "invalid_placeholder"});
      else waiting.push(placeholder);
    });
    return waiting;
  }

  function scan() {
    return ask(check(document.querySelectorAll(PLACEHOLDER)));
  }

  // Only what changed is looked at: added and removed subtrees, and the
  // attributes that say what a placeholder is (the only ones observed).
  // The browser delivers the records of a whole task in one call: one
  // eligibility request per batch of changes.
  function changed(records) {
    var seen = new Set();
    records.forEach((record) => {
      if (record.type == "attributes") return seen.add(record.target);
      [...record.addedNodes, ...record.removedNodes].forEach((node) => {
        if (node.querySelectorAll) {
          seen.add(node);
          node.querySelectorAll(PLACEHOLDER).forEach(seen.add, seen);
        }
      });
    });
    // A node removed and added back in the same batch was only moved.
    ask(check(Array.from(seen).filter((node) => {
      var placeholder = node.isConnected && node.matches(PLACEHOLDER);
      if (!placeholder && states.has(node)) forget(node);
      return placeholder;
    })));
  }

  function ask(placeholders) {
    var targets = [...new Set(placeholders.map((placeholder) => states.get(placeholder).target))];
    var waiting = placeholders.map((placeholder) => [placeholder, states.get(placeholder)]);
    var requests = [];
    // The eligibility API's limit per request, written in by the server.
    while (targets.length) requests.push(request(targets.splice(0, __LBA_MAX_TARGETS__), waiting));
    return Promise.all(requests);
  }

  // `waiting`: [placeholder, state] pairs as they were when asked; a
  // placeholder removed or re-targeted meanwhile gets nothing from the answer.
  function request(targets, waiting) {
    function each(then) {
      waiting.forEach((pair) => {
        var state = pair[1];
        if (states.get(pair[0]) == state && targets.includes(state.target)) then(pair[0], state);
      });
    }
    var query = targets.map((target) => {
      return "target=" + encodeURIComponent(target);
    }).join("&");
    return fetch(BASE + "/api/v1/eligibility?" + query, {credentials: "omit"})
      .then((response) => {
        return response.json().then((body) => {
          if (!response.ok) throw Error(body.detail || response.status);
          // One result per target, a malformed one included (invalid_target):
          // it never takes the others down.
          body.results.forEach((answer) => {
            each((placeholder, state) => {
              if (state.target == answer.target) show(placeholder, state, answer);
            });
          });
        });
      })
      .catch((error) => {
        each((placeholder, state) => {
          if (!state.answer) fire(placeholder, "error", {reason: "network", message: error.message});
        });
      });
  }

  function show(placeholder, state, answer) {
    var shadow = root(placeholder), data = placeholder.dataset;
    var label = data.label || internals.labels[state.kind], button;
    state.answer = answer;
    // A malformed target is the page's mistake (lba:error), not the target's
    // state (lba:unavailable).
    if (!answer.eligible) return fire(placeholder, answer.reason == "invalid_target" ? "error" : "unavailable", {reason: answer.reason});
    if (data.mode == "inline") {
      return use(placeholder, (loaded) => {
        if (states.get(placeholder) == state) loaded.inline(placeholder, state);
      });
    }
    button = state.button = element("button", {
      type: "button",
      textContent: label,
      onclick: () => {
        open(placeholder, button);
      },
      // A pointer over the button: the form starts loading, hidden.
      onpointerenter: () => {
        load().then((loaded) => {
          if (states.get(placeholder) == state) loaded.prepare(placeholder);
        }, Boolean);
      },
      // Host pages may style it through ::part(button).
      part: "button",
      ariaLabel: answer.name && label + " : " + answer.name
    }, shadow);
    if (data.color) button.style.background = data.color;
    fire(placeholder, "ready", {name: answer.name});
    // The modal code as soon as a button is shown (cached for good): a click
    // then waits for the form alone.
    load();
  }

  window.LBAWidget = {open: open, scan: scan};

  // In <head>, wait for the whole document so that a static page costs one
  // request.
  function start() {
    scan();
    new MutationObserver(changed).observe(document.documentElement, {
      childList: true,
      subtree: true,
      // Implies `attributes: true`, for these attributes only.
      attributeFilter: ATTRIBUTES
    });
  }
  if (document.readyState == "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})(window, document);
