// Call-tree page: collapse/expand, node detail panel, error navigation, live diagnosis.
"use strict";
(function () {
  const tree = document.querySelector(".waterfall");
  const panel = document.getElementById("detail");
  if (!tree || !panel) return;
  const body = panel.querySelector(".detail-body");
  let selected = null;
  let loading = 0; // the latest detail request: an older answer arriving late is dropped

  // The server sends each row as classes only (st-<status>, h<namespace>, d<depth>), so a
  // 1,000-node page stays small: the attributes that say the same for people and for
  // assistive technology are set here, once.
  const namespaces = JSON.parse(tree.dataset.namespaces || "[]");
  function decorate(node, first) {
    const classes = node.className;
    const status = (classes.match(/\bst-(\w+)/) || [])[1] || "";
    const hue = classes.match(/\bh(\d+)\b/);
    const depth = Number((classes.match(/\bd(\d+)\b/) || [0, 0])[1]);
    node.dataset.status = status;
    if (hue) node.dataset.namespace = namespaces[Number(hue[1])];
    node.setAttribute("role", "treeitem");
    node.setAttribute("aria-level", String(depth + 1));
    const row = node.querySelector(":scope > .row");
    row.tabIndex = first ? 0 : -1;
    const icon = row.querySelector(".sicon");
    icon.title = status.replace("_", " ");
    icon.setAttribute("aria-label", icon.title);
    const link = row.querySelector("a.temporal-ui");
    if (link) {
      link.title = "this run's history in the Temporal Web UI";
      const wid = row.querySelector(".wid");
      link.setAttribute("aria-label", "Temporal Web UI history of " + (wid ? wid.textContent : "this run"));
    }
    if (node.querySelector(":scope > .children")) setExpanded(node, !node.classList.contains("collapsed"));
  }

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

  tree.querySelectorAll(".node").forEach((node, i) => decorate(node, i === 0));

  // A shortened name or id shows in full on hover.
  tree.addEventListener("mouseover", (event) => {
    const text = event.target.closest(".name, .wid");
    if (text && !text.title) text.title = text.textContent;
  });

  // The name column is resizable (drag or arrow keys); the width is remembered.
  const handle = tree.querySelector(".axis .resize");
  const WIDTH_KEY = "temporal-tracer.label-width";
  function setLabelWidth(px) {
    const total = tree.clientWidth;
    const width = Math.round(Math.min(Math.max(px, 220), total - 160));
    tree.style.setProperty("--label-w", width + "px");
    handle.setAttribute("aria-valuenow", String(width));
    return width;
  }
  function labelWidth() {
    return tree.querySelector(".axis .label").getBoundingClientRect().width;
  }
  // Below this width the rows drop their kind words, so names and badges keep their room.
  const COMPACT_BELOW = 600;
  new ResizeObserver((entries) => {
    tree.classList.toggle("compact", entries[0].contentRect.width < COMPACT_BELOW);
  }).observe(tree.querySelector(".axis .label"));
  const saved = Number(localStorage.getItem(WIDTH_KEY));
  if (saved) setLabelWidth(saved);
  handle.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    handle.setPointerCapture(event.pointerId);
    tree.classList.add("resizing");
    const left = tree.getBoundingClientRect().left;
    const move = (e) => setLabelWidth(e.clientX - left);
    const stop = () => {
      handle.removeEventListener("pointermove", move);
      tree.classList.remove("resizing");
      localStorage.setItem(WIDTH_KEY, String(Math.round(labelWidth())));
    };
    handle.addEventListener("pointermove", move);
    handle.addEventListener("pointerup", stop, { once: true });
    handle.addEventListener("pointercancel", stop, { once: true });
  });
  handle.addEventListener("keydown", (event) => {
    const step = event.key === "ArrowLeft" ? -24 : event.key === "ArrowRight" ? 24 : 0;
    if (!step) return;
    event.preventDefault();
    event.stopPropagation();
    localStorage.setItem(WIDTH_KEY, String(setLabelWidth(labelWidth() + step)));
  });
  handle.addEventListener("click", (event) => event.stopPropagation());

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
