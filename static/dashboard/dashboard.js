// Small progressive enhancements; every page works without them.
(function () {
  "use strict";

  // Phone navigation toggle.
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest("[data-menu-toggle]");
    if (!toggle) return;
    var bar = toggle.closest(".topbar");
    var open = bar.classList.toggle("open");
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
  });

  // A table wider than the screen scrolls sideways in its .table-wrap: then the wrap is a named
  // region in the tab order, so the keyboard can scroll it too (WCAG 2.1.1; axe's
  // scrollable-region-focusable). Only while it scrolls: otherwise it would be a stop for nothing.
  function keyboardScrollableTables() {
    document.querySelectorAll(".table-wrap").forEach(function (wrap) {
      var scrolls = wrap.scrollWidth > wrap.clientWidth + 1;
      if (scrolls && !wrap.hasAttribute("tabindex")) {
        var added = ["tabindex", "role", "data-scrolls"];
        wrap.setAttribute("tabindex", "0");
        wrap.setAttribute("role", "region");
        if (!wrap.hasAttribute("aria-label") && !wrap.hasAttribute("aria-labelledby")) {
          // named after its section's heading, and not the same name (landmarks stay distinct)
          var section = wrap.closest("[aria-labelledby]");
          var heading = section && document.getElementById(section.getAttribute("aria-labelledby"));
          var title = heading ? heading.textContent.trim() : "";
          wrap.setAttribute("aria-label", (title ? title + ": " : "") + "table, scrolls sideways");
          added.push("aria-label");
        }
        wrap.setAttribute("data-scrolls", added.join(" "));
      } else if (!scrolls && wrap.hasAttribute("data-scrolls")) {
        wrap.getAttribute("data-scrolls").split(" ").forEach(function (name) { wrap.removeAttribute(name); });
      }
    });
  }
  keyboardScrollableTables();
  window.addEventListener("resize", keyboardScrollableTables);
  document.addEventListener("htmx:afterSettle", keyboardScrollableTables);

  // Copy a secret shown once.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target || !navigator.clipboard) return;
    navigator.clipboard.writeText(target.textContent.trim()).then(function () {
      button.textContent = "Copied";
    });
  });

  // Jump from a problem to its line in the editor.
  document.addEventListener("click", function (event) {
    var link = event.target.closest("[data-line]");
    if (!link) return;
    var editor = document.getElementById("id_config");
    if (!editor) return;
    event.preventDefault();
    var line = parseInt(link.getAttribute("data-line"), 10);
    var lines = editor.value.split("\n");
    var start = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
    editor.focus();
    editor.setSelectionRange(start, start + (lines[line - 1] || "").length);
    var lineHeight = parseFloat(getComputedStyle(editor).lineHeight) || 18;
    editor.scrollTop = Math.max(0, (line - 3) * lineHeight);
  });

  // Tab inserts two spaces in the YAML editor; Escape then Tab leaves it (keyboard users).
  document.addEventListener("keydown", function (event) {
    var editor = event.target;
    if (editor.id !== "id_config") return;
    if (event.key === "Escape") { editor.dataset.escape = "1"; return; }
    if (event.key !== "Tab" || event.shiftKey || editor.dataset.escape === "1") {
      editor.dataset.escape = "";
      return;
    }
    event.preventDefault();
    var s = editor.selectionStart;
    editor.value = editor.value.slice(0, s) + "  " + editor.value.slice(editor.selectionEnd);
    editor.selectionStart = editor.selectionEnd = s + 2;
  });

  // Live audit tail over a websocket.
  function startTail(box) {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + box.getAttribute("data-tail"));
    var status = document.getElementById("tail-status");
    socket.onopen = function () { if (status) status.textContent = "Live: new entries appear here."; };
    socket.onclose = function () { if (status) status.textContent = "Disconnected. Reload the page to follow again."; };
    socket.onmessage = function (message) {
      var e = JSON.parse(message.data);
      var empty = box.querySelector(".empty-tail");
      if (empty) empty.remove();
      var line = document.createElement("p");
      var link = document.createElement("a");
      link.href = "/audit/entries/" + e.seq + "/";
      link.textContent = "#" + e.seq;
      line.appendChild(link);
      // the year and the zone, as everywhere on the audit pages (the entry times are UTC)
      line.appendChild(document.createTextNode(" " + e.time.slice(0, 19).replace("T", " ") + " UTC " + e.kind + " " +
        [e.agent, e.server && e.tool ? e.server + "/" + e.tool : "", e.intent, e.decision, e.reason]
          .filter(Boolean).join(" · ")));
      box.insertBefore(line, box.firstChild);
      while (box.children.length > 200) box.removeChild(box.lastChild);
    };
  }
  document.querySelectorAll("[data-tail]").forEach(startTail);

  // Reviewers: the live count of approvals waiting for them (nav badge and page title), opt-in
  // desktop alerts, and an "intended:approval" event for the page (queue, detail) to follow.
  // One socket per page; it reconnects with backoff.
  var ALERTS_KEY = "intended.desktop-alerts";
  function alertsOn() {
    return "Notification" in window && Notification.permission === "granted" &&
      localStorage.getItem(ALERTS_KEY) === "on";
  }
  function showAlertsButton() {
    var button = document.querySelector("[data-desktop-alerts]");
    if (!button || !("Notification" in window) || Notification.permission === "denied") return;
    button.hidden = false;
    button.setAttribute("aria-pressed", alertsOn() ? "true" : "false");
    button.textContent = alertsOn() ? "Desktop alerts on" : "Desktop alerts";
  }
  document.addEventListener("click", function (event) {
    if (!event.target.closest("[data-desktop-alerts]")) return;
    if (alertsOn()) { localStorage.setItem(ALERTS_KEY, "off"); showAlertsButton(); return; }
    Notification.requestPermission().then(function (permission) {
      if (permission === "granted") localStorage.setItem(ALERTS_KEY, "on");
      showAlertsButton();
    });
  });
  function showPending(count) {
    var badge = document.querySelector("[data-pending-badge]");
    if (badge) {
      badge.textContent = String(count);
      badge.hidden = count === 0;
      badge.setAttribute("aria-label", count + " waiting for you: open the next");
    }
    document.querySelectorAll("[data-pending-count]").forEach(function (e) { e.textContent = String(count); });
    var menu = document.querySelector("[data-pending-menu]");
    if (menu) { menu.textContent = String(count); menu.hidden = count === 0; }
    document.title = (count > 0 ? "(" + count + ") " : "") + document.title.replace(/^\(\d+\) /, "");
    document.body.dataset.pending = String(count);
  }
  function notifyDesktop(approval) {
    if (!alertsOn() || !approval.may_decide) return;
    var note = new Notification("Approval needed: " + approval.agent + " \u2192 " + approval.server + "/" + approval.what, {
      body: (approval.reason || approval.intent) + " (risk " + approval.risk + ")",
      tag: "intended-approval-" + approval.id
    });
    note.onclick = function () { window.focus(); location.href = "/approvals/" + approval.id + "/"; };
  }
  function followApprovals(path, delay) {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + path);
    function live(state) {
      document.body.dataset.approvalsLive = state;
      document.dispatchEvent(new CustomEvent("intended:approvals-live", {detail: state}));
    }
    socket.onopen = function () { delay = 500; live("live"); };
    socket.onmessage = function (message) {
      var data = JSON.parse(message.data);
      if (typeof data.pending === "number") showPending(data.pending);
      if (data.approval) {
        if (data.event === "requested") notifyDesktop(data.approval);
        document.dispatchEvent(new CustomEvent("intended:approval", {detail: data}));
      }
    };
    socket.onclose = function (event) {
      live(event.code === 4401 ? "signed-out" : "reconnecting");
      if (event.code === 4401) return;
      setTimeout(function () { followApprovals(path, Math.min(delay * 2, 10000)); }, delay);
    };
  }
  var socketPath = document.body.dataset.approvalsSocket;
  if (socketPath) {
    showAlertsButton();
    followApprovals(socketPath, 500);
  }
})();
