// My day: keys j/k (move), Enter (open), 1-9 (log a disposition), s (snooze); no inline script (the CSP forbids it).
// workspace.js sends the keys pressed outside inputs as a cancelable "cadence:key" event to [data-keys].
(function () {
  "use strict";

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("#task-list tr[data-task]"));
  }

  function selected() {
    return document.querySelector("#task-list tr[data-task].selected");
  }

  function select(row) {
    rows().forEach(function (r) { r.classList.toggle("selected", r === row); });
    if (row) row.scrollIntoView({ block: "nearest" });
  }

  function open(row) {
    const link = row && row.querySelector("a[data-open]");
    if (!link) return;
    if (window.htmx) window.htmx.process(link);  // a freshly swapped list may not be wired yet (see log)
    link.click();
  }

  function move(step) {
    const all = rows();
    if (!all.length) return;
    const at = all.indexOf(selected());
    const next = at < 0 ? 0 : Math.min(all.length - 1, Math.max(0, at + step));
    select(all[next]);
  }

  function pane() {
    return document.querySelector("#task-pane article[data-task-id]");
  }

  function log(n) {
    const task = pane();
    const button = task && task.querySelector('form.log button[data-key="' + n + '"]');
    if (!button) return false;
    // A key pressed the instant a new task lands in the pane may come before htmx has wired its form
    // (that happens when the swap settles): wire it now, so the log never falls back to a page load.
    if (window.htmx) window.htmx.process(button.closest("form"));
    button.click();
    return true;
  }

  function snooze() {
    const task = pane();
    const box = task && task.querySelector("details[data-snooze]");
    if (!box) return false;
    box.open = true;
    const first = box.querySelector("button");
    if (first) first.focus();
    return true;
  }

  document.addEventListener("cadence:key", function (event) {
    const key = event.detail && event.detail.key;
    let handled = true;
    if (key === "j") move(1);
    else if (key === "k") move(-1);
    else if (key === "Enter") {
      // Enter on a focused button or link does its own thing; elsewhere it opens the selected task.
      const active = document.activeElement;
      if (active && (active.tagName === "BUTTON" || active.tagName === "A" || active.tagName === "SUMMARY")) return;
      open(selected());
    } else if (/^[1-9]$/.test(key)) handled = log(key);
    else if (key === "s") handled = snooze();
    else handled = false;
    if (handled) event.preventDefault();
  });

  // A click anywhere on a row (but on its links) opens its task.
  document.addEventListener("click", function (event) {
    const target = event.target;
    if (!(target instanceof Element) || target.closest("a, button, input, textarea, select, label")) return;
    const row = target.closest("#task-list tr[data-task]");
    if (row) {
      select(row);
      open(row);
    }
  });

  // Keep the list's selection on the task the pane shows.
  document.addEventListener("htmx:afterSettle", function () {
    const task = pane();
    if (!task) return;
    const id = task.getAttribute("data-task-id");
    const row = document.querySelector('#task-list tr[data-task="' + id + '"]');
    if (row) select(row);
  });

  // A refusal (403, 404, 409, 422) explains itself in the pane: let htmx swap it there.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const status = event.detail.xhr.status;
    const target = event.detail.target;
    if (target && target.id === "task-pane" && [400, 401, 403, 404, 409, 415, 422].indexOf(status) >= 0) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
