/*
 * The AEROGRID custom functions (ids in functions.json), all streaming:
 *
 *   =AEROGRID.GRID(app, grid, [columns])       the grid as a spilled array with a header row
 *   =AEROGRID.VALUE(app, grid, key, column)    one cell
 *   =AEROGRID.APPS()                           the tenant's apps and their state
 *
 * Every cell of the workbook goes through one AeroGridStream.Connection (one WebSocket);
 * cells with the same arguments share one server subscription, ended when Excel cancels the
 * last of them (onCanceled). Settings (server, token, rate) come from localStorage, which the
 * task pane writes: in the shared runtime they are the same page.
 *
 * Plain JavaScript, loaded after ../shared/aerogrid-stream.js and aerogrid-core.js.
 * `globalThis.AeroGrid` is the API the task pane (and the tests) use.
 */
(function (root) {
  "use strict";

  var Core = root.AeroGridCore;
  var Stream = root.AeroGridStream;
  var options = root.AEROGRID_OPTIONS || {}; // embedding and tests: lingerMs, backoff, graceMs…
  var GRACE_MS = options.graceMs === undefined ? 2000 : options.graceMs;

  function storage() {
    try { return root.localStorage || null; } catch (error) { return null; }
  }

  /** The server the add-in was loaded from (it serves /excel/): the default when none is set. */
  function homeServer() {
    var location = root.location;
    return location && /^https?:$/.test(location.protocol) ? location.origin : "";
  }

  var settings = Core.readSettings(storage(), homeServer());
  var connectionOptions = Object.assign({}, options, {
    server: settings.server,
    token: settings.token,
    maxRate: settings.maxRate,
    log: function () {
      if (root.console && root.console.warn) root.console.warn.apply(root.console, arguments);
    },
  });
  var connection = new Stream.Connection(connectionOptions);

  /** Saves new settings and starts the connection over with them. */
  function configure(changes) {
    Core.writeSettings(storage(), changes);
    settings = Core.readSettings(storage(), homeServer());
    connection.configure(settings);
    return settings;
  }

  // Another page of the add-in (a task pane in its own runtime) changed the settings.
  if (typeof root.addEventListener === "function") {
    root.addEventListener("storage", function (event) {
      if (!event || !event.key || event.key.indexOf("aerogrid.") !== 0) return;
      var next = Core.readSettings(storage(), homeServer());
      if (next.server !== settings.server || next.token !== settings.token || next.maxRate !== settings.maxRate) {
        settings = next;
        connection.configure(settings);
      }
    });
  }

  // ------------------------------------------------------------------------------------
  // A streaming cell

  function errorValue(message) {
    var CF = root.CustomFunctions;
    if (CF && typeof CF.Error === "function" && CF.ErrorCode) return new CF.Error(CF.ErrorCode.notAvailable, message);
    return message;
  }

  function fingerprint(value) {
    if (value && typeof value === "object" && !Array.isArray(value)) return "error:" + value.code + ":" + value.message;
    return JSON.stringify(value);
  }

  /**
   * Runs one streaming invocation: `start(update)` subscribes and returns a function that
   * unsubscribes; `render(waited)` answers the cell's value, or undefined to leave it as it
   * is. A value equal to the last one is not sent again.
   */
  function stream(invocation, start, render) {
    var began = Date.now();
    var last = null;
    var stopped = false;
    var stop = null;
    var graceTimer = null;

    function update() {
      if (stopped) return;
      var value;
      try {
        value = render(Date.now() - began >= GRACE_MS);
      } catch (error) {
        value = "AeroGrid: " + (error && error.message || error);
      }
      if (value === undefined) return;
      var print = fingerprint(value);
      if (print === last) return;
      last = print;
      invocation.setResult(value);
    }

    invocation.onCanceled = function () {
      stopped = true;
      if (graceTimer) clearTimeout(graceTimer);
      if (stop) stop();
    };
    stop = start(update);
    // After the grace period a cell still without data says why (server down, app stopped).
    graceTimer = setTimeout(function () {
      graceTimer = null;
      update();
    }, GRACE_MS);
    update();
  }

  function text(value) {
    return value === null || value === undefined ? "" : String(value).trim();
  }

  /** GRID's optional columns: a range or array constant, or one name, or "a,b,c". */
  function columnList(columns) {
    if (columns === null || columns === undefined) return null;
    var flat = [];
    (Array.isArray(columns) ? columns : [[columns]]).forEach(function (row) {
      (Array.isArray(row) ? row : [row]).forEach(function (cell) {
        var name = text(cell);
        if (!name) return;
        if (!Array.isArray(columns) && name.indexOf(",") >= 0) {
          name.split(",").forEach(function (part) { if (part.trim()) flat.push(part.trim()); });
        } else {
          flat.push(name);
        }
      });
    });
    return flat.length ? flat : null;
  }

  function problem(app, grid) {
    if (!app) return "AeroGrid: the app's name is missing";
    if (!grid) return "AeroGrid: the grid's name is missing";
    return null;
  }

  // ------------------------------------------------------------------------------------
  // The functions

  /** =AEROGRID.GRID(app, grid, [columns]) */
  function grid(app, gridName, columns, invocation) {
    app = text(app);
    gridName = text(gridName);
    var names = columnList(columns);
    var wrong = problem(app, gridName);
    if (wrong) return invocation.setResult([[wrong]]);
    var handle = null;
    stream(invocation, function (update) {
      handle = connection.subscribe({ app: app, grid: gridName, columns: names }, update);
      return handle.close;
    }, function (waited) {
      var sub = handle.subscription;
      var blocking = connection.state === "refused" || connection.state === "unconfigured" || (sub.error && sub.error.what === "app");
      if (!blocking && sub.replica.hasSnapshot) return Core.gridMatrix(sub, names);
      var message = Core.statusMessage(connection, sub, waited);
      return message === null ? undefined : [[message]];
    });
  }

  /** =AEROGRID.VALUE(app, grid, key, column) */
  function value(app, gridName, key, column, invocation) {
    app = text(app);
    gridName = text(gridName);
    column = text(column);
    var wrong = problem(app, gridName) || (column ? null : "AeroGrid: the column's name is missing");
    if (wrong) return invocation.setResult(wrong);
    var candidates = Core.keyCandidates(key);
    var handle = null;
    stream(invocation, function (update) {
      handle = connection.subscribe({ app: app, grid: gridName, keys: candidates, columns: [column] }, update);
      return handle.close;
    }, function (waited) {
      var sub = handle.subscription;
      var blocking = connection.state === "refused" || connection.state === "unconfigured" || (sub.error && sub.error.what === "app");
      if (!blocking && sub.replica.hasSnapshot) {
        for (var i = 0; i < candidates.length; i++) {
          var row = sub.replica.row(candidates[i]);
          if (row) return Core.cellValue(row.cells[column]);
        }
        return errorValue("no row \"" + text(key) + "\" in " + app + "/" + gridName);
      }
      var message = Core.statusMessage(connection, sub, waited);
      return message === null ? undefined : message;
    });
  }

  /** =AEROGRID.APPS() */
  function apps(invocation) {
    var list = null;
    stream(invocation, function (update) {
      var stopWatching = connection.watchApps(function (apps) {
        list = apps;
        update();
      });
      var stopState = connection.onState(update);
      return function () {
        stopWatching();
        stopState();
      };
    }, function (waited) {
      var blocking = connection.state === "refused" || connection.state === "unconfigured";
      if (!blocking && list) return Core.appsMatrix(list);
      var message = Core.statusMessage(connection, null, waited);
      return message === null ? undefined : [[message]];
    });
  }

  var functions = { GRID: grid, VALUE: value, APPS: apps };

  root.AeroGrid = {
    connection: connection,
    functions: functions,
    settings: function () { return Object.assign({}, settings); },
    configure: configure,
  };

  if (typeof root.CustomFunctions !== "undefined" && root.CustomFunctions && typeof root.CustomFunctions.associate === "function") {
    CustomFunctions.associate("GRID", grid);
    CustomFunctions.associate("VALUE", value);
    CustomFunctions.associate("APPS", apps);
  }
})(typeof globalThis !== "undefined" ? globalThis : this);
