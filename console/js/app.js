// One app's page: its status and actions, its grids, its live log and its code.
import { api } from "./api.js";
import { h, replace, notice, pageTitle } from "./ui.js";
import { count, time, clock } from "./format.js";
import { appCard } from "./apps.js";
import { renderEditor } from "./editor.js";

const TABS = [["overview", "Overview"], ["logs", "Log"], ["edit", "Code"]];

export function renderApp(container, { app: name, tab }, context) {
  const { session, can } = context;
  const state = session.apps;
  const tabs = TABS.filter(([id]) => id !== "edit" || can("deploy"));
  if (!tabs.some(([id]) => id === tab)) tab = "overview";
  const heading = h("h1", {}, name);
  const body = h("div", { id: "app-body" });
  replace(container,
    h("nav", { class: "breadcrumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/apps" }, "Apps"), " › ", name),
    h("div", { class: "page-head" }, h("div", {}, heading)),
    h("nav", { class: "tabs", "aria-label": `${name} sections` },
      tabs.map(([id, text]) => h("a", { href: `#/apps/${encodeURIComponent(name)}${id === "overview" ? "" : "/" + id}`, "aria-current": id === tab ? "page" : null, "data-tab": id }, text))),
    body);
  pageTitle(`${name} · ${tabs.find(([id]) => id === tab)[1]}`, heading);

  let inner = null;
  let shown = false;
  function missing() {
    return h("div", { class: "empty", id: "app-missing" },
      h("strong", {}, `There is no app named ${name}`),
      "It may have been deleted, or the link is mistyped. ", h("a", { href: "#/apps" }, "Back to your apps"));
  }
  function show() {
    if (!state.loaded) {
      replace(body, h("p", { class: "muted" }, "Loading…"));
      return;
    }
    const app = state.apps.get(name);
    if (!app) {
      inner?.cleanup?.();
      inner = null;
      shown = false;
      replace(body, missing());
      return;
    }
    if (!shown) {
      shown = true;
      if (tab === "overview") inner = overview(body, app, context);
      else if (tab === "logs") inner = logs(body, app, context);
      else inner = renderEditor(body, app, context);
    }
    inner?.update?.(app, state.history.get(name));
  }
  show();
  const stop = state.onChange((kind, changed) => {
    if (changed === null || changed === name) show();
  });
  const stopSampling = state.sample();
  return () => {
    stop();
    stopSampling();
    inner?.cleanup?.();
  };
}

// ---- Overview: the card, the grids, the details

function overview(body, app, context) {
  const name = app.name;
  const card = appCard(app, context);
  const gridsBody = h("div", { id: "grids-list" }, h("p", { class: "muted" }, "Loading the grids…"));
  const details = h("dl", { class: "details" });
  replace(body,
    h("section", { class: "panel", "aria-label": `${name} status` }, h("ul", { class: "apps-list" }, card.element)),
    h("div", { class: "columns" },
      h("section", { class: "panel", "aria-labelledby": "grids-heading" }, h("h2", { id: "grids-heading" }, "Grids"), gridsBody),
      h("section", { class: "panel", "aria-labelledby": "details-heading" }, h("h2", { id: "details-heading" }, "Details"), details)));

  let timer = null;
  let lastVersion = null;
  async function loadGrids() {
    clearTimeout(timer);
    try {
      const grids = await api.grids(name);
      renderGrids(gridsBody, name, grids);
    } catch (error) {
      if (error.name === "AbortError") return;
      replace(gridsBody, notice("error", "The grids could not be loaded.", h("p", {}, error.friendly || String(error))));
    }
    timer = setTimeout(loadGrids, 5000);
  }
  loadGrids();
  return {
    update(current, history) {
      card.update(current, history);
      replace(details,
        h("dt", {}, "Version"), h("dd", {}, String(current.version)),
        h("dt", {}, "Entry point"), h("dd", {}, h("code", {}, current.entrypoint || "app.py")),
        h("dt", {}, "Runtime"), h("dd", {}, current.runtime || "—"),
        h("dt", {}, "Bundle"), h("dd", {}, h("code", { title: current.bundle_digest || "" }, (current.bundle_digest || "").slice(0, 16) + "…")),
        h("dt", {}, "Grid rows allowed"), h("dd", {}, count(current.quota?.grid_rows)),
        h("dt", {}, "Created"), h("dd", {}, time(current.created_at)),
        h("dt", {}, "Last change"), h("dd", {}, time(current.updated_at)));
      const version = `${current.version}/${current.state}`;
      if (lastVersion !== null && version !== lastVersion) loadGrids();
      lastVersion = version;
    },
    cleanup() {
      clearTimeout(timer);
    },
  };
}

