/*
 * Embeddable feedback widget. Put it under an assistant's answer on any site:
 *
 *   <script src="https://YOUR-HOST/static/widget/feedback.js" defer
 *           data-endpoint="https://YOUR-HOST" data-key="tl_in_..." data-assistant="shop"></script>
 *   <div data-trainloop-request-id="req-123" data-feedback-token="..."></div>
 *
 * The key must be a publishable *ingest* key whose allowed origins include this page's origin
 * (`manage.py create_api_key --scope ingest --origin https://your-site`). Anyone can copy such a key
 * from the page, so the server accepts its feedback only with the interaction's feedback token: your
 * server gets it when it logs the interaction (POST /api/v1/interactions, or the chat gateway's
 * `feedback_token`) and writes it into data-feedback-token next to the answer it shows. Every POST
 * carries an Idempotency-Key made of the request id and the kind of feedback, so a double click or a
 * retry stores the feedback once. With data-ask="auto" the widget first asks the server whether to
 * prompt (sampling rate, never twice). Pages that add answers later call
 * TrainloopFeedback.attach(node, requestId, token).
 *
 * It asks "Was this response helpful?" with Yes and No buttons; after a No it asks how the answer could
 * be improved. Options, on the script tag (for every widget) or on the answer's node (for that one):
 *   data-stars                      also ask for a 1-5 rating
 *   data-categories="all"           also ask for 1-5 ratings of accuracy, helpfulness, tone, relevance
 *                                   and completeness (or name some: data-categories="accuracy,tone")
 *   data-text-NAME="..."            translate a string (the names are the keys of STRINGS below:
 *                                   data-text-yes="Ja", data-text-improve-label="Was fehlt?")
 *   data-stylesheet="none" | URL    no default styling, or another stylesheet than feedback.css
 * The same from script: window.TrainloopFeedbackOptions = {stars: true, categories: ["accuracy"],
 * strings: {yes: "Ja"}}, set before this script runs. The look follows the page's font and colours;
 * set the CSS variables listed in feedback.css (--trainloop-accent, ...) to change it.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var data = (script && script.dataset) || {};
  var options = window.TrainloopFeedbackOptions || {};

  // Everything a customer reads, in one place (translate with data-text-* or options.strings).
  var STRINGS = {
    question: "Was this response helpful?",
    yes: "Yes",
    no: "No",
    sending: "Sending…",
    thanks: "Thanks for your feedback!",
    improveLabel: "How could this response be improved?",
    ratingLegend: "How would you rate this response?",
    categoriesLegend: "How was it on each of these?",
    accuracy: "Accuracy",
    helpfulness: "Helpfulness",
    tone: "Tone",
    relevance: "Relevance",
    completeness: "Completeness",
    star: "{n} of 5",
    send: "Send",
    sent: "Thank you, we will learn from it.",
    empty: "Choose a rating or write a suggestion first.",
    error: "Could not send feedback: {message}",
  };
  var CATEGORIES = ["accuracy", "helpfulness", "tone", "relevance", "completeness"];

  var config = {
    endpoint: data.endpoint || "",
    key: data.key,
    assistant: data.assistant,
    ask: data.ask || "always",
    stars: flag(data.stars, options.stars),
    categories: categoryList(data.categories, options.categories),
  };
  var strings = Object.assign({}, STRINGS, options.strings || {}, textAttributes(data));
  var serial = 0;

  function flag(attribute, fallback) {
    if (attribute === undefined) return Boolean(fallback);
    return attribute !== "false" && attribute !== "0";
  }

  function categoryList(attribute, fallback) {
    var value = attribute === undefined ? fallback : attribute;
    if (value === undefined || value === null || value === false || value === "false" || value === "0") {
      return [];
    }
    if (value === true || value === "" || value === "true" || value === "all") return CATEGORIES.slice();
    var names = Array.isArray(value) ? value : String(value).split(",");
    return names
      .map(function (name) { return String(name).trim().toLowerCase(); })
      .filter(function (name) { return CATEGORIES.indexOf(name) !== -1; });
  }

  function textAttributes(dataset) {
    var found = {};
    Object.keys(STRINGS).forEach(function (name) {
      var attribute = "text" + name.charAt(0).toUpperCase() + name.slice(1);
      if (dataset[attribute] !== undefined) found[name] = dataset[attribute];
    });
    return found;
  }

  function format(text, values) {
    return text.replace(/\{(\w+)\}/g, function (match, name) {
      return values[name] !== undefined ? values[name] : match;
    });
  }

  function loadStylesheet() {
    if (data.stylesheet === "none" || document.getElementById("trainloop-feedback-css")) return;
    var href = data.stylesheet || (script && script.src ? new URL("feedback.css", script.src).href : "");
    if (!href) return;
    // First in <head>: the page's own rules win a tie with these defaults.
    document.head.prepend(el("link", { id: "trainloop-feedback-css", rel: "stylesheet", href: href }));
  }

  function api(path, request) {
    request = request || {};
    var headers = { Authorization: "Bearer " + config.key };
    if (request.body) headers["Content-Type"] = "application/json";
    if (request.idempotencyKey) headers["Idempotency-Key"] = request.idempotencyKey;
    return fetch(config.endpoint + path, {
      method: request.method || "GET",
      headers: headers,
      body: request.body ? JSON.stringify(request.body) : undefined,
      mode: "cors",
    }).then(function (response) {
      return response.json().then(
        function (body) {
          if (!response.ok) throw new Error(body.detail || "HTTP " + response.status);
          return body;
        },
        function () { throw new Error("HTTP " + response.status); }
      );
    });
  }

  function send(requestId, token, kind, fields) {
    var body = Object.assign(
      { assistant: config.assistant, request_id: requestId, kind: kind, feedback_token: token },
      fields
    );
    return api("/api/v1/feedback", { method: "POST", body: body, idempotencyKey: requestId + ":" + kind });
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text) node.textContent = text;
    return node;
  }

  // Icons are inline SVG, not emoji: a page without an emoji font would show empty boxes.
  // Feather icons (MIT): thumbs-up, thumbs-down, star.
  var ICONS = {
    up: ["path", "d", "M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.28a2 2 0 0 0 2-1.7l1.38-9a2 2 0 0 0-2-2.3zM7 22H4a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2h3"],
    down: ["path", "d", "M10 15v4a3 3 0 0 0 3 3l4-9V2H5.72a2 2 0 0 0-2 1.7l-1.38 9a2 2 0 0 0 2 2.3zm7-13h2.67A2.31 2.31 0 0 1 22 4v7a2.31 2.31 0 0 1-2.33 2H17"],
    star: ["polygon", "points", "12 2 15.09 8.26 22 9.27 17 14.14 18.18 21.02 12 17.77 5.82 21.02 7 14.14 2 9.27 8.91 8.26 12 2"],
  };
  var SVG = "http://www.w3.org/2000/svg";

  function icon(name) {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.setAttribute("class", "trainloop-icon");
    var shape = document.createElementNS(SVG, ICONS[name][0]);
    shape.setAttribute(ICONS[name][1], ICONS[name][2]);
    svg.appendChild(shape);
    return svg;
  }

  function optionsFor(container) {
    var own = container.dataset;
    return {
      stars: own.stars !== undefined ? flag(own.stars) : config.stars,
      categories: own.categories !== undefined ? categoryList(own.categories) : config.categories,
      strings: Object.assign({}, strings, textAttributes(own)),
    };
  }

  function render(container, requestId, token, serverQuestion) {
    var opts = optionsFor(container);
    var t = opts.strings;
    var id = "trainloop-" + ++serial;
    // The server's question only where the site kept the default one (it is not translated).
    var question = t.question !== STRINGS.question ? t.question : serverQuestion || t.question;
    container.classList.add("trainloop-feedback");
    var label = el("p", { class: "trainloop-question", id: id + "-question" }, question);
    var votes = el("div", { class: "trainloop-votes", role: "group", "aria-labelledby": id + "-question" });
    var yes = voteButton(t.yes, "up");
    var no = voteButton(t.no, "down");
    votes.append(yes, no);
    // The one status message, replaced (never added to) as the feedback goes on.
    var status = el("p", { class: "trainloop-status", role: "status", "aria-live": "polite", tabindex: "-1" });
    container.replaceChildren(label, votes, status);
    var voted = false;
    var sending = false;

    function say(text, isError) {
      status.textContent = text;
      status.classList.toggle("is-error", Boolean(isError));
    }

    function vote(helpful, button) {
      if (voted || sending) return;
      sending = true;
      yes.setAttribute("aria-disabled", "true");
      no.setAttribute("aria-disabled", "true");
      say(t.sending);
      send(requestId, token, "thumbs", { helpful: helpful })
        .then(function () {
          voted = true;
          button.setAttribute("aria-pressed", "true");
          say(t.thanks);
          if (!helpful || opts.stars || opts.categories.length) {
            askDetails(container, status, say, requestId, token, helpful, opts, id);
          }
        })
        .catch(function (error) {
          yes.removeAttribute("aria-disabled");
          no.removeAttribute("aria-disabled");
          say(format(t.error, { message: error.message }), true);
        })
        .then(function () { sending = false; });
    }
    yes.addEventListener("click", function () { vote(true, yes); });
    no.addEventListener("click", function () { vote(false, no); });
  }

  function voteButton(text, iconName) {
    var button = el("button", { type: "button", class: "trainloop-vote", "aria-pressed": "false" });
    button.append(icon(iconName), el("span", { class: "trainloop-label" }, text));
    return button;
  }

  function starGroup(name, t) {
    var stars = [];
    var row = el("span", { class: "trainloop-stars" });
    for (var n = 1; n <= 5; n++) {
      var label = el("label", { class: "trainloop-star" });
      var input = el("input", { type: "radio", class: "trainloop-star-input", name: name, value: String(n) });
      label.append(input, icon("star"), el("span", { class: "trainloop-sr" }, format(t.star, { n: n })));
      row.append(label);
      stars.push(label);
    }
    row.addEventListener("change", function (event) {
      var chosen = Number(event.target.value);
      stars.forEach(function (star, index) { star.classList.toggle("is-on", index < chosen); });
    });
    return row;
  }

  function chosen(form, name) {
    var input = form.querySelector('input[name="' + name + '"]:checked');
    return input ? Number(input.value) : null;
  }

  function askDetails(container, status, say, requestId, token, helpful, opts, id) {
    var t = opts.strings;
    var form = el("form", { class: "trainloop-details", novalidate: "" });
    if (opts.stars) {
      var rating = el("fieldset", { class: "trainloop-fieldset trainloop-rating" });
      rating.append(el("legend", { class: "trainloop-legend" }, t.ratingLegend), starGroup(id + "-rating", t));
      form.append(rating);
    }
    if (opts.categories.length) {
      var categories = el("fieldset", { class: "trainloop-fieldset trainloop-categories" });
      categories.append(el("legend", { class: "trainloop-legend" }, t.categoriesLegend));
      opts.categories.forEach(function (category) {
        var nameId = id + "-" + category;
        var group = el("div", { class: "trainloop-category", role: "radiogroup", "aria-labelledby": nameId });
        group.append(el("span", { class: "trainloop-category-name", id: nameId }, t[category]));
        group.append(starGroup(nameId + "-rating", t));
        categories.append(group);
      });
      form.append(categories);
    }
    var text = null;
    if (!helpful) {
      form.append(el("label", { for: id + "-suggestion", class: "trainloop-improve-label" }, t.improveLabel));
      text = el("textarea", { id: id + "-suggestion", class: "trainloop-text", name: "suggestion", rows: "3" });
      form.append(text);
    }
    var submit = el("button", { type: "submit", class: "trainloop-send" }, t.send);
    form.append(submit);
    container.insertBefore(form, status);
    var first = form.querySelector("input, textarea");
    if (first) first.focus();

    var sending = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (sending) return;
      var requests = [];
      var suggestion = text ? text.value.trim() : "";
      if (suggestion) requests.push(["improvement", { suggestion: suggestion }]);
      var stars = opts.stars ? chosen(form, id + "-rating") : null;
      if (stars) requests.push(["rating", { rating: stars }]);
      var ratings = {};
      opts.categories.forEach(function (category) {
        var value = chosen(form, id + "-" + category + "-rating");
        if (value) ratings[category] = value;
      });
      if (Object.keys(ratings).length) requests.push(["category", ratings]);
      if (!requests.length) {
        say(t.empty, true);
        return;
      }
      sending = true;
      form.setAttribute("aria-busy", "true");
      submit.setAttribute("aria-disabled", "true");
      say(t.sending);
      Promise.all(requests.map(function (item) { return send(requestId, token, item[0], item[1]); }))
        .then(function () {
          form.remove();
          say(t.sent);
          status.focus();
        })
        .catch(function (error) {
          sending = false;
          form.removeAttribute("aria-busy");
          submit.removeAttribute("aria-disabled");
          say(format(t.error, { message: error.message }), true);
        });
    });
  }

  function attach(container, requestId, token) {
    if (container.dataset.trainloopAttached) return;
    token = token || container.dataset.feedbackToken || "";
    container.dataset.trainloopAttached = "1";
    if (config.ask !== "auto") return render(container, requestId, token);
    var query = "?assistant=" + encodeURIComponent(config.assistant) +
      "&request_id=" + encodeURIComponent(requestId) + "&feedback_token=" + encodeURIComponent(token);
    api("/api/v1/feedback-prompt" + query).then(
      function (answer) {
        if (answer.ask) render(container, requestId, token, answer.prompt.question);
      },
      function () {} // the server could not say whether to ask: not asking is the quiet default
    );
  }

  function scan() {
    document.querySelectorAll("[data-trainloop-request-id]").forEach(function (node) {
      attach(node, node.dataset.trainloopRequestId, node.dataset.feedbackToken);
    });
  }

  loadStylesheet();
  window.TrainloopFeedback = { attach: attach, scan: scan, config: config, strings: strings };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", scan);
  else scan();
})();
