// The stream (docs/protocol.md): one WebSocket per page for app discovery and grid
// subscriptions. It authenticates with a first `auth` message (a browser cannot set the
// Authorization header), reconnects with a growing delay, and after a reconnect asks for
// the apps and every subscription again (each gets a new snapshot).

const DELAYS = [500, 1000, 2000, 4000, 8000, 15000, 30000];

export class Stream {
  constructor(token) {
    this.token = token;
    this.socket = null;
    this.attempt = 0;
    this.closed = false;
    this.ready = null; // the `ready` message once authenticated
    this.subscriptions = new Map(); // id -> {app, grid, options, handler}
    this.appWatchers = new Set();
    this.statusListeners = new Set();
    this.nextId = 1;
    this.status = "connecting";
    this.pingTimer = null;
  }

  /** Resolves with the `ready` message, or rejects with {code, message} when refused. */
  connect() {
    return new Promise((resolve, reject) => {
      this.firstConnect = { resolve, reject };
      this.open();
    });
  }

  open() {
    if (this.closed) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/api/v1/stream`);
    this.socket = socket;
    this.setStatus(this.attempt === 0 && !this.ready ? "connecting" : "reconnecting");
    socket.addEventListener("open", () => {
      socket.send(JSON.stringify({ op: "auth", token: this.token }));
      if (this.appWatchers.size) this.send({ op: "watch_apps" });
      for (const [id, sub] of this.subscriptions) this.sendSubscribe(id, sub);
    });
    socket.addEventListener("message", (event) => this.receive(event.data));
    socket.addEventListener("close", (event) => this.closedBy(socket, event));
    socket.addEventListener("error", () => { /* a close follows */ });
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    switch (message.type) {
      case "ready":
        this.ready = message;
        this.attempt = 0;
        this.setStatus("live");
        clearInterval(this.pingTimer);
        this.pingTimer = setInterval(() => this.send({ op: "ping" }), 25000);
        if (this.firstConnect) {
          this.firstConnect.resolve(message);
          this.firstConnect = null;
        }
        break;
      case "error":
        if (message.id !== undefined && message.id !== null) {
          this.subscriptions.get(String(message.id))?.handler(message);
        } else if (["unauthorized", "forbidden", "over_quota"].includes(message.code) && !this.ready) {
          this.refusal = message;
        } else if (["unauthorized", "forbidden"].includes(message.code)) {
          this.refusal = message;
        }
        break;
      case "apps":
      case "app":
        for (const watcher of this.appWatchers) watcher(message);
        break;
      case "subscribed":
      case "snapshot":
      case "delta":
      case "unsubscribed":
        this.subscriptions.get(String(message.id))?.handler(message);
        break;
      default:
        break;
    }
  }

  closedBy(socket, event) {
    if (socket !== this.socket) return;
    clearInterval(this.pingTimer);
    const refusal = this.refusal;
    this.refusal = null;
    if (this.closed) return;
    if (refusal && (refusal.code === "unauthorized" || refusal.code === "forbidden" || (!this.ready && refusal.code === "over_quota"))) {
      this.closed = true;
      this.setStatus("refused");
      if (this.firstConnect) {
        this.firstConnect.reject(refusal);
        this.firstConnect = null;
      } else {
        this.onRefused?.(refusal);
      }
      return;
    }
    if (this.firstConnect && this.attempt >= 2) {
      this.firstConnect.reject({ code: "network", message: `the live connection closed (code ${event.code})` });
      this.firstConnect = null;
    }
    this.setStatus("reconnecting");
    const delay = DELAYS[Math.min(this.attempt, DELAYS.length - 1)];
    this.attempt += 1;
    this.reconnectTimer = setTimeout(() => this.open(), delay);
  }

  setStatus(status) {
    this.status = status;
    for (const listener of this.statusListeners) listener(status);
  }

  onStatus(listener) {
    this.statusListeners.add(listener);
    listener(this.status);
    return () => this.statusListeners.delete(listener);
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  /** Calls `listener` with every `apps` and `app` message; returns the unwatch function. */
  watchApps(listener) {
    this.appWatchers.add(listener);
    this.send({ op: "watch_apps" });
    return () => this.appWatchers.delete(listener);
  }

  /** Subscribes to a grid; `handler` gets subscribed, snapshot, delta and error messages. */
  subscribe(app, grid, options, handler) {
    const id = `g${this.nextId++}`;
    const sub = { app, grid, options, handler };
    this.subscriptions.set(id, sub);
    this.sendSubscribe(id, sub);
    return () => {
      if (this.subscriptions.delete(id)) this.send({ op: "unsubscribe", id });
    };
  }

  sendSubscribe(id, sub) {
    this.send({ op: "subscribe", id, app: sub.app, grid: sub.grid, ...sub.options });
  }

  close() {
    this.closed = true;
    clearInterval(this.pingTimer);
    clearTimeout(this.reconnectTimer);
    this.subscriptions.clear();
    this.appWatchers.clear();
    this.statusListeners.clear();
    if (this.socket && this.socket.readyState <= WebSocket.OPEN) this.socket.close(1000, "signed out");
    this.socket = null;
  }
}
