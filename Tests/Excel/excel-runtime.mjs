// A stand-in for Excel's shared runtime: the add-in's scripts (the shared stream client, then
// aerogrid-core.js and functions.js, as taskpane.html loads them) run in a fresh JavaScript
// context with localStorage, timers, a WebSocket class and a CustomFunctions object whose
// associate() records the functions. A cell is an Invocation: the function is called with the cell's
// arguments and the invocation, setResult() records each value, cancel() is Excel calling
// onCanceled (the formula deleted or changed).

import fs from "node:fs";
import path from "node:path";
import vm from "node:vm";
import { REPO } from "./platform.mjs";

export const ADDIN = path.join(REPO, "clients", "excel");
/** The stream client the add-in shares with the web console, served at /shared/. */
export const STREAM_CLIENT = path.join(REPO, "clients", "shared", "aerogrid-stream.js");

/** Excel's CustomFunctions.Error, for #N/A and the like with a message. */
export class CustomFunctionsError {
  constructor(code, message) {
    this.code = code;
    this.message = message;
  }
}

export const ErrorCode = {
  invalidValue: "#VALUE!", notAvailable: "#N/A", divisionByZero: "#DIV/0!", invalidNumber: "#NUM!",
  nullReference: "#NULL!", invalidName: "#NAME?", invalidReference: "#REF!",
};

export class MemoryStorage {
  constructor(entries = {}) { this.map = new Map(Object.entries(entries)); }
  getItem(key) { return this.map.has(key) ? this.map.get(key) : null; }
  setItem(key, value) { this.map.set(key, String(value)); }
  removeItem(key) { this.map.delete(key); }
}

/** A value as the test compares it: arrays and objects of the add-in's context made plain,
 * an error as {error, message}. */
export function plain(value) {
  if (value instanceof CustomFunctionsError) return { error: value.code, message: value.message };
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

/** One cell's streaming invocation. */
export class Invocation {
  constructor(id, args) {
    this.id = id;
    this.args = args;
    this.results = [];      // [{time, value}]
    this.onCanceled = undefined;
    this.canceled = false;
    this.waiters = new Set();
  }

  setResult(value) {
    if (this.canceled) throw new Error(`${this.id}: setResult after onCanceled`);
    this.results.push({ time: Date.now(), value: plain(value) });
    for (const waiter of this.waiters) waiter();
  }

  get value() {
    return this.results.length ? this.results[this.results.length - 1].value : undefined;
  }

  /** Resolves with the first value (current or coming) for which `predicate` holds. */
  waitFor(predicate, timeout = 30000, what = "a value") {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.results.length && predicate(this.value)) {
          this.waiters.delete(check);
          clearTimeout(timer);
          resolve(this.value);
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`${this.id}(${JSON.stringify(this.args)}): no ${what} within ${timeout / 1000} s; ` +
          `last value ${JSON.stringify(this.value)?.slice(0, 800)}`));
      }, timeout);
      this.waiters.add(check);
      check();
    });
  }

  waitEqual(expected, timeout, what) {
    const text = JSON.stringify(expected);
    return this.waitFor((value) => JSON.stringify(value) === text, timeout, what || `value ${text.slice(0, 300)}`);
  }

  cancel() {
    this.canceled = true;
    if (typeof this.onCanceled === "function") this.onCanceled();
  }
}

/** A WebSocket class that records what each socket sent and received. */
export function recordingWebSocket(sockets) {
  return class RecordingWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      this.received = [];   // [{time, message}]
      this.sentMessages = [];
      sockets.push(this);
      this.addEventListener("message", (event) => {
        this.received.push({ time: Date.now(), message: JSON.parse(event.data) });
      });
    }

    send(data) {
      this.sentMessages.push(JSON.parse(data));
      super.send(data);
    }
  };
}

/**
 * Loads the add-in as Excel's shared runtime would. `settings`: server, token, maxRate (what
 * the task pane writes to localStorage); `options`: AEROGRID_OPTIONS (lingerMs, backoff,
 * graceMs…). Answers {invoke(id, ...args), functions, AeroGrid, sockets, close()}.
 */
export function loadAddin({ server, token, maxRate, options = {}, WebSocketClass } = {}) {
  const storage = new MemoryStorage();
  if (server !== undefined) storage.setItem("aerogrid.server", server);
  if (token !== undefined) storage.setItem("aerogrid.token", token);
  if (maxRate !== undefined) storage.setItem("aerogrid.maxRate", String(maxRate));
  const sockets = [];
  const associated = new Map();
  const CustomFunctions = {
    associate(id, fn) {
      if (typeof id === "object") {
        for (const [key, value] of Object.entries(id)) this.associate(key, value);
        return;
      }
      if (associated.has(id)) throw new Error(`CustomFunctions.associate("${id}") twice`);
      associated.set(id, fn);
    },
    Error: CustomFunctionsError,
    ErrorCode,
  };
  const context = vm.createContext({
    console,
    setTimeout, clearTimeout, setInterval, clearInterval,
    WebSocket: WebSocketClass || recordingWebSocket(sockets),
    localStorage: storage,
    CustomFunctions,
    AEROGRID_OPTIONS: options,
  });
  for (const file of [STREAM_CLIENT, path.join(ADDIN, "aerogrid-core.js"), path.join(ADDIN, "functions.js")]) {
    vm.runInContext(fs.readFileSync(file, "utf8"), context, { filename: file });
  }
  const cells = [];
  return {
    context,
    storage,
    functions: associated,
    AeroGrid: context.AeroGrid,
    connection: context.AeroGrid.connection,
    sockets,
    cells,
    /** A cell: calls the function with `args` (null for an omitted optional one) and the invocation. */
    invoke(id, ...args) {
      const fn = associated.get(id);
      if (!fn) throw new Error(`no function ${id} associated`);
      const invocation = new Invocation(id, args);
      cells.push(invocation);
      fn(...args, invocation);
      return invocation;
    },
    close() {
      for (const cell of cells) if (!cell.canceled) cell.cancel();
      context.AeroGrid.connection.close();
    },
  };
}
