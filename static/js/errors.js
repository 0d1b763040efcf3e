/* htmx swaps no 4xx/5xx answer (see the htmx-config meta in base.html), so without this a refused or
 * failed action (a permission revoked since the page loaded, an expired CSRF token, a server error)
 * looked like a button that does nothing. Shows the server's message, as text, above the page. */
(function () {
  "use strict";

  function show(text) {
    const box = document.getElementById("request-error");
    if (!box) return;
    box.querySelector("li").textContent = text;
    box.hidden = false;
  }

  document.addEventListener("htmx:responseError", (event) => {
    const xhr = event.detail.xhr;
    let text = "";
    try {
      // Our error pages (403.html) carry the reason in a <p class="error">; DOMParser runs no scripts.
      const doc = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
      const reason = doc.querySelector("main p.error");
      text = reason ? reason.textContent.trim() : "";
    } catch (_) { /* fall back to the status below */ }
    show(text || "The server answered " + xhr.status + ": nothing changed. Reload the page and try again.");
  });
  document.addEventListener("htmx:sendError", () => show("Could not reach the server: nothing changed. Try again."));
  // A later successful action clears the message, so it never describes one that has since worked
  // (polling GETs do not: they succeed every 2 s and would hide it before anyone reads it).
  document.addEventListener("htmx:afterRequest", (event) => {
    const box = document.getElementById("request-error");
    const verb = (event.detail.requestConfig || {}).verb;
    if (box && event.detail.successful && verb && verb !== "get") box.hidden = true;
  });
})();
