/*
 * The AeroGrid stream client (docs/protocol.md): the one JavaScript client of the stream,
 * used by the web console (console/) and the Excel add-in (clients/excel/). The server
 * serves it at /shared/aerogrid-stream.js.
 *
 * - Connection: one WebSocket to /api/v1/stream for everything a page shows: `auth` first,
 *   `watch_apps`, subscriptions shared by everything that asks for the same app, grid, keys
 *   and columns, a ping every 20 s (a connection silent for 60 s is taken as dead), and
 *   after a drop a new socket (the backoff below) with every subscription sent again. The protocol has no cursor to resume
 *   from: a subscription sent again gets a new snapshot, and the server's catch-up and
 *   resync of a client that read too slowly come as ordinary deltas and snapshots, applied
 *   like any other.
 * - GridReplica: a subscription's rows by key, as the server holds them: a snapshot replaces
 *   them, a delta merges the changed cells and removes the rows that come as null.
 *
 * KEY ORDER, the server's: GridKey's `<` (Sources/AeroGridCore/GridValues.swift), by which
 * it sorts the rows of every snapshot and delta. Integer keys come first, in numeric order,
 * then string keys in Unicode code-point order of their NFC forms: Swift compares strings
 * by their canonical (NFC) form, scalar by scalar. That is not JavaScript's `<`, which
 * compares UTF-16 code units and puts "\u{1F600}" (units D83D DE00) before "\uFF5E", where
 * code points put it after. Strings with the same NFC form ("e\u0301" and "\u00e9") are
 * equal in Swift, so they are one key on the server, and one row here.
 *
 * BACKOFF, one policy: a dropped connection is tried again after 0.5 s, then 1, 2, 4 and
 * 8 s, then every 10 s, each delay varied by up to 20% either way so that the clients a
 * server restart dropped do not all come back at the same instant; back to 0.5 s once a
 * connection is authenticated. 10 s at most, so that a restarted server has its clients back
 * within seconds. A refused token is not tried again until the settings change; a tenant
 * over its connection quota is tried again after 30 s.
 *
 * A classic script with no dependencies, so that both clients load this same file as it is:
 * the add-in's pages with <script src="../shared/aerogrid-stream.js"> (its scripts are
 * classic: the manifest names functions.js as the functions' script), the console's modules
 * with `import "../shared/aerogrid-stream.js"`. Either way it defines
 * `globalThis.AeroGridStream`; under node, require() returns the same. ES2017 syntax (no
 * `?.` or `??`): the add-in also runs in the Edge webview of older Office builds.
 */
