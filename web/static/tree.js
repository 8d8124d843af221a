// Call-tree page: collapse/expand, node detail panel, error navigation, live diagnosis.
"use strict";
(function () {
  const tree = document.querySelector(".waterfall");
  const panel = document.getElementById("detail");
  if (!tree || !panel) return;
  const body = panel.querySelector(".detail-body");
  let selected = null;
  let loading = 0; // the latest detail request: an older answer arriving late is dropped

  function setExpanded(node, open) {
    if (!node.querySelector(":scope > .children")) return;
    node.classList.toggle("collapsed", !open);
    node.setAttribute("aria-expanded", open ? "true" : "false");
    const toggle = node.querySelector(":scope > .row .toggle");
    const name = node.querySelector(":scope > .row .name").textContent;
    if (toggle) toggle.setAttribute("aria-label", (open ? "Collapse " : "Expand ") + name);
  }

  function revealAncestors(node) {
    let parent = node.parentElement.closest(".node");
    while (parent) {
      setExpanded(parent, true);
      parent = parent.parentElement.closest(".node");
    }
  }

  function liveDiagnosis(section) {
    const target = section.querySelector(".live-check .a");
    const params = new URLSearchParams(JSON.parse(section.dataset.live));
    fetch("/api/diagnosis?" + params.toString(), { headers: { Accept: "application/json" } })
      .then((r) => r.json())
      .then((data) => {
        const check = section.querySelector(".live-check");
        if (data.error || !data.pollers) {
          target.textContent = "Temporal did not answer: " + (data.error || data.detail || "unknown");
          return;
        }
        const wf = data.pollers.workflow.length, nx = data.pollers.nexus.length;
        check.classList.remove("verdict-unknown");
        check.classList.add(wf + nx > 0 ? "verdict-ok" : "verdict-problem");
        let text = wf + nx > 0
          ? `yes: ${wf} workflow poller(s), ${nx} Nexus poller(s)`
          : "no: nothing polls it, so no worker picks up the handler's tasks";
        if (data.workflow) {
          text += `. Handler workflow now: ${data.workflow.status_name}`;
          const pending = data.workflow.pending_activities.map(
            (p) => `${p.activity_type} (attempt ${p.attempt}${p.last_failure ? ": " + p.last_failure : ""})`);
          if (pending.length) text += `; pending activities: ${pending.join(", ")}`;
        }
        target.textContent = text;
      })
      .catch((err) => { target.textContent = "could not ask Temporal: " + err; });
  }

  function note(text) {
    const p = document.createElement("p");
    p.className = "detail-note";
    p.textContent = text;
    body.replaceChildren(p);
  }

  // Node details are not in the page (it would grow with every span): fetch them.
  function loadDetail(node) {
    const ticket = ++loading;
    note("Loading…");
    const url = tree.dataset.detail.replace("{n}", node.id.slice(1));
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
      .then((data) => {
        if (ticket !== loading) return;
        if (data.node.kind !== node.dataset.kind || data.node.namespace !== node.dataset.namespace) {
          note("This tree changed since the page was loaded: reload the page to see this node.");
          return;
        }
        const template = document.createElement("template");
        template.innerHTML = data.html; // rendered by the server's autoescaping template
        body.replaceChildren(template.content);
        const live = body.querySelector(".diagnosis[data-live]");
        if (live) liveDiagnosis(live);
      })
      .catch((err) => {
        if (ticket === loading) note("Could not load this node's detail: " + err.message);
      });
  }

  function select(node, scroll) {
    if (!node) return;
    if (selected) selected.classList.remove("selected");
    selected = node;
    node.classList.add("selected");
    revealAncestors(node);
    panel.hidden = false;
    loadDetail(node);
    const row = node.querySelector(":scope > .row");
    row.focus({ preventScroll: true });
    if (scroll) row.scrollIntoView({ block: "center" });
    if (location.hash !== "#" + node.id) history.replaceState(null, "", "#" + node.id);
  }

  tree.addEventListener("click", (event) => {
    const toggle = event.target.closest(".toggle");
    if (toggle) {
      const node = toggle.closest(".node");
      setExpanded(node, node.classList.contains("collapsed"));
      event.stopPropagation();
      return;
    }
    if (event.target.closest("a")) return;
    const row = event.target.closest(".row");
    if (row) select(row.closest(".node"), false);
  });

  tree.addEventListener("keydown", (event) => {
    const node = event.target.closest(".node");
    if (!node) return;
    const rows = Array.from(tree.querySelectorAll(".row")).filter((r) => r.offsetParent !== null);
    const index = rows.indexOf(node.querySelector(":scope > .row"));
    if (event.key === "ArrowDown" && rows[index + 1]) select(rows[index + 1].closest(".node"), true);
    else if (event.key === "ArrowUp" && index > 0) select(rows[index - 1].closest(".node"), true);
    else if (event.key === "Enter" || event.key === " ") select(node, false);
    else if (event.key === "ArrowRight") setExpanded(node, true);
    else if (event.key === "ArrowLeft") setExpanded(node, false);
    else return;
    event.preventDefault();
  });

  panel.querySelector(".close").addEventListener("click", () => {
    panel.hidden = true;
    if (selected) selected.classList.remove("selected");
    selected = null;
    history.replaceState(null, "", location.pathname + location.search);
  });

  document.querySelectorAll(".toolbar button").forEach((button) => {
    button.addEventListener("click", () => {
      const action = button.dataset.action;
      if (action === "expand-all" || action === "collapse-all") {
        tree.querySelectorAll(".node").forEach((n, i) => setExpanded(n, action === "expand-all" || i === 0));
      } else if (action === "next-error") {
        const ids = button.dataset.errors.split(" ");
        const at = selected ? ids.indexOf(selected.id) : -1;
        select(document.getElementById(ids[(at + 1) % ids.length]), true);
      }
    });
  });

  document.querySelectorAll("[data-goto]").forEach((link) => {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      select(document.getElementById(link.dataset.goto), true);
    });
  });

  const start = location.hash.length > 1 && document.getElementById(location.hash.slice(1));
  if (start && start.classList.contains("node")) select(start, true);
  else if (tree.dataset.focus && tree.dataset.focus !== "n0") select(document.getElementById(tree.dataset.focus), true);
})();
