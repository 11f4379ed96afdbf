// Flagstaff admin pages: progressive enhancement only. Every page reads without this script;
// it adds one-click toggles, rows added and removed in the editor, inline checks of JSON values
// and rollout weights, confirmations and copy buttons.
"use strict";
(function () {
  document.documentElement.classList.add("js");

  function csrfToken() {
    var field = document.querySelector("input[name=csrf]");
    return field ? field.value : "";
  }

  // Forms that ask before they are sent (revoking a key, disabling a user, restoring…).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.matches("form[data-confirm]") && !form.matches("form.js-toggle")) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    }
  });

  // One-click toggles: the form posts in the background and the button shows the new state.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches("form.js-toggle")) return;
    event.preventDefault();
    var button = form.querySelector("button");
    var wanted = form.querySelector("input[name=enabled]");
    var message = form.getAttribute("data-confirm");
    if (message && !window.confirm(message.replace("{state}", wanted.value === "true" ? "ON" : "OFF"))) return;
    var errorBox = form.querySelector(".toggle-error");
    if (errorBox) errorBox.textContent = "";
    button.setAttribute("aria-busy", "true");
    button.disabled = true;
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrfToken() },
      body: new URLSearchParams(new FormData(form))
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok || typeof body.enabled !== "boolean") {
          throw new Error((body.error && body.error.message) || ("The server answered " + response.status + "; reload the page."));
        }
        var on = body.enabled === true;
        button.setAttribute("aria-checked", on ? "true" : "false");
        button.textContent = on ? "On" : "Off";
        wanted.value = on ? "false" : "true";
        var version = form.querySelector("input[name=version]");
        if (version && body.version !== undefined) version.value = body.version;
      });
    }).catch(function (error) {
      if (errorBox) errorBox.textContent = error.message;
    }).finally(function () {
      button.removeAttribute("aria-busy");
      button.disabled = false;
      button.focus();
    });
  });

  // Rows: "add" clones a <template>, replacing __N__ with a fresh index; "remove" drops a row.
  var counter = Date.now() % 100000;
  document.addEventListener("click", function (event) {
    var add = event.target.closest("button[data-add-row]");
    if (add) {
      event.preventDefault();
      var template = document.getElementById(add.getAttribute("data-add-row"));
      var target = document.getElementById(add.getAttribute("data-target"));
      counter += 1;
      var html = template.innerHTML.split("__N__").join(String(counter));
      if (add.hasAttribute("data-parent")) html = html.split("__P__").join(add.getAttribute("data-parent"));
      var holder = document.createElement("div");
      holder.innerHTML = html.trim();
      var row = holder.firstElementChild;
      target.appendChild(row);
      var first = row.querySelector("input, select, textarea");
      if (first) first.focus();
      row.querySelectorAll("select[data-rollout-box]").forEach(refreshServe);
      row.querySelectorAll("select[data-op]").forEach(refreshOp);
      refreshWeights();
      return;
    }
    var remove = event.target.closest("button[data-remove-row]");
    if (remove) {
      event.preventDefault();
      var gone = remove.closest(".row");
      var next = gone.parentElement.closest(".row, fieldset");
      gone.remove();
      if (next) { var focusable = next.querySelector("button, input"); if (focusable) focusable.focus(); }
      refreshWeights();
      return;
    }
    var copy = event.target.closest("button[data-copy]");
    if (copy) {
      event.preventDefault();
      var source = document.getElementById(copy.getAttribute("data-copy"));
      var text = source.textContent.trim();
      var done = function () { copy.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { selectText(source); });
      } else {
        selectText(source);
        try { if (document.execCommand("copy")) done(); } catch (e) { /* selected for the user */ }
      }
    }
  });

  function selectText(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // JSON values are checked as they are typed; the message shows beside the field.
  function checkJson(field) {
    var box = document.getElementById(field.id + "-live");
    var message = "";
    if (field.value.trim() !== "") {
      try { JSON.parse(field.value); } catch (e) { message = "Not valid JSON: " + e.message; }
    }
    field.setCustomValidity(message);
    field.setAttribute("aria-invalid", message ? "true" : "false");
    if (box) box.textContent = message;
  }
  document.addEventListener("input", function (event) {
    if (event.target.matches("[data-json]")) checkJson(event.target);
    if (event.target.matches("[data-weight]")) refreshWeights();
  });

  // Rollout weights: the total of each rollout is shown and must be 100%.
  function refreshWeights() {
    document.querySelectorAll("output[data-weight-sum]").forEach(function (output) {
      var group = output.getAttribute("data-weight-sum");
      var total = 0;
      document.querySelectorAll("[data-weight='" + group + "']").forEach(function (input) {
        var value = parseFloat(input.value);
        if (!isNaN(value)) total += value;
      });
      total = Math.round(total * 1000) / 1000;
      output.textContent = "Total: " + total + "%" + (total === 100 ? "" : " (must be 100%)");
      output.classList.toggle("bad", total !== 100);
    });
  }

  // A serve choice shows the rollout weights only when a rollout ("*rollout") is chosen.
  function refreshServe(select) {
    var box = document.getElementById(select.getAttribute("data-rollout-box"));
    if (box) box.hidden = select.value !== "*rollout";
  }
  document.addEventListener("change", function (event) {
    if (event.target.matches("select[data-rollout-box]")) refreshServe(event.target);
    if (event.target.matches("select[data-op]")) refreshOp(event.target);
  });

  // The segment operator needs no attribute.
  function refreshOp(select) {
    var attribute = document.getElementById(select.getAttribute("data-op"));
    if (attribute) attribute.disabled = select.value === "in_segment";
  }

  // Scheduled changes: the time picked in the browser's time zone is sent as UTC.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (event.defaultPrevented || !form.matches("form.js-schedule")) return;
    var local = form.querySelector("input[name=at_local]");
    var at = form.querySelector("input[name=at]");
    var when = local && local.value ? new Date(local.value) : null;
    if (at && when && !isNaN(when.getTime())) at.value = when.toISOString();
  });

  // Times stored in UTC, shown in the browser's time zone.
  function localTimes() {
    document.querySelectorAll("time.js-local-time").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime())) return;
      el.textContent = when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
      el.title = el.getAttribute("datetime");
    });
  }

  // A link to a closed section (the empty lists' "Create the first one") opens it.
  function openTarget() {
    var target = location.hash.length > 1 && document.getElementById(location.hash.slice(1));
    if (target && target.tagName === "DETAILS") target.open = true;
  }
  window.addEventListener("hashchange", openTarget);

  function init() {
    localTimes();
    openTarget();
    document.querySelectorAll("[data-json]").forEach(checkJson);
    document.querySelectorAll("select[data-rollout-box]").forEach(refreshServe);
    document.querySelectorAll("select[data-op]").forEach(refreshOp);
    refreshWeights();
    // After a refused save, start at the list of problems.
    var problems = document.querySelector(".error-message[tabindex='-1']");
    if (problems) problems.focus();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
