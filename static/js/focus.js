/* After an htmx action (approve, reject, cancel, stop, roll back) the content a keyboard or screen-reader
 * user was in is replaced: without this their focus falls back to the top of the page. Moves focus to the
 * swapped content: its alert or status message if it has one, else its first heading, else the content.
 * Only for actions (non-GET): polling and filters must not move focus. No inline script: CSP forbids it. */
(function () {
  "use strict";

  let handled = null;

  document.addEventListener("htmx:afterSettle", (event) => {
    const detail = event.detail || {};
    const verb = (detail.requestConfig || {}).verb;
    if (!verb || verb === "get" || detail.xhr === handled) return;
    handled = detail.xhr;  // one focus move per answer, however many elements settled
    const id = detail.target && detail.target.id;
    const box = (id && document.getElementById(id)) || (detail.elt && detail.elt.isConnected ? detail.elt : null);
    if (!box) return;
    const into = box.querySelector('[role="alert"], [role="status"]') || box.querySelector("h1, h2") || box;
    if (!into.matches("a[href], button, input, select, textarea, [tabindex]")) into.setAttribute("tabindex", "-1");
    into.focus();
  });
})();
