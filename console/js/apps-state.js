// The tenant's apps as the console knows them. State, desired state, crash reason and
// restarts come from the stream's discovery (`watch_apps`): pushed, never polled. Records,
// lag and usage, which make no events, are sampled from GET /api/v1/apps every few seconds
// while a page shows them, for the numbers and the charts.
import { api } from "./api.js";

const VOLATILE = ["records", "lag", "usage", "updated_at"];
const HISTORY_SECONDS = 5 * 60;
export const SAMPLE_SECONDS = 3;

export class AppsState {
  constructor(stream) {
    this.stream = stream;
    this.apps = new Map();
    this.history = new Map(); // name -> [{t, records, lag, rate, cpu}]
    this.pushedAt = new Map(); // name -> when the stream last described it (performance.now())
    this.loaded = false;
    this.listeners = new Set();
    this.samplers = 0;
    this.sampleTimer = null;
    // Every `apps` and `app` message; the list already known when this starts, as an `apps`.
    this.unwatch = stream.watchApps((apps, connection, message) => {
      if (message) this.receive(message);
      else if (apps && !this.loaded) this.receive({ type: "apps", apps });
    });
  }

  onChange(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  notify(kind, name) {
    for (const listener of this.listeners) listener(kind, name);
  }

  receive(message) {
    const now = performance.now();
    if (message.type === "apps") {
      for (const app of message.apps) this.pushedAt.set(app.name, now);
      const next = new Map();
      for (const app of message.apps) {
        const before = this.apps.get(app.name);
        next.set(app.name, before ? keepVolatile(app, before) : app);
      }
      for (const name of this.history.keys()) if (!next.has(name)) this.history.delete(name);
      this.apps = next;
      this.loaded = true;
      this.notify("all", null);
    } else if (message.type === "app") {
      const app = message.app;
      this.pushedAt.set(app.name, now);
      if (message.event === "delete") {
        this.apps.delete(app.name);
        this.history.delete(app.name);
      } else {
        const before = this.apps.get(app.name);
        this.apps.set(app.name, before ? keepVolatile(app, before) : app);
      }
      this.notify(message.event, app.name);
    }
  }

  /** An App from the REST API, answering a request sent at `askedAt` (performance.now()).
   * It shows our action at once, unless the stream described the app since: an answer can
   * arrive after the events that followed it, and must not take the page back. */
  applyAnswer(app, askedAt) {
    if (!app || !app.name) return;
    if ((this.pushedAt.get(app.name) ?? -Infinity) > askedAt) return;
    this.apps.set(app.name, { ...this.apps.get(app.name), ...app });
    this.notify("answer", app.name);
  }

  removed(name) {
    this.apps.delete(name);
    this.history.delete(name);
    this.notify("delete", name);
  }

  sorted() {
    return [...this.apps.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Starts sampling records, lag and usage; returns the stop function. */
  sample() {
    this.samplers += 1;
    if (this.samplers === 1) this.tick();
    return () => {
      this.samplers -= 1;
      if (this.samplers === 0) {
        clearTimeout(this.sampleTimer);
        this.sampleTimer = null;
      }
    };
  }

  async tick() {
    clearTimeout(this.sampleTimer);
    if (this.samplers === 0) return;
    if (document.visibilityState !== "hidden") {
      try {
        const apps = await api.apps();
        this.takeSample(apps, performance.now() / 1000);
      } catch {
        // The next sample tries again; the stream's status shows a lost connection.
      }
    }
    if (this.samplers > 0) this.sampleTimer = setTimeout(() => this.tick(), SAMPLE_SECONDS * 1000);
  }

  takeSample(apps, now) {
    for (const sampled of apps) {
      const app = this.apps.get(sampled.name);
      if (!app) continue;
      for (const key of VOLATILE) app[key] = sampled[key];
      const history = this.history.get(sampled.name) || [];
      const previous = history[history.length - 1];
      let rate = null;
      let cpu = null;
      if (previous) {
        const seconds = now - previous.t;
        if (seconds > 0) {
          rate = Math.max(0, (sampled.records - previous.records) / seconds);
          const cpuNow = sampled.usage?.cpu_seconds;
          if (cpuNow !== undefined && previous.cpuSeconds !== null && cpuNow >= previous.cpuSeconds) {
            cpu = (cpuNow - previous.cpuSeconds) / seconds;
          }
        }
      }
      history.push({ t: now, records: sampled.records, lag: sampled.lag, rate, cpu, cpuSeconds: sampled.usage?.cpu_seconds ?? null });
      while (history.length && now - history[0].t > HISTORY_SECONDS) history.shift();
      this.history.set(sampled.name, history);
    }
    this.notify("sample", null);
  }

  close() {
    this.unwatch();
    clearTimeout(this.sampleTimer);
    this.listeners.clear();
  }
}

function keepVolatile(app, before) {
  const merged = { ...app };
  for (const key of VOLATILE) if (!(key in app) && key in before) merged[key] = before[key];
  return merged;
}