function renderGrids(container, app, grids) {
  if (!grids.length) {
    replace(container, h("div", { class: "empty" },
      h("strong", {}, "No grids yet"),
      "An app's grids appear once it has run and written its first rows."));
    return;
  }
  const rows = grids.map((grid) => h("tr", { "data-grid": grid.name },
    h("th", { scope: "row" }, h("a", { href: `#/apps/${encodeURIComponent(app)}/grids/${encodeURIComponent(grid.name)}` }, grid.name)),
    h("td", { class: "num" }, count(grid.rows)),
    h("td", {}, grid.columns.join(", ")),
    h("td", { class: "num" }, count(grid.version))));
  replace(container, h("table", { class: "data" },
    h("caption", { class: "visually-hidden" }, `Grids of ${app}`),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Grid"), h("th", { scope: "col", class: "num" }, "Rows"), h("th", { scope: "col" }, "Columns"), h("th", { scope: "col", class: "num" }, "Version"))),
    h("tbody", {}, rows)),
  h("p", { class: "small muted" }, "Open a grid to watch it live."));
}

// ---- The live log: GET …/logs?follow=true, read as NDJSON with fetch and a ReadableStream

const MAX_LINES = 2000;

function logs(body, app, context) {
  const name = app.name;
  const panel = h("div", { class: "log", id: "log", tabindex: "0", role: "log", "aria-live": "off", "aria-label": `${name} log` });
  const status = h("p", { class: "small muted", id: "log-status", role: "status" });
  const follow = h("input", { type: "checkbox", id: "log-follow", checked: true });
  replace(body, h("section", { class: "panel", "aria-labelledby": "log-heading" },
    h("div", { class: "editor-head" },
      h("h2", { id: "log-heading" }, "Log"),
      h("div", { class: "row" }, follow, h("label", { for: "log-follow", class: "small" }, "Scroll to new lines"))),
    status, panel));

  let controller = null;
  let retry = null;
  let lines = 0;
  let pending = [];
  let frame = 0;
  let lastKey = null;
  let closed = false;

  function flush() {
    frame = 0;
    const atBottom = follow.checked;
    const fragment = document.createDocumentFragment();
    for (const line of pending) {
      const level = String(line.level || "info").toLowerCase();
      fragment.append(h("span", { class: `log-line ${line.source || ""} level-${level}` },
        h("span", { class: "log-time" }, clock(line.time)), " ",
        h("span", { class: "log-src" }, line.source || ""), " ",
        h("span", { class: "log-msg" }, line.message ?? ""), "\n"));
    }
    pending = [];
    panel.querySelector(".log-empty")?.remove();
    panel.append(fragment);
    while (lines > MAX_LINES && panel.firstChild) {
      panel.firstChild.remove();
      lines -= 1;
    }
    if (atBottom) panel.scrollTop = panel.scrollHeight;
  }

  function add(line) {
    pending.push(line);
    lines += 1;
    if (!frame) frame = requestAnimationFrame(flush);
  }

  async function start() {
    clearTimeout(retry);
    controller?.abort();
    if (closed) return;
    const current = context.session.apps.apps.get(name);
    replace(panel);
    lines = 0;
    if (!current || current.state === "created") {
      status.textContent = "";
      panel.append(h("span", { class: "log-empty" }, "This app has not run since the server started, so there is no log yet. Its output shows here as soon as it starts."));
      return;
    }
    const mine = new AbortController();
    controller = mine;
    status.textContent = "Following the log live.";
    panel.append(h("span", { class: "log-empty" }, "No output yet: new lines show here as the app writes them."));
    try {
      const response = await api.logs(name, { tail: 200, follow: true, signal: mine.signal });
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let newline;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const text = buffer.slice(0, newline).trim();
          buffer = buffer.slice(newline + 1);
          if (!text) continue;
          try {
            add(JSON.parse(text));
          } catch {
            add({ time: new Date().toISOString(), source: "console", level: "info", message: text });
          }
        }
      }
      if (!closed && controller === mine) {
        status.textContent = "The log stream ended (the app or the server restarted). Following again…";
        retry = setTimeout(start, 2000);
      }
    } catch (error) {
      if (error.name === "AbortError" || closed || controller !== mine) return;
      status.textContent = `The log could not be followed: ${error.friendly || error.message}. Trying again shortly.`;
      retry = setTimeout(start, 5000);
    }
  }
  start();

  return {
    update(current) {
      // A new version, a start or a restart runs a new runner with a new log, and the
      // server's followed log stays on the old one: follow again on any change of status.
      const key = `${current.version}/${current.state}/${current.desired_state}/${current.restarts}`;
      if (lastKey !== null && key !== lastKey) start();
      lastKey = key;
    },
    cleanup() {
      closed = true;
      clearTimeout(retry);
      cancelAnimationFrame(frame);
      controller?.abort();
    },
  };
}
