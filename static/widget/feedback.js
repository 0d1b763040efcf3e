/*
 * Embeddable feedback widget. Put it under an assistant's answer on any site:
 *
 *   <script src="https://YOUR-HOST/static/widget/feedback.js"
 *           data-endpoint="https://YOUR-HOST" data-key="tl_in_..." data-assistant="shop"></script>
 *   <div data-trainloop-request-id="req-123" data-feedback-token="..."></div>
 *
 * The key must be a publishable *ingest* key whose allowed origins include this page's origin
 * (`manage.py create_api_key --scope ingest --origin https://your-site`). Anyone can copy such a key
 * from the page, so the server accepts its feedback only with the interaction's feedback token: your
 * server gets it when it logs the interaction (POST /api/v1/interactions, or the chat gateway's
 * `feedback_token`) and writes it into data-feedback-token next to the answer it shows. Every POST
 * carries an Idempotency-Key derived from the request id, so a double click or a retry stores the
 * feedback once. With data-ask="auto" the widget first asks the server whether to prompt (sampling
 * rate, never twice). Pages that add answers later call TrainloopFeedback.attach(node, requestId, token).
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var config = {
    endpoint: (script && script.dataset.endpoint) || "",
    key: script && script.dataset.key,
    assistant: script && script.dataset.assistant,
    ask: (script && script.dataset.ask) || "always",
  };

  function api(path, options) {
    options = options || {};
    var headers = { Authorization: "Bearer " + config.key };
    if (options.body) headers["Content-Type"] = "application/json";
    if (options.idempotencyKey) headers["Idempotency-Key"] = options.idempotencyKey;
    return fetch(config.endpoint + path, {
      method: options.method || "GET",
      headers: headers,
      body: options.body ? JSON.stringify(options.body) : undefined,
      mode: "cors",
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) throw new Error(data.detail || "HTTP " + response.status);
        return data;
      });
    });
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text) node.textContent = text;
    return node;
  }

  function send(requestId, token, kind, fields) {
    var body = Object.assign(
      { assistant: config.assistant, request_id: requestId, kind: kind, feedback_token: token },
      fields
    );
    return api("/api/v1/feedback", { method: "POST", body: body, idempotencyKey: requestId + ":" + kind });
  }

  function render(container, requestId, token, question) {
    container.classList.add("trainloop-feedback");
    var label = el("span", { class: "trainloop-question" }, question || "Was this response helpful?");
    var yes = el("button", { type: "button", "data-helpful": "true", "aria-label": "Helpful" }, "👍");
    var no = el("button", { type: "button", "data-helpful": "false", "aria-label": "Not helpful" }, "👎");
    var status = el("span", { class: "trainloop-status", role: "status" });
    container.replaceChildren(label, yes, no, status);

    function vote(helpful) {
      yes.disabled = no.disabled = true;
      send(requestId, token, "thumbs", { helpful: helpful })
        .then(function () {
          status.textContent = "Thanks for your feedback!";
          if (!helpful) askImprovement(container, requestId, token);
        })
        .catch(function (error) {
          yes.disabled = no.disabled = false;
          status.textContent = "Could not send feedback: " + error.message;
        });
    }
    yes.addEventListener("click", function () { vote(true); });
    no.addEventListener("click", function () { vote(false); });
  }

  function askImprovement(container, requestId, token) {
    var form = el("form", { class: "trainloop-improve" });
    var text = el("textarea", { name: "suggestion", rows: "2", placeholder: "How could this response be improved?" });
    var submit = el("button", { type: "submit" }, "Send");
    form.append(text, submit);
    container.append(form);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!text.value.trim()) return;
      submit.disabled = true;
      send(requestId, token, "improvement", { suggestion: text.value.trim() })
        .then(function () { form.replaceWith(el("span", { class: "trainloop-status" }, "Thank you, we will learn from it.")); })
        .catch(function (error) { submit.disabled = false; form.append(el("span", {}, error.message)); });
    });
  }

  function attach(container, requestId, token) {
    if (container.dataset.trainloopAttached) return;
    token = token || container.dataset.feedbackToken || "";
    container.dataset.trainloopAttached = "1";
    if (config.ask !== "auto") return render(container, requestId, token);
    var query = "?assistant=" + encodeURIComponent(config.assistant) +
      "&request_id=" + encodeURIComponent(requestId) + "&feedback_token=" + encodeURIComponent(token);
    api("/api/v1/feedback-prompt" + query).then(function (data) {
      if (data.ask) render(container, requestId, token, data.prompt.question);
    });
  }

  function scan() {
    document.querySelectorAll("[data-trainloop-request-id]").forEach(function (node) {
      attach(node, node.dataset.trainloopRequestId, node.dataset.feedbackToken);
    });
  }

  window.TrainloopFeedback = { attach: attach, scan: scan, config: config };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", scan);
  else scan();
})();
