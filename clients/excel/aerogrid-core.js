/*
 * What the add-in adds to the stream client (clients/shared/aerogrid-stream.js, loaded
 * before this file): the settings it keeps in localStorage and the values cells show (GRID's
 * and APPS's arrays, VALUE's keys, the messages of a cell without data).
 *
 * Plain JavaScript loaded as it is: in a page (Excel's shared runtime, the task pane) it
 * defines `AeroGridCore` on the global object; under node, `require()` returns the same.
 */
(function (root, factory) {
  "use strict";
  if (typeof module === "object" && module && module.exports) {
    module.exports = factory(require("../shared/aerogrid-stream.js"));
  } else {
    root.AeroGridCore = factory(root.AeroGridStream);
  }
})(typeof globalThis !== "undefined" ? globalThis : this, function (Stream) {
  "use strict";

  var DEFAULT_MAX_RATE = 2;
  var normalizeServer = Stream.normalizeServer;

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
    DEFAULT_MAX_RATE: DEFAULT_MAX_RATE,
    SETTING_KEYS: SETTING_KEYS,
    APPS_HEADER: APPS_HEADER,
    readSettings: readSettings,
    writeSettings: writeSettings,
    cellValue: cellValue,
    gridMatrix: gridMatrix,
    appsMatrix: appsMatrix,
    keyCandidates: keyCandidates,
    statusMessage: statusMessage,
  };
});
