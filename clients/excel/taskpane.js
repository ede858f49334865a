/*
 * The task pane: the server and token (kept in localStorage, read by the functions), the
 * connection's state, the tenant's apps (from the stream's watch_apps) with their grids
 * (GET /api/v1/apps/{app}/grids), and "Insert" buttons that write a formula into the
 * selected cell through Office.js. It uses the connection functions.js made: in the shared
 * runtime the functions and the pane are one page.
 */
(function (root) {
  "use strict";

  var AeroGrid = root.AeroGrid;
  var Core = root.AeroGridCore;
  var Stream = root.AeroGridStream;
  var officeReady = false;
  var grids = new Map();   // app name -> {stamp, grids | null, error}
  var stopWatching = null;

  var STATE_LABELS = {
    unconfigured: "not set up",
    idle: "idle",
    connecting: "connecting…",
    connected: "connected",
    waiting: "reconnecting…",
    refused: "token refused",
    closed: "stopped",
  };

  function $(id) { return document.getElementById(id); }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** A string argument in a formula: quotes doubled. */
  function quoted(text) {
    return "\"" + String(text).replace(/"/g, "\"\"") + "\"";
  }

  function gridFormula(app, grid) {
    return "=AEROGRID.GRID(" + quoted(app) + "," + quoted(grid) + ")";
  }

  function showMessage(text) {
    $("message").textContent = text || "";
  }

  /** Writes `formula` into the selected cell (its top-left one when a range is selected). */
  function insert(formula) {
    showMessage("");
    if (!officeReady || typeof root.Excel === "undefined") {
      showMessage("Open this pane in Excel to insert " + formula);
      return Promise.resolve(false);
    }
    return root.Excel.run(function (context) {
      var range = context.workbook.getSelectedRange().getCell(0, 0);
      range.formulas = [[formula]];
      return context.sync();
    }).then(function () {
      return true;
    }, function (error) {
      showMessage("Could not insert the formula: " + (error && error.message || error));
      return false;
    });
  }

  // ---- the connection's state

  function renderState(info) {
    var badge = $("state");
    badge.textContent = STATE_LABELS[info.state] || info.state;
    badge.className = "state " + info.state;
    var detail = "";
    if (info.state === "connected") {
      detail = "Tenant " + (info.tenant || "?") + " on " + info.server + ", " + info.maxRate + " updates a second.";
    } else if (info.state === "refused") {
      detail = "The server refused the token: " + ((info.refusal && info.refusal.message) || "not valid") + ".";
    } else if (info.state === "unconfigured") {
      detail = "Enter the server's address and a token.";
    } else if (info.state === "waiting") {
      var seconds = info.retryAt ? Math.max(1, Math.round((info.retryAt - Date.now()) / 1000)) : null;
      detail = (info.lastError || "Disconnected") + (seconds ? "; retrying in " + seconds + " s." : ".");
    } else if (info.state === "connecting") {
      detail = "Connecting to " + info.server + "…";
    }
    $("state-detail").textContent = detail;
  }

  // ---- the apps and their grids

  function fetchGrids(app) {
    var settings = AeroGrid.settings();
    var stamp = app.version + "/" + app.state;
    var known = grids.get(app.name);
    if (known && known.stamp === stamp) return;
    grids.set(app.name, { stamp: stamp, grids: known ? known.grids : null, error: null });
    var url = settings.server + "/api/v1/apps/" + encodeURIComponent(app.name) + "/grids";
    root.fetch(url, { headers: { Authorization: "Bearer " + settings.token, Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (body) {
        var entry = grids.get(app.name);
        if (!entry || entry.stamp !== stamp) return;
        entry.grids = (body.grids || []).slice().sort(function (a, b) { return a.name < b.name ? -1 : a.name > b.name ? 1 : 0; });
        renderApps(AeroGrid.connection.appList());
      })
      .catch(function (error) {
        var entry = grids.get(app.name);
        if (!entry || entry.stamp !== stamp) return;
        entry.error = "grids not available (" + (error && error.message || error) + ")";
        renderApps(AeroGrid.connection.appList());
      });
  }

  function renderApps(apps) {
    var list = $("apps");
    var empty = $("apps-empty");
    list.textContent = "";
    if (!apps) {
      empty.textContent = AeroGrid.connection.state === "connected" ? "Loading the apps…" : "Connect to see your apps.";
      empty.hidden = false;
      return;
    }
    empty.textContent = "No apps yet: deploy one with `aerogrid app deploy`.";
    empty.hidden = apps.length > 0;
    apps.forEach(function (app) {
      fetchGrids(app);
      var item = element("li", "app");
      item.dataset.app = app.name;
      var head = element("div", "app-head");
      head.appendChild(element("span", "app-name", app.name));
      head.appendChild(element("span", "app-state " + (app.state || ""), app.state + (app.version ? " · v" + app.version : "")));
      item.appendChild(head);
      var entry = grids.get(app.name);
      var gridList = element("ul", "grids");
      if (entry && entry.grids) {
        if (!entry.grids.length) gridList.appendChild(element("li", "grid detail", "no grids yet (they appear when the app writes)"));
        entry.grids.forEach(function (grid) {
          var line = element("li", "grid");
          line.dataset.grid = grid.name;
          line.appendChild(element("span", "grid-name", grid.name));
          var columns = grid.columns && grid.columns.length ? grid.columns.join(", ") : "";
          line.appendChild(element("span", "grid-info", grid.rows + " rows" + (columns ? " · " + columns : "")));
          var button = element("button", "insert", "Insert");
          button.type = "button";
          button.title = gridFormula(app.name, grid.name) + " into the selected cell";
          button.addEventListener("click", function () { insert(gridFormula(app.name, grid.name)); });
          line.appendChild(button);
          gridList.appendChild(line);
        });
      } else if (entry && entry.error) {
        gridList.appendChild(element("li", "grid detail", entry.error));
      } else {
        gridList.appendChild(element("li", "grid detail", "loading the grids…"));
      }
      item.appendChild(gridList);
      list.appendChild(item);
    });
  }

  function watch() {
    if (!stopWatching) stopWatching = AeroGrid.connection.watchApps(renderApps);
  }

  function unwatch() {
    if (stopWatching) stopWatching();
    stopWatching = null;
  }

  // ---- settings

  function fillForm() {
    var settings = AeroGrid.settings();
    $("server").value = settings.server;
    $("token").value = settings.token;
    $("rate").value = String(settings.maxRate);
    if (!settings.server && root.location && /^https?:$/.test(root.location.protocol)) $("server").value = root.location.origin;
  }

  function save(event) {
    if (event) event.preventDefault();
    showMessage("");
    var server = Stream.normalizeServer($("server").value);
    if (server && !Stream.streamUrl(server)) {
      showMessage("The server's address must start with https:// (or http://).");
      return;
    }
    // The server's Content-Security-Policy lets the add-in connect only to the server it came from.
    var home = root.location && /^https?:$/.test(root.location.protocol) ? root.location.origin : null;
    if (server && home && server !== home) {
      showMessage("This add-in came from " + home + " and may connect only there: to use " + server +
        ", install the add-in from " + server + "/excel/manifest.xml.");
    }
    grids.clear();
    AeroGrid.configure({ server: server, token: $("token").value, maxRate: parseInt($("rate").value, 10) || Core.DEFAULT_MAX_RATE });
    fillForm();
    unwatch();
    watch();
  }

  function start() {
    fillForm();
    $("settings").addEventListener("submit", save);
    $("insert-apps").addEventListener("click", function () { insert("=AEROGRID.APPS()"); });
    AeroGrid.connection.onState(renderState);
    renderState(AeroGrid.connection.describe());
    watch();
    // In the shared runtime the page lives on while the pane is hidden: watch the apps only
    // while it shows.
    if (officeReady && root.Office && root.Office.addin && typeof root.Office.addin.onVisibilityModeChanged === "function") {
      try {
        root.Office.addin.onVisibilityModeChanged(function (args) {
          if (args && args.visibilityMode === "Hidden") unwatch();
          else watch();
        });
      } catch (error) { /* not in this host */ }
    }
  }

  root.AeroGridTaskpane = { insert: insert, gridFormula: gridFormula };

  function whenLoaded(callback) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", callback);
    else callback();
  }

  if (typeof root.Office !== "undefined" && root.Office && typeof root.Office.onReady === "function") {
    root.Office.onReady(function (info) {
      officeReady = !!(info && info.host);
      whenLoaded(start);
    });
  } else {
    // Opened in a browser, outside Office: the settings and the apps work, inserting does not.
    whenLoaded(start);
  }
})(window);
