// cadence workspace: keyboard shortcuts, without inline scripts (the CSP forbids them).
// Pages opt in with data attributes; see templates/today.html.
(function () {
  "use strict";
  function typing(event) {
    const t = event.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  }
  document.addEventListener("keydown", function (event) {
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    const handler = document.querySelector("[data-keys]");
    if (!handler) return;
    const detail = { key: event.key };
    const custom = new CustomEvent("cadence:key", { detail: detail, cancelable: true, bubbles: true });
    if (!handler.dispatchEvent(custom)) event.preventDefault();
  });
  // Confirmation for buttons that ask for it (data-confirm), without inline handlers.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    const question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  }, true);
})();
