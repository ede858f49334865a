// The apps page: the tenant's quota, the deploy panel and every app with its live status,
// usage against its quota and a chart of records per second and lag.
import { api } from "./api.js";
import { h, replace, notice, pageTitle } from "./ui.js";
import { bytes, count, cpus, number, percent, STATE_TEXT, CRASH_TEXT } from "./format.js";
import { chart } from "./chart.js";
import { deployPanel, runAction, deleteApp } from "./actions.js";

export function renderApps(container, _params, context) {
  const { session, can } = context;
  const state = session.apps;
  const heading = h("h1", {}, "Apps");
  const quotaBody = h("div", { class: "quota-summary", id: "tenant-quota" }, h("p", { class: "muted" }, "Loading your team's quota…"));
  const listBody = h("div", { id: "apps-list-body" });
  const cards = new Map();

  replace(container,
    h("div", { class: "page-head" },
      h("div", {}, heading, h("p", { class: "subtitle" }, `The live data apps of team ${session.tenant}.`))),
    h("section", { class: "panel", "aria-labelledby": "quota-heading" },
      h("h2", { id: "quota-heading" }, "Your team's quota"), quotaBody),
    can("deploy") ? deployPanel(context) : null,
    h("section", { class: "panel", "aria-labelledby": "apps-heading" },
      h("h2", { id: "apps-heading" }, "Your apps"), listBody));
  pageTitle("Apps", heading);

  // ---- The quota: reloaded when apps start, stop, come or go.
  let quotaTimer = null;
  async function loadQuota() {
    try {
      const answer = await api.quota();
      renderQuota(quotaBody, answer);
    } catch (error) {
      replace(quotaBody, notice("error", "Your team's quota could not be loaded.", h("p", {}, error.friendly || String(error))));
    }
  }
  function quotaSoon() {
    clearTimeout(quotaTimer);
    quotaTimer = setTimeout(loadQuota, 400);
  }
  loadQuota();

  // ---- The apps
  let list = null;
  function renderList() {
    if (!state.loaded) {
      replace(listBody, h("p", { class: "muted" }, "Loading your apps…"));
      list = null;
      return;
    }
    const apps = state.sorted();
    if (!apps.length) {
      cards.clear();
      list = null;
      replace(listBody, h("div", { class: "empty", id: "apps-empty" },
        h("strong", {}, "No apps yet"),
        can("deploy") ? "Deploy a bundle above to add your team's first app." : "Your team's developers deploy apps; they show up here as soon as they do."));
      return;
    }
    if (!list) {
      list = h("ul", { class: "apps-list", id: "apps-list" });
      replace(listBody, list);
    }
    const names = new Set(apps.map((a) => a.name));
    for (const [name, card] of cards) {
      if (!names.has(name)) {
        card.element.remove();
        cards.delete(name);
      }
    }
    let previous = null;
    for (const app of apps) {
      let card = cards.get(app.name);
      if (!card) {
        card = appCard(app, context);
        cards.set(app.name, card);
      }
      card.update(app, state.history.get(app.name));
      const expected = previous ? previous.nextSibling : list.firstChild;
      if (card.element !== expected) list.insertBefore(card.element, expected);
      previous = card.element;
    }
  }
  renderList();

  const stopChanges = state.onChange((kind, name) => {
    if (kind === "sample") {
      for (const [appName, card] of cards) {
        const app = state.apps.get(appName);
        if (app) card.update(app, state.history.get(appName));
      }
      return;
    }
    renderList();
    if (kind !== "state") quotaSoon();
  });
  const stopSampling = state.sample();
  return () => {
    stopChanges();
    stopSampling();
    clearTimeout(quotaTimer);
  };
}

function meterBlock(label, used, whole, text) {
  const fill = h("span", {});
  const pct = percent(used, whole);
  fill.style.width = `${pct}%`;
  const meter = h("div", { class: `meter${pct >= 100 ? " full" : pct >= 80 ? " high" : ""}`, "aria-hidden": "true" }, fill);
  return h("div", { class: "meter-block" }, h("div", { class: "meter-label" }, h("span", {}, label), h("span", {}, text)), meter);
}

function renderQuota(container, answer) {
  const q = answer.quota;
  replace(container,
    meterBlock("Apps", q.used.apps, q.max_apps, `${count(q.used.apps)} of ${count(q.max_apps)}`),
    meterBlock("Memory of running apps", q.used.memory_bytes, q.memory_bytes, `${bytes(q.used.memory_bytes)} of ${bytes(q.memory_bytes)}`),
    meterBlock("CPUs of running apps", q.used.cpus, q.cpus, `${number(q.used.cpus)} of ${cpus(q.cpus)}`),
    h("div", { class: "meter-block" },
      h("div", { class: "meter-label" }, h("span", {}, "Kafka topics allowed")),
      h("p", { class: "small", id: "tenant-topics" }, answer.topics.length ? answer.topics.join(", ") : "none")),
  );
  container.dataset.memoryBytes = String(q.memory_bytes);
  container.dataset.maxApps = String(q.max_apps);
}

/** CPU use as a share of the app's quota: "12%", "<1%". */
function share(used, quota) {
  if (!quota) return number(used);
  const pct = (used / quota) * 100;
  return pct > 0 && pct < 1 ? "<1%" : `${Math.round(pct)}%`;
}