(function (root, factory) {
  "use strict";
  const api = factory();
  if (typeof module === "object" && module && module.exports) {
    module.exports = api;
  } else {
    root.AeroGridStream = api;
  }
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  const PROTOCOL_PATH = "/api/v1/stream";
  const MAX_RATE_LIMIT = 50; // the server takes any higher rate as 50
  const BACKOFF = { initial: 500, max: 10000, jitter: 0.2 };
  const OVER_QUOTA_RETRY_MS = 30000;

  // ------------------------------------------------------------------------------------
  // Keys: identity and order

  /** A key as the server compares it: an integer as it is, a string in its NFC form. */
  function sortKeyOf(key) {
    if (typeof key === "number") return key;
    const text = String(key);
    return typeof text.normalize === "function" ? text.normalize("NFC") : text;
  }

  /** A key as a Map key: 42 and "42" are two rows, "e\u0301" and "\u00e9" one. */
  function keyId(key) {
    const sortKey = sortKeyOf(key);
    return (typeof sortKey === "number" ? "n:" : "s:") + sortKey;
  }

  function isLeadSurrogate(unit) {
    return unit >= 0xd800 && unit <= 0xdbff;
  }

  /**
   * Code-point order of two strings, without decoding them. Up to the first code unit that
   * differs, equal units mean equal code points; there the code points decide. When that
   * unit is the second half of a surrogate pair, the pair's first half (equal in both)
   * starts the code point.
   */
  function compareCodePoints(a, b) {
    if (a === b) return 0;
    const length = Math.min(a.length, b.length);
    let i = 0;
    while (i < length && a.charCodeAt(i) === b.charCodeAt(i)) i++;
    if (i === length) return a.length < b.length ? -1 : 1;
    if (i > 0 && isLeadSurrogate(a.charCodeAt(i - 1))) i--;
    return a.codePointAt(i) < b.codePointAt(i) ? -1 : 1;
  }

  /** The order of two keys already made by sortKeyOf. */
  function compareSortKeys(a, b) {
    const aNumber = typeof a === "number";
    const bNumber = typeof b === "number";
    if (aNumber && bNumber) return a < b ? -1 : a > b ? 1 : 0;
    if (aNumber !== bNumber) return aNumber ? -1 : 1;
    return compareCodePoints(a, b);
  }

  /** The server's key order (see the top of this file): for Array.prototype.sort. */
  function compareKeys(a, b) {
    return compareSortKeys(sortKeyOf(a), sortKeyOf(b));
  }

  /** Two rows of a GridReplica in the server's key order, without normalizing again. */
  function compareRows(a, b) {
    return compareSortKeys(a.sortKey, b.sortKey);
  }

  // ------------------------------------------------------------------------------------
  // The grid replica

  function hasOwn(object, name) {
    return Object.prototype.hasOwnProperty.call(object, name);
  }

  /**
   * One subscription's grid as the server sent it. Each row is {key, sortKey, cells}: `key`
   * as the server sent it, `sortKey` as the order compares it, `cells` column → value (a
   * cell the row lacks reads as empty). A row keeps its object for as long as its key is in
   * the grid, across deltas and snapshots, so a client can attach what it shows to it.
   *
   * The apply methods take an optional `onCell(row, column, message)`, called for every cell
   * whose value the message changed in a row that stays (all the cells of a new row), after
   * the change; they answer whether the set of keys changed (rows came or went).
   */
  class GridReplica {
    constructor() {
      this.rows = new Map(); // keyId -> row
      this.columns = [];
      this.epoch = null;
      this.version = null;
      this.hasSnapshot = false;
      this.sorted = null; // the rows in key order, until the keys change
    }

    get size() {
      return this.rows.size;
    }

    /** A snapshot or a delta, by the message's type; other messages change nothing. */
    apply(message, onCell) {
      if (message.type === "snapshot") return this.applySnapshot(message, onCell);
      if (message.type === "delta") return this.applyDelta(message, onCell);
      return false;
    }

    applySnapshot(message, onCell) {
      const before = this.rows;
      const rows = new Map();
      let kept = 0;
      for (const [key, received] of message.rows || []) {
        const sortKey = sortKeyOf(key);
        const id = (typeof sortKey === "number" ? "n:" : "s:") + sortKey;
        const cells = Object.assign({}, received || {});
        let row = before.get(id);
        if (row && !rows.has(id)) {
          kept++;
          const old = row.cells;
          row.cells = cells;
          if (onCell) {
            for (const column in cells) if (!hasOwn(old, column) || old[column] !== cells[column]) onCell(row, column, message);
            for (const column in old) if (!hasOwn(cells, column)) onCell(row, column, message);
          }
        } else {
          row = { key, sortKey, cells };
          if (onCell) for (const column in cells) onCell(row, column, message);
        }
        rows.set(id, row);
      }
      const keysChanged = kept !== before.size || rows.size !== before.size;
      this.rows = rows;
      this.columns = Array.isArray(message.columns) ? message.columns.slice() : [];
      this.epoch = message.epoch;
      this.version = message.version;
      this.hasSnapshot = true;
      if (keysChanged) this.sorted = null;
      return keysChanged;
    }

    applyDelta(message, onCell) {
      let keysChanged = false;
      for (const [key, cells] of message.rows || []) {
        const sortKey = sortKeyOf(key);
        const id = (typeof sortKey === "number" ? "n:" : "s:") + sortKey;
        if (cells === null) {
          if (this.rows.delete(id)) keysChanged = true;
          continue;
        }
        let row = this.rows.get(id);
        if (!row) {
          row = { key, sortKey, cells: {} };
          this.rows.set(id, row);
          keysChanged = true;
        }
        for (const column in cells) {
          if (!hasOwn(cells, column)) continue;
          const value = cells[column];
          // null: the app removed the cell (or it is empty): the row no longer has it.
          if (value === null) {
            if (!hasOwn(row.cells, column)) continue;
            delete row.cells[column];
          } else {
            if (hasOwn(row.cells, column) && row.cells[column] === value) continue;
            row.cells[column] = value;
          }
          if (onCell) onCell(row, column, message);
        }
      }
      this.epoch = message.epoch;
      this.version = message.version;
      if (keysChanged) this.sorted = null;
      return keysChanged;
    }

    /** Nothing held: as before the first snapshot. */
    clear() {
      this.rows = new Map();
      this.columns = [];
      this.epoch = null;
      this.version = null;
      this.hasSnapshot = false;
      this.sorted = null;
    }

    /** The row of a key, or null. */
    row(key) {
      return this.rows.get(keyId(key)) || null;
    }

    /** The rows in the server's key order. */
    sortedRows() {
      if (!this.sorted) this.sorted = Array.from(this.rows.values()).sort(compareRows);
      return this.sorted;
    }

    /** The grid's columns, then any column a row has that the grid did not declare. */
    allColumns() {
      const seen = new Set(this.columns);
      const extra = [];
      for (const row of this.rows.values()) {
        for (const column in row.cells) {
          if (!seen.has(column)) {
            seen.add(column);
            extra.push(column);
          }
        }
      }
      return this.columns.concat(extra.sort());
    }
  }

  // ------------------------------------------------------------------------------------
  // Addresses, rates and the backoff

  /** "host:8443" → "https://host:8443"; no trailing slash. */
  function normalizeServer(server) {
    let text = String(server || "").trim();
    if (!text) return "";
    if (!/^[a-z]+:\/\//i.test(text)) text = "https://" + text;
    return text.replace(/\/+$/, "");
  }

  /** The stream's WebSocket URL for a server URL: https → wss, http → ws; null for others. */
  function streamUrl(server) {
    const base = normalizeServer(server);
    if (/^https:/i.test(base)) return "wss:" + base.slice(6) + PROTOCOL_PATH;
    if (/^http:/i.test(base)) return "ws:" + base.slice(5) + PROTOCOL_PATH;
    if (/^wss?:/i.test(base)) return base + PROTOCOL_PATH;
    return null;
  }

  /** A subscription's `max_rate`: a whole number from 1 to 50, or null for the server's default. */
  function maxRateOf(value) {
    const rate = parseInt(value, 10);
    return rate >= 1 ? Math.min(rate, MAX_RATE_LIMIT) : null;
  }

  /**
   * How long to wait before connecting again after `attempt` failures in a row (0 for the
   * first): the policy at the top of this file. `random` is a number in [0, 1) (Math.random's);
   * `policy` overrides {initial, max, jitter}.
   */
  function retryDelay(attempt, random, policy) {
    const { initial, max, jitter } = Object.assign({}, BACKOFF, policy || {});
    const base = Math.min(max, initial * Math.pow(2, attempt));
    return Math.round(base * (1 - jitter + 2 * jitter * random));
  }

  function globalObject() {
    if (typeof globalThis !== "undefined") return globalThis;
    if (typeof self !== "undefined") return self;
    if (typeof window !== "undefined") return window;
    return {};
  }

  function safely(fn, a, b, c) {
    try {
      fn(a, b, c);
    } catch (error) {
      if (typeof console !== "undefined" && console.error) console.error("aerogrid: a listener failed", error);
    }
  }

  // ------------------------------------------------------------------------------------
  // The connection

  /**
   * One WebSocket to the stream, shared by everything a page shows.
   *
   * options: server, token, maxRate (deltas a second for every subscription; default the
   * server's), WebSocket (the class; default the global one), timers ({setTimeout,
   * clearTimeout, setInterval, clearInterval, now}), random (for the backoff; default
   * Math.random), backoff ({initial, max, jitter}: tests shorten it), lingerMs (how long a
   * subscription nobody uses stays before it is ended: Excel cancels a cell and calls it
   * again when it recalculates), idleCloseMs (how long the socket stays open with nothing to
   * carry), heartbeatMs, deadAfterMs (no message for that long: the connection is taken as
   * dead), connectTimeoutMs, log (a function).
   *
   * States: "unconfigured" (no server or token), "idle" (nothing to carry), "connecting",
   * "connected", "waiting" (to connect again, at `retryAt`), "refused" (the token was
   * refused: no retry until the settings change), "closed".
   */
  class Connection {
    constructor(options) {
      options = options || {};
      const root = globalObject();
      this.WebSocket = options.WebSocket || root.WebSocket;
      const timers = options.timers || {};
      this.timers = {
        setTimeout: timers.setTimeout || root.setTimeout.bind(root),
        clearTimeout: timers.clearTimeout || root.clearTimeout.bind(root),
        setInterval: timers.setInterval || root.setInterval.bind(root),
        clearInterval: timers.clearInterval || root.clearInterval.bind(root),
        now: timers.now || Date.now,
      };
      this.random = options.random || Math.random;
      this.backoff = Object.assign({}, BACKOFF, options.backoff || {});
      this.lingerMs = options.lingerMs === undefined ? 1000 : options.lingerMs;
      this.idleCloseMs = options.idleCloseMs === undefined ? 10000 : options.idleCloseMs;
      this.heartbeatMs = options.heartbeatMs || 20000;
      this.deadAfterMs = options.deadAfterMs || 60000;
      this.connectTimeoutMs = options.connectTimeoutMs || 15000;
      this.log = options.log || function () {};

      this.server = normalizeServer(options.server);
      this.token = String(options.token || "").trim();
      this.maxRate = maxRateOf(options.maxRate);

      this.subs = new Map();        // share key -> Subscription
      this.byId = new Map();        // server id on the current socket -> Subscription
      this.nextId = 1;
      this.apps = null;             // Map name -> App, from watch_apps; null until known
      this.appWatchers = new Set();
      this.stateListeners = new Set();
      this.held = false;            // connect() keeps the socket open with nothing to carry
      this.socket = null;
      this.state = "idle";
      this.ready = null;            // the server's `ready` message on the current socket
      this.tenant = null;
      this.refusal = null;          // {code, message} when the server refused the token
      this.lastError = null;        // why the last connection ended, for people
      this.lastErrorCode = null;    // and for code: "network" or "over_quota"
      this.attempts = 0;            // failures in a row
      this.retryAt = null;
      this.retryTimer = null;
      this.idleTimer = null;
      this.heartbeat = null;
      this.connectTimer = null;
      this.lastReceived = 0;
      this.stats = { connects: 0, messages: 0, sent: 0 };
      this.updateConfiguredState();
    }

    updateConfiguredState() {
      if (!this.server || !this.token || !streamUrl(this.server)) {
        this.setState("unconfigured");
      } else if (this.state === "unconfigured") {
        this.setState("idle");
      }
    }

    describe() {
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
    }

    /** Calls `listener(describe())` whenever the state changes; returns a function that stops it. */
    onState(listener) {
      this.stateListeners.add(listener);
      return () => { this.stateListeners.delete(listener); };
    }

    setState(state) {
      this.state = state;
      this.notifyAll();
    }

    notifyAll() {
      const info = this.describe();
      this.stateListeners.forEach((listener) => safely(listener, info));
      this.subs.forEach((sub) => sub.notify());
      this.notifyApps(null);
    }

    /**
     * Opens the connection and keeps it open (even with nothing subscribed) until close().
     * Resolves with the server's `ready` message; rejects with {code, message} when the
     * token is refused ("unauthorized", "forbidden"), the tenant has all its connections
     * ("over_quota"), or three tries in a row fail ("network"). The caller closes it then.
     */
    connect() {
      this.held = true;
      return new Promise((resolve, reject) => {
        let stop = null;
        const settle = () => {
          let outcome = null;
          if (this.state === "connected") {
            outcome = () => resolve(this.ready);
          } else if (this.state === "refused") {
            outcome = () => reject(this.refusal);
          } else if (this.state === "unconfigured" || this.state === "closed") {
            outcome = () => reject({ code: "network", message: this.state === "closed" ? "the connection was closed" : "no server or token" });
          } else if (this.state === "waiting" && (this.lastErrorCode === "over_quota" || this.attempts >= 3)) {
            const code = this.lastErrorCode || "network";
            outcome = () => reject({ code, message: this.lastError || "cannot reach " + this.server });
          }
          if (!outcome) return false;
          if (stop) stop();
          outcome();
          return true;
        };
        if (settle()) return;
        stop = this.onState(settle);
        this.ensure();
      });
    }

    /** New settings: the socket starts over with them (every subscription again). */
    configure(settings) {
      if (settings.server !== undefined) this.server = normalizeServer(settings.server);
      if (settings.token !== undefined) this.token = String(settings.token || "").trim();
      if (settings.maxRate !== undefined) this.maxRate = maxRateOf(settings.maxRate);
      this.refusal = null;
      this.lastError = null;
      this.lastErrorCode = null;
      this.attempts = 0;
      this.dropSocket();
      this.cancelRetry();
      this.state = "idle";
      this.updateConfiguredState();
      this.ensure();
    }

    /** Whether anything needs the socket: connect(), a subscription or someone watching the apps. */
    needed() {
      return this.held || this.subs.size > 0 || this.appWatchers.size > 0;
    }

    /** Opens the socket when something needs it and it is not open, waiting or refused. */
    ensure() {
      if (this.state === "closed" || this.state === "refused" || this.state === "unconfigured") return;
      if (!this.needed()) {
        this.scheduleIdleClose();
        return;
      }
      this.cancelIdleClose();
      if (this.socket || this.retryTimer) return;
      this.open();
    }

    open() {
      const url = streamUrl(this.server);
      this.retryAt = null;
      let socket;
      try {
        socket = new this.WebSocket(url);
      } catch (error) {
        this.lastError = "cannot open " + url + ": " + ((error && error.message) || error);
        this.lastErrorCode = "network";
        this.scheduleRetry();
        return;
      }
      this.socket = socket;
      this.ready = null;
      this.byId = new Map();
      this.stats.connects++;
      // A connection that neither opens nor fails (a network that drops packets) is given up.
      this.connectTimer = this.timers.setTimeout(() => {
        this.connectTimer = null;
        if (this.socket !== socket || socket.readyState === 1) return;
        this.lastError = "no answer from " + this.server + " within " + Math.round(this.connectTimeoutMs / 1000) + " s";
        this.socketEnded(null, null);
      }, this.connectTimeoutMs);
      this.setState("connecting");
      socket.onopen = () => {
        if (this.socket !== socket) return;
        this.clearConnectTimer();
        this.lastReceived = this.timers.now();
        this.send({ op: "auth", token: this.token });
        // The server handles what follows `auth` once it is through: no need to wait.
        this.send({ op: "watch_apps" });
        this.subs.forEach((sub) => this.sendSubscribe(sub));
        this.startHeartbeat();
      };
      socket.onmessage = (event) => {
        if (this.socket !== socket) return;
        this.lastReceived = this.timers.now();
        this.stats.messages++;
        let message;
        try {
          message = JSON.parse(typeof event.data === "string" ? event.data : String(event.data));
        } catch (error) {
          this.log("aerogrid: a message that is not JSON", event.data);
          return;
        }
        try {
          this.handle(message);
        } catch (error) {
          this.log("aerogrid: handling a message failed", error);
        }
      };
      // An error ends the socket: browsers send a close after it, but node's WebSocket stays
      // CONNECTING for good when the connection is refused.
      socket.onerror = () => {
        if (this.socket !== socket) return;
        if (this.state === "connecting") this.lastError = "cannot reach " + this.server;
        this.socketEnded(null, null);
      };
      socket.onclose = (event) => {
        if (this.socket !== socket) return;
        this.socketEnded(event && event.code, event && event.reason);
      };
    }

    socketEnded(code, reason) {
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
      this.lastErrorCode = "network";
      this.subs.forEach((sub) => sub.connectionLost());
      if (this.needed()) {
        this.scheduleRetry();
      } else {
        this.setState("idle");
      }
    }

    clearConnectTimer() {
      if (this.connectTimer) this.timers.clearTimeout(this.connectTimer);
      this.connectTimer = null;
    }

    /** Forgets the socket (its late events are ignored) and closes it. */
    detach() {
      const socket = this.socket;
      this.socket = null;
      this.ready = null;
      this.clearConnectTimer();
      this.byId = new Map();
      this.stopHeartbeat();
      if (socket) {
        socket.onopen = socket.onmessage = socket.onerror = socket.onclose = null;
        try { socket.close(); } catch (error) { /* already closed */ }
      }
    }

    dropSocket() {
      if (this.socket) this.detach();
      this.subs.forEach((sub) => sub.connectionLost());
    }

    scheduleRetry(minimum) {
      this.cancelRetry();
      const delay = Math.max(minimum || 0, retryDelay(this.attempts, this.random(), this.backoff));
      this.attempts++;
      this.retryAt = this.timers.now() + delay;
      this.retryTimer = this.timers.setTimeout(() => {
        this.retryTimer = null;
        this.retryAt = null;
        if (this.state === "waiting") this.state = "idle";
        this.ensure();
      }, delay);
      this.setState("waiting");
    }

    cancelRetry() {
      if (this.retryTimer) this.timers.clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.retryAt = null;
    }

    /** Try now instead of at `retryAt` (the task pane's "Connect" button). */
    retryNow() {
      if (this.state === "refused") this.state = "idle";
      this.refusal = null;
      this.cancelRetry();
      if (this.state === "waiting") this.state = "idle";
      this.attempts = 0;
      this.ensure();
    }

    scheduleIdleClose() {
      if (this.idleTimer || !this.socket) return;
      this.idleTimer = this.timers.setTimeout(() => {
        this.idleTimer = null;
        if (!this.needed() && this.socket) {
          this.detach();
          this.setState("idle");
        }
      }, this.idleCloseMs);
    }

    cancelIdleClose() {
      if (this.idleTimer) this.timers.clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }

    startHeartbeat() {
      this.stopHeartbeat();
      this.heartbeat = this.timers.setInterval(() => {
        if (!this.socket) return;
        if (this.timers.now() - this.lastReceived > this.deadAfterMs) {
          // Nothing for too long, not even a pong: the network dropped without a close.
          this.lastError = "no answer from " + this.server + " for " + Math.round(this.deadAfterMs / 1000) + " s";
          this.socketEnded(null, null);
          return;
        }
        this.send({ op: "ping", id: "heartbeat" });
      }, this.heartbeatMs);
    }

    stopHeartbeat() {
      if (this.heartbeat) this.timers.clearInterval(this.heartbeat);
      this.heartbeat = null;
    }

    send(message) {
      if (!this.socket || this.socket.readyState !== 1) return false;
      try {
        this.socket.send(JSON.stringify(message));
        this.stats.sent++;
        return true;
      } catch (error) {
        this.log("aerogrid: send failed", error);
        return false;
      }
    }

    /** Ends everything: the socket, the timers, every subscription. */
    close() {
      this.state = "closed";
      this.held = false;
      this.cancelRetry();
      this.cancelIdleClose();
      this.detach();
      this.subs.forEach((sub) => sub.cancelLinger());
      this.subs.clear();
      this.appWatchers.clear();
      this.notifyAll();
    }

    // ---- what comes from the server

    handle(message) {
      const sub = message.id !== undefined && message.id !== null ? this.byId.get(String(message.id)) : null;
      switch (message.type) {
        case "ready":
          this.ready = message;
          this.tenant = message.tenant || null;
          this.attempts = 0;
          this.lastError = null;
          this.lastErrorCode = null;
          this.refusal = null;
          this.setState("connected");
          return;
        case "subscribed":
          if (sub) sub.acknowledged = true;
          return;
        case "snapshot":
        case "delta":
          if (sub) sub.received(message);
          return;
        case "unsubscribed":
        case "pong":
          return;
        case "apps":
          this.apps = new Map();
          for (const app of message.apps || []) this.apps.set(app.name, app);
          this.appsChanged(null, message);
          return;
        case "app":
          this.appEvent(message);
          return;
        case "error":
          if (message.id === undefined || message.id === null) this.connectionError(message);
          else if (sub) sub.refused(message);
          return;
        default:
          return; // a type this client does not know: ignored, as the protocol asks
      }
    }

    connectionError(message) {
      const code = message.code;
      if (code === "unauthorized" || code === "forbidden") {
        this.refusal = { code, message: message.message || code };
        this.lastError = message.message || code;
        this.detach();
        this.cancelRetry();
        this.subs.forEach((sub) => sub.connectionLost());
        this.setState("refused");
      } else if (code === "over_quota") {
        // The tenant's connections are all taken: try again, slowly.
        this.lastError = message.message || code;
        this.lastErrorCode = "over_quota";
        this.detach();
        this.subs.forEach((sub) => sub.connectionLost());
        this.scheduleRetry(OVER_QUOTA_RETRY_MS);
      } else {
        this.log("aerogrid: server error", message);
      }
    }

    appEvent(message) {
      const app = message.app || {};
      if (!this.apps) this.apps = new Map();
      if (message.event === "delete") {
        this.apps.delete(app.name);
      } else {
        this.apps.set(app.name, Object.assign({}, this.apps.get(app.name) || {}, app));
      }
      this.appsChanged(app.name, message);
    }

    /** The apps changed: `name` is the app an `app` event is about, null for the whole list. */
    appsChanged(name, message) {
      this.subs.forEach((sub) => {
        if (name !== null && sub.app !== name) return;
        if (message.event === "delete") {
          sub.appDeleted();
          return;
        }
        if (sub.appMissing && this.apps.has(sub.app)) {
          // Deployed since it was not found: subscribe again.
          sub.appMissing = false;
          sub.error = null;
          this.sendSubscribe(sub);
        }
        sub.notify();
      });
      this.notifyApps(message);
    }

    notifyApps(message) {
      const apps = this.appList();
      this.appWatchers.forEach((listener) => safely(listener, apps, this, message));
    }

    /** The apps by name, or null while not known. */
    appList() {
      if (!this.apps) return null;
      return Array.from(this.apps.values()).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    }

    /**
     * Calls `listener(apps, connection, message)` now and whenever the apps or the
     * connection change: `apps` by name (null while not known), `message` the `apps` or `app`
     * message that changed them (null otherwise). Returns a function that stops it.
     */
    watchApps(listener) {
      this.appWatchers.add(listener);
      this.ensure();
      safely(listener, this.appList(), this, null);
      return () => {
        this.appWatchers.delete(listener);
        this.ensure();
      };
    }

    // ---- subscriptions

    /**
     * Subscribes to a grid: request {app, grid, keys?, columns?}. `listener(subscription,
     * update)` is called whenever its rows, its error or the connection change; `update` is
     * {type: "snapshot" | "delta" | "cleared", keysChanged} when rows changed, else null.
     * `onCell(row, column, message)` (optional) is called for every cell a message changed,
     * as GridReplica's apply methods call it. Requests for the same app, grid, keys and
     * columns share one server subscription and its replica. Returns {subscription, close()}:
     * close() ends this listener's part; the subscription ends when no listener is left
     * (after `lingerMs`).
     */
    subscribe(request, listener, onCell) {
      const columns = request.columns && request.columns.length ? request.columns.map(String) : null;
      const keys = request.keys && request.keys.length ? request.keys.slice() : null;
      const share = JSON.stringify([String(request.app), String(request.grid), columns, keys]);
      let sub = this.subs.get(share);
      if (!sub) {
        sub = new Subscription(this, share, String(request.app), String(request.grid), columns, keys);
        this.subs.set(share, sub);
        this.sendSubscribe(sub);
      }
      sub.cancelLinger();
      sub.listeners.add(listener);
      if (onCell) sub.cellListeners.add(onCell);
      this.ensure();
      let closed = false;
      return {
        subscription: sub,
        close: () => {
          if (closed) return;
          closed = true;
          if (onCell) sub.cellListeners.delete(onCell);
          sub.removeListener(listener);
        },
      };
    }

    sendSubscribe(sub) {
      if (!this.socket || this.socket.readyState !== 1) return;
      if (sub.serverId) this.byId.delete(sub.serverId);
      sub.serverId = "s" + this.nextId++;
      sub.acknowledged = false;
      this.byId.set(sub.serverId, sub);
      const message = { op: "subscribe", id: sub.serverId, app: sub.app, grid: sub.grid };
      if (this.maxRate !== null) message.max_rate = this.maxRate;
      if (sub.columns) message.columns = sub.columns;
      if (sub.keys) message.keys = sub.keys;
      this.send(message);
    }

    endSubscription(sub) {
      if (this.subs.get(sub.share) === sub) this.subs.delete(sub.share);
      if (sub.serverId) {
        this.byId.delete(sub.serverId);
        // An app that was not found holds no server subscription.
        if (!sub.appMissing) this.send({ op: "unsubscribe", id: sub.serverId });
        sub.serverId = null;
        // A place is free: a subscription the connection's limit refused tries again.
        let waiting = null;
        this.subs.forEach((other) => {
          if (!waiting && other.error && other.error.code === "over_quota" && !other.serverId) waiting = other;
        });
        if (waiting) {
          waiting.error = null;
          this.sendSubscribe(waiting);
        }
      }
      this.ensure();
    }
  }

  /** A server subscription and the listeners that share it. */
  class Subscription {
    constructor(connection, share, app, grid, columns, keys) {
      this.connection = connection;
      this.share = share;
      this.app = app;
      this.grid = grid;
      this.columns = columns;
      this.keys = keys;
      this.replica = new GridReplica();
      this.listeners = new Set();
      this.cellListeners = new Set();
      this.serverId = null;
      this.acknowledged = false;
      this.error = null;       // {code, message, what: "app" | "grid" | "other"}
      this.appMissing = false;
      this.lingerTimer = null;
      this.updates = 0;
    }

    notify(update) {
      this.listeners.forEach((listener) => safely(listener, this, update || null));
    }

    /** A snapshot or a delta for this subscription. */
    received(message) {
      // A delta applies to the snapshot before it, which always comes first.
      if (message.type === "delta" && !this.replica.hasSnapshot) return;
      let onCell;
      if (this.cellListeners.size) {
        onCell = (row, column) => this.cellListeners.forEach((listener) => safely(listener, row, column, message));
      }
      const keysChanged = this.replica.apply(message, onCell);
      if (message.type === "snapshot") {
        this.error = null;
        this.appMissing = false;
      }
      this.updates++;
      this.notify({ type: message.type, keysChanged });
    }

    refused(message) {
      let what = "other";
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
      this.error = { code: message.code, message: message.message || message.code, what };
      this.notify();
    }

    /** The app was deleted: its rows go; a deploy under its name subscribes again. */
    appDeleted() {
      if (this.serverId) {
        this.connection.send({ op: "unsubscribe", id: this.serverId });
        this.connection.byId.delete(this.serverId);
        this.serverId = null;
      }
      this.appMissing = true;
      const keysChanged = this.replica.size > 0;
      this.replica.clear();
      this.error = { code: "not_found", message: "app '" + this.app + "' was deleted", what: "app" };
      this.notify({ type: "cleared", keysChanged });
    }

    connectionLost() {
      this.serverId = null;
      this.acknowledged = false;
      // The rows stay (a page or a cell keeps its last values); a new snapshot replaces them.
    }

    removeListener(listener) {
      this.listeners.delete(listener);
      if (this.listeners.size > 0) return;
      const linger = this.connection.lingerMs;
      if (linger > 0 && this.connection.state !== "closed") {
        this.cancelLinger();
        this.lingerTimer = this.connection.timers.setTimeout(() => {
          this.lingerTimer = null;
          if (this.listeners.size === 0) this.connection.endSubscription(this);
        }, linger);
      } else {
        this.connection.endSubscription(this);
      }
    }

    cancelLinger() {
      if (this.lingerTimer) this.connection.timers.clearTimeout(this.lingerTimer);
      this.lingerTimer = null;
    }
  }

  return {
    PROTOCOL_PATH,
    BACKOFF,
    Connection,
    GridReplica,
    keyId,
    sortKeyOf,
    compareKeys,
    compareRows,
    normalizeServer,
    streamUrl,
    retryDelay,
  };
});
