/*
 * AeroGrid add-in core: one WebSocket to the server's stream (docs/protocol.md) carrying
 * every subscription of the workbook, subscriptions shared between cells that ask for the
 * same thing, grids kept up to date from snapshots and deltas, the tenant's apps from
 * watch_apps, reconnection with backoff.
 *
 * Plain JavaScript loaded as it is: in a page (Excel's shared runtime, the task pane) it
 * defines `AeroGridCore` on the global object; under node, `require()` returns the same.
 * It needs only a WebSocket class and timers, given to it or taken from the global object.
 */
(function (root, factory) {
  "use strict";
  var api = factory();
  if (typeof module === "object" && module && module.exports) {
    module.exports = api;
  } else {
    root.AeroGridCore = api;
  }
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  var PROTOCOL_PATH = "/api/v1/stream";
  var DEFAULT_MAX_RATE = 2;

  // ------------------------------------------------------------------------------------
  // Keys and rows

  /** A grid key (a string or an integer) as a map key: 42 and "42" are two rows. */
  function keyId(key) {
    return (typeof key === "number" ? "n:" : "s:") + String(key);
  }

  function codePoints(text) {
    var points = [];
    var normalized = typeof text.normalize === "function" ? text.normalize("NFC") : text;
    for (var i = 0; i < normalized.length; i++) {
      var code = normalized.codePointAt(i);
      points.push(code);
      if (code > 0xffff) i++;
    }
    return points;
  }

  /** The server's order: integers first, in numeric order, then strings by code point (NFC). */
  function compareKeys(a, b) {
    var an = typeof a === "number", bn = typeof b === "number";
    if (an && bn) return a < b ? -1 : a > b ? 1 : 0;
    if (an !== bn) return an ? -1 : 1;
    if (a === b) return 0;
    var pa = codePoints(a), pb = codePoints(b);
    var n = Math.min(pa.length, pb.length);
    for (var i = 0; i < n; i++) {
      if (pa[i] !== pb[i]) return pa[i] < pb[i] ? -1 : 1;
    }
    return pa.length - pb.length;
  }

  /** One subscription's grid as the server sent it: a snapshot replaces it, a delta merges
   * changed cells, adds rows and removes the rows that come as null. */
  function GridReplica() {
    this.rows = new Map(); // keyId -> {key, cells}
    this.columns = [];
    this.epoch = null;
    this.version = null;
    this.hasSnapshot = false;
    this.sorted = null;
  }

  GridReplica.prototype.applySnapshot = function (message) {
    var rows = new Map();
    var list = message.rows || [];
    for (var i = 0; i < list.length; i++) {
      var key = list[i][0];
      rows.set(keyId(key), { key: key, cells: Object.assign({}, list[i][1] || {}) });
    }
    this.rows = rows;
    this.columns = Array.isArray(message.columns) ? message.columns.slice() : [];
    this.epoch = message.epoch;
    this.version = message.version;
    this.hasSnapshot = true;
    this.sorted = null;
  };

  GridReplica.prototype.applyDelta = function (message) {
    var list = message.rows || [];
    for (var i = 0; i < list.length; i++) {
      var key = list[i][0], cells = list[i][1], id = keyId(key);
      if (cells === null) {
        this.rows.delete(id);
        continue;
      }
      var row = this.rows.get(id);
      if (!row) {
        row = { key: key, cells: {} };
        this.rows.set(id, row);
      }
      for (var column in cells) {
        if (Object.prototype.hasOwnProperty.call(cells, column)) row.cells[column] = cells[column];
      }
    }
    this.epoch = message.epoch;
    this.version = message.version;
    this.sorted = null;
  };

  /** The rows in the server's key order. */
  GridReplica.prototype.sortedRows = function () {
    if (!this.sorted) {
      this.sorted = Array.from(this.rows.values()).sort(function (a, b) { return compareKeys(a.key, b.key); });
    }
    return this.sorted;
  };

  /** The grid's columns, then any column a row has that the grid did not declare. */
  GridReplica.prototype.allColumns = function () {
    var seen = new Set(this.columns), extra = [];
    this.rows.forEach(function (row) {
      for (var column in row.cells) {
        if (!seen.has(column)) {
          seen.add(column);
          extra.push(column);
        }
      }
    });
    return this.columns.concat(extra.sort());
  };

  GridReplica.prototype.row = function (key) {
    return this.rows.get(keyId(key)) || null;
  };

  // ------------------------------------------------------------------------------------
  // Settings

  var SETTING_KEYS = { server: "aerogrid.server", token: "aerogrid.token", maxRate: "aerogrid.maxRate" };

  /** The server, token and rate as kept in localStorage (shared by the functions and the task
   * pane). `fallbackServer` is used when none is stored: the address the add-in came from. */
  function readSettings(storage, fallbackServer) {
    var get = function (name) {
      try { return storage ? storage.getItem(SETTING_KEYS[name]) : null; } catch (e) { return null; }
    };
    var rate = parseInt(get("maxRate") || "", 10);
    return {
      server: normalizeServer(get("server") || fallbackServer || ""),
      token: (get("token") || "").trim(),
      maxRate: rate >= 1 ? Math.min(rate, 50) : DEFAULT_MAX_RATE,
    };
  }

  function writeSettings(storage, settings) {
    if (!storage) return;
    if (settings.server !== undefined) storage.setItem(SETTING_KEYS.server, normalizeServer(settings.server));
    if (settings.token !== undefined) storage.setItem(SETTING_KEYS.token, String(settings.token).trim());
    if (settings.maxRate !== undefined) storage.setItem(SETTING_KEYS.maxRate, String(settings.maxRate));
  }

  /** "host:8443" → "https://host:8443"; no trailing slash. */
  function normalizeServer(server) {
    var text = String(server || "").trim();
    if (!text) return "";
    if (!/^[a-z]+:\/\//i.test(text)) text = "https://" + text;
    return text.replace(/\/+$/, "");
  }

  /** The stream's WebSocket URL for a server URL: https → wss, http → ws. */
  function streamUrl(server) {
    var base = normalizeServer(server);
    if (/^https:/i.test(base)) return "wss:" + base.slice(6) + PROTOCOL_PATH;
    if (/^http:/i.test(base)) return "ws:" + base.slice(5) + PROTOCOL_PATH;
    if (/^wss?:/i.test(base)) return base + PROTOCOL_PATH;
    return null;
  }

  // ------------------------------------------------------------------------------------
  // The connection

  function globalObject() {
    if (typeof globalThis !== "undefined") return globalThis;
    if (typeof self !== "undefined") return self;
    if (typeof window !== "undefined") return window;
    return {};
  }

  /**
   * One WebSocket to the stream, shared by every cell of the workbook.
   *
   * options: server, token, maxRate (deltas a second, default 2), WebSocket (the class;
   * default the global one), timers ({setTimeout, clearTimeout, setInterval, clearInterval,
   * now}), backoff ({initial, max} in ms), lingerMs (how long a subscription nobody uses
   * stays before it is ended: Excel cancels and calls again when it recalculates),
   * idleCloseMs (how long the socket stays open with nothing to carry), heartbeatMs,
   * deadAfterMs (no message for that long: the connection is taken as dead), connectTimeoutMs,
   * log (a function).
   *
   * States: "unconfigured" (no server or token), "idle" (nothing to carry), "connecting",
   * "connected", "waiting" (to reconnect, at `retryAt`), "refused" (the token was refused:
   * no retry until the settings change), "closed".
   */
  function Connection(options) {
    options = options || {};
    var root = globalObject();
    this.WebSocket = options.WebSocket || root.WebSocket;
    var timers = options.timers || {};
    this.timers = {
      setTimeout: timers.setTimeout || root.setTimeout.bind(root),
      clearTimeout: timers.clearTimeout || root.clearTimeout.bind(root),
      setInterval: timers.setInterval || root.setInterval.bind(root),
      clearInterval: timers.clearInterval || root.clearInterval.bind(root),
      now: timers.now || function () { return Date.now(); },
    };
    this.backoff = Object.assign({ initial: 250, max: 10000 }, options.backoff || {});
    this.lingerMs = options.lingerMs === undefined ? 1000 : options.lingerMs;
    this.idleCloseMs = options.idleCloseMs === undefined ? 10000 : options.idleCloseMs;
    this.heartbeatMs = options.heartbeatMs || 20000;
    this.deadAfterMs = options.deadAfterMs || 60000;
    this.connectTimeoutMs = options.connectTimeoutMs || 15000;
    this.log = options.log || function () {};

    this.server = normalizeServer(options.server);
    this.token = (options.token || "").trim();
    this.maxRate = options.maxRate >= 1 ? Math.min(Math.floor(options.maxRate), 50) : DEFAULT_MAX_RATE;

    this.subs = new Map();        // share key -> Subscription
    this.byId = new Map();        // server id on the current socket -> Subscription
    this.nextId = 1;
    this.apps = null;             // Map name -> App, from watch_apps; null until known
    this.appWatchers = new Set();
    this.stateListeners = new Set();
    this.socket = null;
    this.state = "idle";
    this.refusal = null;          // {code, message} when the server refused the token
    this.lastError = null;        // why the last connection ended, for people
    this.tenant = null;
    this.attempts = 0;
    this.retryAt = null;
    this.retryTimer = null;
    this.idleTimer = null;
    this.heartbeat = null;
    this.connectTimer = null;
    this.lastReceived = 0;
    this.stats = { connects: 0, messages: 0, sent: 0 };
    this.updateConfiguredState();
  }

  Connection.prototype.updateConfiguredState = function () {
    if (!this.server || !this.token || !streamUrl(this.server)) {
      this.setState("unconfigured");
    } else if (this.state === "unconfigured") {
      this.setState("idle");
    }
  };

  Connection.prototype.describe = function () {
    return {
      state: this.state,
      server: this.server,
      tenant: this.tenant,
      refusal: this.refusal,
      lastError: this.lastError,
      retryAt: this.retryAt,
      subscriptions: this.subs.size,
      maxRate: this.maxRate,
    };
  };

  Connection.prototype.onState = function (listener) {
    var self = this;
    this.stateListeners.add(listener);
    return function () { self.stateListeners.delete(listener); };
  };

  Connection.prototype.setState = function (state) {
    this.state = state;
    this.notifyAll();
  };

  Connection.prototype.notifyAll = function () {
    var info = this.describe();
    this.stateListeners.forEach(function (listener) { safely(listener, info); });
    this.subs.forEach(function (sub) { sub.notify(); });
    this.notifyApps();
  };

  /** New settings: the socket starts over with them (every subscription again). */
  Connection.prototype.configure = function (settings) {
    if (settings.server !== undefined) this.server = normalizeServer(settings.server);
    if (settings.token !== undefined) this.token = String(settings.token || "").trim();
    if (settings.maxRate !== undefined) {
      var rate = parseInt(settings.maxRate, 10);
      this.maxRate = rate >= 1 ? Math.min(rate, 50) : DEFAULT_MAX_RATE;
    }
    this.refusal = null;
    this.lastError = null;
    this.attempts = 0;
    this.dropSocket();
    this.cancelRetry();
    this.state = "idle";
    this.updateConfiguredState();
    this.ensure();
  };

  /** Whether anything needs the socket: a subscription or someone watching the apps. */
  Connection.prototype.needed = function () {
    return this.subs.size > 0 || this.appWatchers.size > 0;
  };

  /** Opens the socket when something needs it and it is not open, waiting or refused. */
  Connection.prototype.ensure = function () {
    if (this.state === "closed" || this.state === "refused" || this.state === "unconfigured") return;
    if (!this.needed()) {
      this.scheduleIdleClose();
      return;
    }
    this.cancelIdleClose();
    if (this.socket || this.retryTimer) return;
    this.open();
  };

  Connection.prototype.open = function () {
    var url = streamUrl(this.server);
    var self = this;
    var socket;
    this.retryAt = null;
    try {
      socket = new this.WebSocket(url);
    } catch (error) {
      this.lastError = "cannot open " + url + ": " + (error && error.message || error);
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    this.byId = new Map();
    this.stats.connects++;
    // A connection that neither opens nor fails (a network that drops packets) is given up.
    this.connectTimer = this.timers.setTimeout(function () {
      self.connectTimer = null;
      if (self.socket !== socket || socket.readyState === 1) return;
      self.lastError = "no answer from " + self.server + " within " + Math.round(self.connectTimeoutMs / 1000) + " s";
      self.socketEnded(null, null);
    }, this.connectTimeoutMs);
    this.setState("connecting");
    socket.onopen = function () {
      if (self.socket !== socket) return;
      self.clearConnectTimer();
      self.lastReceived = self.timers.now();
      self.send({ op: "auth", token: self.token });
      // The server handles what follows `auth` once it is through: no need to wait.
      self.send({ op: "watch_apps" });
      self.subs.forEach(function (sub) { self.sendSubscribe(sub); });
      self.startHeartbeat();
    };
    socket.onmessage = function (event) {
      if (self.socket !== socket) return;
      self.lastReceived = self.timers.now();
      self.stats.messages++;
      var message;
      try {
        message = JSON.parse(typeof event.data === "string" ? event.data : String(event.data));
      } catch (error) {
        self.log("aerogrid: a message that is not JSON", event.data);
        return;
      }
      try {
        self.handle(message);
      } catch (error) {
        self.log("aerogrid: handling a message failed", error);
      }
    };
    // An error ends the socket: browsers send a close after it, but node's WebSocket stays
    // CONNECTING for good when the connection is refused.
    socket.onerror = function () {
      if (self.socket !== socket) return;
      if (self.state === "connecting") self.lastError = "cannot reach " + self.server;
      self.socketEnded(null, null);
    };
    socket.onclose = function (event) {
      if (self.socket !== socket) return;
      self.socketEnded(event && event.code, event && event.reason);
    };
  };

  Connection.prototype.socketEnded = function (code, reason) {
    this.detach();
    if (this.state === "refused" || this.state === "closed") {
      this.notifyAll();
      return;
    }
    if (this.state === "connected") {
      this.lastError = "the connection to " + this.server + " ended" + (code ? " (" + code + (reason ? " " + reason : "") + ")" : "");
    } else if (!this.lastError) {
      this.lastError = "cannot reach " + this.server;
    }
    this.subs.forEach(function (sub) { sub.connectionLost(); });
    if (this.needed()) {
      this.scheduleRetry();
    } else {
      this.setState("idle");
    }
  };

  Connection.prototype.clearConnectTimer = function () {
    if (this.connectTimer) this.timers.clearTimeout(this.connectTimer);
    this.connectTimer = null;
  };

  /** Forgets the socket (its late events are ignored) and closes it. */
  Connection.prototype.detach = function () {
    var socket = this.socket;
    this.socket = null;
    this.clearConnectTimer();
    this.byId = new Map();
    this.stopHeartbeat();
    if (socket) {
      socket.onopen = socket.onmessage = socket.onerror = socket.onclose = null;
      try { socket.close(); } catch (error) { /* already closed */ }
    }
  };

  Connection.prototype.dropSocket = function () {
    if (this.socket) this.detach();
    this.subs.forEach(function (sub) { sub.connectionLost(); });
  };

  Connection.prototype.scheduleRetry = function (minimum) {
    var self = this;
    this.cancelRetry();
    var delay = Math.min(this.backoff.max, this.backoff.initial * Math.pow(2, this.attempts));
    delay = Math.max(minimum || 0, Math.round(delay * (0.8 + 0.4 * Math.random())));
    this.attempts++;
    this.retryAt = this.timers.now() + delay;
    this.retryTimer = this.timers.setTimeout(function () {
      self.retryTimer = null;
      self.retryAt = null;
      if (self.state === "waiting") self.state = "idle";
      self.ensure();
    }, delay);
    this.setState("waiting");
  };

  Connection.prototype.cancelRetry = function () {
    if (this.retryTimer) this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryAt = null;
  };

  /** Try now instead of at `retryAt` (the task pane's "Connect" button). */
  Connection.prototype.retryNow = function () {
    if (this.state === "refused") this.state = "idle";
    this.refusal = null;
    this.cancelRetry();
    if (this.state === "waiting") this.state = "idle";
    this.attempts = 0;
    this.ensure();
  };

  Connection.prototype.scheduleIdleClose = function () {
    var self = this;
    if (this.idleTimer || !this.socket) return;
    this.idleTimer = this.timers.setTimeout(function () {
      self.idleTimer = null;
      if (!self.needed() && self.socket) {
        self.detach();
        self.setState("idle");
      }
    }, this.idleCloseMs);
  };

  Connection.prototype.cancelIdleClose = function () {
    if (this.idleTimer) this.timers.clearTimeout(this.idleTimer);
    this.idleTimer = null;
  };

  Connection.prototype.startHeartbeat = function () {
    var self = this;
    this.stopHeartbeat();
    this.heartbeat = this.timers.setInterval(function () {
      if (!self.socket) return;
      if (self.timers.now() - self.lastReceived > self.deadAfterMs) {
        // Nothing for too long, not even a pong: the network dropped without a close.
        self.lastError = "no answer from " + self.server + " for " + Math.round(self.deadAfterMs / 1000) + " s";
        self.socketEnded(null, null);
        return;
      }
      self.send({ op: "ping", id: "heartbeat" });
    }, this.heartbeatMs);
  };

  Connection.prototype.stopHeartbeat = function () {
    if (this.heartbeat) this.timers.clearInterval(this.heartbeat);
    this.heartbeat = null;
  };

  Connection.prototype.send = function (message) {
    if (!this.socket || this.socket.readyState !== 1) return false;
    try {
      this.socket.send(JSON.stringify(message));
      this.stats.sent++;
      return true;
    } catch (error) {
      this.log("aerogrid: send failed", error);
      return false;
    }
  };

  /** Ends everything: the socket, the timers, every subscription. */
  Connection.prototype.close = function () {
    this.state = "closed";
    this.cancelRetry();
    this.cancelIdleClose();
    this.detach();
    this.subs.forEach(function (sub) { sub.cancelLinger(); });
    this.subs.clear();
    this.appWatchers.clear();
    this.notifyAll();
  };

  // ---- what comes from the server

  Connection.prototype.handle = function (message) {
    var sub = message.id !== undefined && message.id !== null ? this.byId.get(String(message.id)) : null;
    switch (message.type) {
      case "ready":
        this.tenant = message.tenant || null;
        this.attempts = 0;
        this.lastError = null;
        this.refusal = null;
        this.setState("connected");
        return;
      case "subscribed":
        if (sub) sub.acknowledged = true;
        return;
      case "snapshot":
        if (sub) sub.snapshot(message);
        return;
      case "delta":
        if (sub) sub.delta(message);
        return;
      case "unsubscribed":
      case "pong":
        return;
      case "apps":
        this.apps = new Map();
        for (var i = 0; i < (message.apps || []).length; i++) this.apps.set(message.apps[i].name, message.apps[i]);
        this.appsChanged(null);
        return;
      case "app":
        this.appEvent(message.event, message.app || {});
        return;
      case "error":
        if (message.id === undefined || message.id === null) this.connectionError(message);
        else if (sub) sub.refused(message);
        return;
      default:
        return; // a type this client does not know: ignored, as the protocol asks
    }
  };

  Connection.prototype.connectionError = function (message) {
    var code = message.code;
    if (code === "unauthorized" || code === "forbidden") {
      this.refusal = { code: code, message: message.message || code };
      this.lastError = message.message || code;
      this.detach();
      this.cancelRetry();
      this.subs.forEach(function (sub) { sub.connectionLost(); });
      this.setState("refused");
    } else if (code === "over_quota") {
      // The tenant's connections are all taken: try again, slowly.
      this.lastError = message.message || code;
      this.detach();
      this.subs.forEach(function (sub) { sub.connectionLost(); });
      this.scheduleRetry(30000);
    } else {
      this.log("aerogrid: server error", message);
    }
  };

  Connection.prototype.appEvent = function (event, app) {
    if (!this.apps) this.apps = new Map();
    var name = app.name;
    if (event === "delete") {
      this.apps.delete(name);
    } else {
      this.apps.set(name, Object.assign({}, this.apps.get(name) || {}, app));
    }
    this.appsChanged(name, event);
  };

  Connection.prototype.appsChanged = function (name, event) {
    var self = this;
    this.subs.forEach(function (sub) {
      if (name !== null && sub.app !== name) return;
      if (event === "delete") {
        sub.appDeleted();
      } else if (sub.appMissing && self.apps.has(sub.app)) {
        // Deployed since it was not found: subscribe again.
        sub.appMissing = false;
        sub.error = null;
        self.sendSubscribe(sub);
      }
      sub.notify();
    });
    this.notifyApps();
  };

  Connection.prototype.notifyApps = function () {
    var self = this;
    this.appWatchers.forEach(function (listener) { safely(listener, self.appList(), self); });
  };

  /** The apps by name, or null while not known. */
  Connection.prototype.appList = function () {
    if (!this.apps) return null;
    return Array.from(this.apps.values()).sort(function (a, b) { return a.name < b.name ? -1 : a.name > b.name ? 1 : 0; });
  };

  /** Calls `listener(apps, connection)` now and whenever the apps change; returns a function
   * that stops it. */
  Connection.prototype.watchApps = function (listener) {
    var self = this;
    this.appWatchers.add(listener);
    this.ensure();
    safely(listener, this.appList(), this);
    return function () {
      self.appWatchers.delete(listener);
      self.ensure();
    };
  };

  // ---- subscriptions

  /**
   * Subscribes `listener(subscription)` to a grid: called whenever its rows, its error or
   * the connection change. Cells that ask for the same app, grid, keys and columns share
   * one server subscription. Returns a handle whose `close()` ends this cell's part.
   */
  Connection.prototype.subscribe = function (request, listener) {
    var columns = request.columns && request.columns.length ? request.columns.map(String) : null;
    var keys = request.keys && request.keys.length ? request.keys.slice() : null;
    var share = JSON.stringify([String(request.app), String(request.grid), columns, keys]);
    var sub = this.subs.get(share);
    if (!sub) {
      sub = new Subscription(this, share, String(request.app), String(request.grid), columns, keys);
      this.subs.set(share, sub);
      this.sendSubscribe(sub);
    }
    sub.cancelLinger();
    sub.listeners.add(listener);
    this.ensure();
    var closed = false;
    return {
      subscription: sub,
      close: function () {
        if (closed) return;
        closed = true;
        sub.removeListener(listener);
      },
    };
  };

  Connection.prototype.sendSubscribe = function (sub) {
    if (!this.socket || this.socket.readyState !== 1) return;
    if (sub.serverId) this.byId.delete(sub.serverId);
    sub.serverId = "s" + this.nextId++;
    sub.acknowledged = false;
    this.byId.set(sub.serverId, sub);
    var message = { op: "subscribe", id: sub.serverId, app: sub.app, grid: sub.grid, max_rate: this.maxRate };
    if (sub.columns) message.columns = sub.columns;
    if (sub.keys) message.keys = sub.keys;
    this.send(message);
  };

  Connection.prototype.endSubscription = function (sub) {
    if (this.subs.get(sub.share) === sub) this.subs.delete(sub.share);
    if (sub.serverId) {
      this.byId.delete(sub.serverId);
      // An app that was not found holds no server subscription.
      if (!sub.appMissing) this.send({ op: "unsubscribe", id: sub.serverId });
      sub.serverId = null;
      // A place is free: a subscription the connection's limit refused tries again.
      var waiting = null;
      this.subs.forEach(function (other) {
        if (!waiting && other.error && other.error.code === "over_quota" && !other.serverId) waiting = other;
      });
      if (waiting) {
        waiting.error = null;
        this.sendSubscribe(waiting);
      }
    }
    this.ensure();
  };

  /** A server subscription and the cells that share it. */
  function Subscription(connection, share, app, grid, columns, keys) {
    this.connection = connection;
    this.share = share;
    this.app = app;
    this.grid = grid;
    this.columns = columns;
    this.keys = keys;
    this.replica = new GridReplica();
    this.listeners = new Set();
    this.serverId = null;
    this.acknowledged = false;
    this.error = null;       // {code, message, what: "app" | "grid" | "other"}
    this.appMissing = false;
    this.lingerTimer = null;
    this.updates = 0;
  }

  Subscription.prototype.notify = function () {
    var self = this;
    this.listeners.forEach(function (listener) { safely(listener, self); });
  };

  Subscription.prototype.snapshot = function (message) {
    this.replica.applySnapshot(message);
    this.error = null;
    this.appMissing = false;
    this.updates++;
    this.notify();
  };

  Subscription.prototype.delta = function (message) {
    if (!this.replica.hasSnapshot) return; // never happens: a snapshot comes first
    this.replica.applyDelta(message);
    this.updates++;
    this.notify();
  };

  Subscription.prototype.refused = function (message) {
    var what = "other";
    if (message.code === "not_found") {
      if (this.acknowledged) {
        what = "grid"; // `subscribed` came first: the app runs and has no such grid (yet)
      } else {
        what = "app"; // no `subscribed`: the tenant has no such app; the server holds nothing
        this.appMissing = true;
        this.connection.byId.delete(this.serverId);
        this.serverId = null;
      }
    } else if (message.code === "over_quota" || message.code === "bad_request") {
      this.connection.byId.delete(this.serverId);
      this.serverId = null;
    }
    this.error = { code: message.code, message: message.message || message.code, what: what };
    this.notify();
  };

  Subscription.prototype.appDeleted = function () {
    if (this.serverId) {
      this.connection.send({ op: "unsubscribe", id: this.serverId });
      this.connection.byId.delete(this.serverId);
      this.serverId = null;
    }
    this.appMissing = true;
    this.replica = new GridReplica();
    this.error = { code: "not_found", message: "app '" + this.app + "' was deleted", what: "app" };
  };

  Subscription.prototype.connectionLost = function () {
    this.serverId = null;
    this.acknowledged = false;
    // Rows stay (cells keep their last values); a new snapshot replaces them.
  };

  Subscription.prototype.removeListener = function (listener) {
    var self = this;
    this.listeners.delete(listener);
    if (this.listeners.size > 0) return;
    var linger = this.connection.lingerMs;
    if (linger > 0 && this.connection.state !== "closed") {
      this.cancelLinger();
      this.lingerTimer = this.connection.timers.setTimeout(function () {
        self.lingerTimer = null;
        if (self.listeners.size === 0) self.connection.endSubscription(self);
      }, linger);
    } else {
      this.connection.endSubscription(this);
    }
  };

  Subscription.prototype.cancelLinger = function () {
    if (this.lingerTimer) this.connection.timers.clearTimeout(this.lingerTimer);
    this.lingerTimer = null;
  };

  function safely(fn, a, b) {
    try {
      fn(a, b);
    } catch (error) {
      if (typeof console !== "undefined" && console.error) console.error("aerogrid: a listener failed", error);
    }
  }

  // ------------------------------------------------------------------------------------
  // What cells show

  var APPS_HEADER = ["app", "state", "desired_state", "version", "restarts", "crash_reason"];

  /** A cell value from a grid value: Excel has no null. */
  function cellValue(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "object") return JSON.stringify(value);
    return value;
  }

  /** GRID's array: a header row ("key" and the columns), then one row per key. */
  function gridMatrix(sub, columns) {
    var replica = sub.replica;
    var names = columns && columns.length ? columns : replica.allColumns();
    var matrix = [["key"].concat(names)];
    var rows = replica.sortedRows();
    for (var i = 0; i < rows.length; i++) {
      var line = [rows[i].key];
      for (var j = 0; j < names.length; j++) line.push(cellValue(rows[i].cells[names[j]]));
      matrix.push(line);
    }
    return matrix;
  }

  /** APPS's array: a header row, then one row per app by name. */
  function appsMatrix(apps) {
    var matrix = [APPS_HEADER.slice()];
    for (var i = 0; i < apps.length; i++) {
      var app = apps[i];
      matrix.push(APPS_HEADER.map(function (field) { return cellValue(field === "app" ? app.name : app[field]); }));
    }
    return matrix;
  }

  /** The keys a VALUE cell's key may mean: Excel's 42 is the grid's 42 or "42". */
  function keyCandidates(key) {
    if (typeof key === "number") {
      return Number.isInteger(key) ? [key, String(key)] : [String(key)];
    }
    if (typeof key === "boolean") return [String(key).toUpperCase()];
    var text = String(key === null || key === undefined ? "" : key);
    if (/^-?\d{1,15}$/.test(text)) return [text, parseInt(text, 10)];
    return [text];
  }

  /**
   * Why a cell has no data, for people, or null when it should simply wait (Excel's #BUSY!).
   * `waited` is whether the cell has waited long enough that a "waiting" message helps.
   */
  function statusMessage(connection, sub, waited) {
    var state = connection.state;
    if (state === "unconfigured") {
      if (!connection.server) return "AeroGrid: no server set: open the AeroGrid task pane and enter the server's address and a token";
      return "AeroGrid: no token set: open the AeroGrid task pane and enter a token";
    }
    if (state === "refused") {
      var refusal = connection.refusal || {};
      return "AeroGrid: the server refused the token (" + (refusal.code || "unauthorized") + ": " +
        (refusal.message || "not valid") + "): set a valid token in the AeroGrid task pane";
    }
    if (state === "closed") return "AeroGrid: stopped";
    if (sub && sub.error) {
      if (sub.error.what === "app") {
        return sub.error.message.indexOf("deleted") >= 0
          ? "AeroGrid: app \"" + sub.app + "\" was deleted"
          : "AeroGrid: no app \"" + sub.app + "\" (AEROGRID.APPS() lists the apps)";
      }
      if (sub.error.what === "grid") return "AeroGrid: app \"" + sub.app + "\" has no grid \"" + sub.grid + "\"";
      return "AeroGrid: " + sub.error.message + " (" + sub.error.code + ")";
    }
    if (!waited) return null;
    if (state === "waiting" || state === "connecting") {
      var why = connection.lastError ? connection.lastError : "connecting to " + connection.server;
      if (state === "waiting" && connection.retryAt) {
        var seconds = Math.max(1, Math.round((connection.retryAt - connection.timers.now()) / 1000));
        return "AeroGrid: " + why + "; retrying in " + seconds + " s";
      }
      return "AeroGrid: " + why;
    }
    if (sub && connection.apps && connection.apps.has(sub.app)) {
      var app = connection.apps.get(sub.app);
      if (app.state !== "running") return "AeroGrid: waiting for app \"" + sub.app + "\" to run (it is " + app.state + ")";
    }
    return null;
  }

  return {
    PROTOCOL_PATH: PROTOCOL_PATH,
    DEFAULT_MAX_RATE: DEFAULT_MAX_RATE,
    SETTING_KEYS: SETTING_KEYS,
    APPS_HEADER: APPS_HEADER,
    Connection: Connection,
    GridReplica: GridReplica,
    keyId: keyId,
    compareKeys: compareKeys,
    readSettings: readSettings,
    writeSettings: writeSettings,
    normalizeServer: normalizeServer,
    streamUrl: streamUrl,
    cellValue: cellValue,
    gridMatrix: gridMatrix,
    appsMatrix: appsMatrix,
    keyCandidates: keyCandidates,
    statusMessage: statusMessage,
  };
});