/** One app's card; `update(app, history)` refreshes it in place (focus stays put). */
export function appCard(app, context) {
  const { can } = context;
  const name = app.name;
  const titleId = `app-${name}-title`;
  const link = h("a", { href: `#/apps/${encodeURIComponent(name)}`, id: titleId }, name);
  const badge = h("span", { class: "badge", "data-field": "state" });
  const version = h("span", { class: "muted small", "data-field": "version" });
  const desired = h("span", { class: "muted small", "data-field": "desired" });
  const crash = h("div", { class: "crash", "data-field": "crash" });
  const stats = h("ul", { class: "app-stats" });
  const fields = {};
  for (const [key, label] of [["restarts", "Restarts"], ["records", "Records"], ["lag", "Lag"], ["cpu", "CPU"], ["memory", "Memory"], ["pids", "Processes"]]) {
    fields[key] = h("span", { class: "stat-value", "data-field": key });
    stats.append(h("li", {}, h("span", { class: "stat-label" }, label), fields[key]));
  }
  const figure = chart(name);
  const error = h("div", { class: "card-error", "aria-live": "polite" });
  let actions = null;
  let toggle = null;
  if (can("control")) {
    toggle = h("button", { type: "button", class: "button", "data-action": "start" }, "Start");
    toggle.setAttribute("aria-describedby", titleId);
    toggle.addEventListener("click", () => {
      if (toggle.getAttribute("aria-disabled") === "true") return;
      runAction(context, name, toggle.dataset.action, toggle, error);
    });
    const restart = h("button", { type: "button", class: "button", "data-action": "restart", "aria-describedby": titleId }, "Restart");
    restart.addEventListener("click", () => {
      if (restart.getAttribute("aria-disabled") !== "true") runAction(context, name, "restart", restart, error);
    });
    const remove = h("button", { type: "button", class: "button danger-outline", "data-action": "delete", "aria-describedby": titleId }, "Delete");
    remove.addEventListener("click", () => deleteApp(context, name, error));
    const edit = h("a", { class: "button", href: `#/apps/${encodeURIComponent(name)}/edit`, "data-action": "edit", "aria-describedby": titleId }, "Edit code");
    actions = h("div", { class: "app-actions" }, toggle, restart, edit, remove);
  }
  const element = h("li", { class: "app-card", "data-app": name, "aria-labelledby": titleId },
    h("div", {},
      h("div", { class: "app-title" }, link, badge),
      h("div", { class: "app-meta" }, version, " ", desired),
      crash, error),
    stats,
    figure,
    actions);

  function update(current, history) {
    const stateName = current.state || "created";
    badge.className = `badge ${stateName}`;
    badge.textContent = STATE_TEXT[stateName] || stateName;
    element.dataset.state = stateName;
    element.dataset.desired = current.desired_state;
    version.textContent = `Version ${current.version}`;
    const settling = (current.desired_state === "running") !== (stateName === "running" || stateName === "starting" || stateName === "backoff");
    desired.textContent = settling ? (current.desired_state === "running" ? "· set to run" : "· set to stop") : "";
    const failed = current.crash_reason && (stateName === "crashed" || stateName === "backoff" || (stateName === "stopped" && current.desired_state === "running"));
    if (failed) {
      replace(crash, h("strong", {}, CRASH_TEXT[current.crash_reason] || `Crashed (${current.crash_reason})`),
        current.last_crash ? h("span", { class: "crash-detail" }, `: ${current.last_crash}`) : null, " ",
        h("a", { href: `#/apps/${encodeURIComponent(name)}/logs` }, "See its log"));
      crash.dataset.reason = current.crash_reason;
    } else if (current.crash_reason && current.last_crash) {
      replace(crash, h("span", { class: "muted" }, `Last crash: ${CRASH_TEXT[current.crash_reason] || current.crash_reason}`));
      crash.dataset.reason = current.crash_reason;
    } else {
      replace(crash);
      delete crash.dataset.reason;
    }
    fields.restarts.textContent = count(current.restarts ?? 0);
    fields.records.textContent = count(current.records ?? 0);
    fields.lag.textContent = current.lag === null || current.lag === undefined ? "—" : count(current.lag);
    const quota = current.quota || {};
    const usage = current.usage;
    const last = history && history.length ? history[history.length - 1] : null;
    fields.cpu.textContent = `${usage && last && last.cpu !== null ? share(last.cpu, quota.cpus) : "—"} of ${cpus(quota.cpus)}`;
    fields.memory.textContent = `${usage ? bytes(usage.memory_bytes) : "—"} of ${bytes(quota.memory_bytes)}`;
    fields.pids.textContent = `${usage ? count(usage.pids) : "—"} of ${count(quota.pids)}`;
    fields.memory.dataset.quota = String(quota.memory_bytes);
    if (toggle && toggle.getAttribute("aria-disabled") !== "true") {
      const running = current.desired_state === "running";
      toggle.dataset.action = running ? "stop" : "start";
      toggle.textContent = running ? "Stop" : "Start";
      toggle.className = running ? "button" : "button primary";
    }
    figure.update(history);
  }
  return { element, update };
}
