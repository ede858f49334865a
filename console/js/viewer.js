// The live grid viewer: one subscription on the stream, kept as a map of rows; a
// spreadsheet-like table that draws only the rows in view (a pool of <tr> reused as the user
// scrolls), updates cells in place, flashes the ones that changed, sorts and filters, and
// draws `#rrggbb` values as colour. 10,000 rows ticking stay well under a frame's budget.
// A grid made only of colours is a picture: it is drawn on a canvas (one rectangle a cell,
// redrawn at most once an animation frame), with "Show as table" for the cells themselves.
import { api, request } from "./api.js";
import { h, replace, notice, pageTitle, toast } from "./ui.js";
import { count, clock, STATE_TEXT } from "./format.js";

const ROW_HEIGHT = 28;
const OVERSCAN = 10;
const KEY = "\u0000key"; // the key column's id in the sort state
const COLOUR = /^#[0-9a-fA-F]{6}$/;
const FLASH_MS = 1200;

export function renderViewer(container, { app, grid }, context) {
  const { session } = context;
  const heading = h("h1", {}, grid);
  const filter = h("input", { type: "search", id: "grid-filter", placeholder: "Text in any cell or key", spellcheck: "false" });
  const statusText = h("span", { id: "grid-status", "aria-live": "off" }, "Connecting…");
  const appState = h("span", { id: "grid-app-state" });
  const messages = h("div", { id: "grid-messages", "aria-live": "polite" });
  const csvButton = h("button", { type: "button", class: "button", id: "grid-csv" }, "Download CSV");
  const pictureToggle = h("button", { type: "button", class: "button", id: "grid-picture-toggle", hidden: true }, "Show as table");
  const canvas = h("canvas", { id: "grid-picture", role: "img", "aria-label": `${grid}, a picture of ${app}` });
  const pictureBox = h("div", { class: "grid-picture", hidden: true }, canvas);
  const table = h("table", { class: "grid", id: "grid-table", "aria-label": `${grid}, a grid of ${app}`, "aria-rowcount": "1", "aria-colcount": "1" });
  const scroller = h("div", { class: "grid-scroll", id: "grid-scroll", tabindex: "0", role: "region", "aria-label": `Rows of ${grid}; scroll with the arrow and page keys` }, table, pictureBox);
  replace(container,
    h("nav", { class: "breadcrumbs", "aria-label": "Breadcrumb" },
      h("a", { href: "#/apps" }, "Apps"), " › ", h("a", { href: `#/apps/${encodeURIComponent(app)}` }, app), " › ", grid),
    h("div", { class: "page-head" },
      h("div", {}, heading, h("p", { class: "subtitle" }, "A live grid of ", h("a", { href: `#/apps/${encodeURIComponent(app)}` }, app), ". ", appState))),
    messages,
    h("div", { class: "grid-toolbar" },
      h("div", { class: "field" }, h("label", { for: "grid-filter" }, "Filter rows"), filter),
      h("div", { class: "field" }, h("span", { class: "hint" }, "Sort: choose a column heading"), csvButton, pictureToggle),
      h("p", { class: "grid-status" }, statusText)),
    scroller);
  pageTitle(`${grid} · ${app}`, heading);

  // ---- The data
  let columns = [];
  let rows = new Map(); // "n:42" / "s:Widget" -> {key, cells, times, text}
  let order = []; // the rows shown, filtered and sorted
  let orderDirty = true;
  let orderUrgent = true;
  let lastOrder = 0;
  let sort = { column: KEY, direction: 1 };
  let needle = "";
  let epoch = null;
  let version = null;
  let haveData = false;
  let updatedAt = null;
  let closed = false;
  let picture = false; // every column's values are colours
  let asTable = false; // the user chose to see a picture's cells
  let pictureDirty = true;

  const mapKey = (key) => (typeof key === "number" ? "n:" : "s:") + key;

  function loadSnapshot(message, flash) {
    const now = performance.now();
    const before = rows;
    rows = new Map();
    for (const [key, cells] of message.rows) {
      const id = mapKey(key);
      const old = before.get(id);
      const times = {};
      if (flash && old) {
        for (const column in cells) if (old.cells[column] !== cells[column]) times[column] = now;
      } else if (flash) {
        for (const column in cells) times[column] = now;
      }
      rows.set(id, { key, cells, times, text: null });
    }
    setColumns(message.columns);
    applyWidths();
    orderDirty = orderUrgent = true;
  }

  function applyDelta(message) {
    const now = performance.now();
    for (const [key, cells] of message.rows) {
      const id = mapKey(key);
      if (cells === null) {
        if (rows.delete(id)) orderDirty = orderUrgent = true;
        continue;
      }
      let row = rows.get(id);
      if (!row) {
        row = { key, cells: {}, times: {}, text: null };
        rows.set(id, row);
        orderDirty = orderUrgent = true;
      }
      for (const column in cells) {
        const value = cells[column];
        if (row.cells[column] === value && column in row.cells) continue;
        if (value === null) delete row.cells[column];
        else row.cells[column] = value;
        pictureDirty = true;
        if (picture && value !== null && !(typeof value === "string" && COLOUR.test(value))) picture = false;
        row.times[column] = now;
        row.text = null;
        if (column === sort.column || needle) orderDirty = true;
        if (!columns.includes(column)) setColumns([...columns, column]);
      }
    }
  }

  // ---- The subscription
  // 30 updates a second: a grid of colours plays as an animation (the server caps at 50);
  // drawing coalesces them to at most one per animation frame.
  const unsubscribe = session.stream.subscribe(app, grid, { max_rate: 30 }, (message) => {
    switch (message.type) {
      case "snapshot":
        replace(messages);
        loadSnapshot(message, haveData);
        haveData = true;
        epoch = message.epoch;
        version = message.version;
        updatedAt = new Date();
        schedule();
        break;
      case "delta":
        applyDelta(message);
        version = message.version;
        updatedAt = new Date();
        schedule();
        break;
      case "error":
        if (message.code === "not_found" && !haveData) {
          replace(messages, notice("info", "This grid does not exist yet.",
            h("p", {}, `${app} has no grid named ${grid} right now. It shows here as soon as the app writes it.`)));
          statusText.textContent = "Waiting for the grid";
        } else if (message.code === "over_quota") {
          replace(messages, notice("error", "Too many grids are open in this browser tab.", h("p", {}, "Close some grid pages (or reload this tab) and try again.")));
        } else if (message.code !== "not_found") {
          replace(messages, notice("error", "The grid could not be opened.", h("p", {}, message.message)));
        }
        break;
      default:
        break;
    }
  });

  // A grid whose app has not run since the server started sends nothing on the stream:
  // show its last saved values from the API meanwhile.
  const fallback = setTimeout(async () => {
    if (haveData || closed) return;
    try {
      const answer = await fetchGrid(app, grid);
      if (haveData || closed || !answer) return;
      loadSnapshot({ columns: answer.columns, rows: Object.entries(answer.rows) }, false);
      haveData = true;
      epoch = answer.epoch;
      version = answer.version;
      updatedAt = null;
      replace(messages, notice("info", "These are the grid's last saved values.", h("p", {}, `${app} is not running, so nothing changes. Start it to see the grid live.`)));
      schedule();
    } catch (error) {
      if (!haveData && error.code === "not_found") {
        replace(messages, notice("info", "This grid does not exist yet.",
          h("p", {}, `${app} has no grid named ${grid} right now. It shows here as soon as the app writes it.`)));
        statusText.textContent = "Waiting for the grid";
      }
    }
  }, 1500);

  // ---- The table
  const colgroup = h("colgroup");
  const headRow = h("tr", { "aria-rowindex": "1" });
  const thead = h("thead", {}, headRow);
  const topSpacer = h("tr", { class: "spacer", "aria-hidden": "true" }, h("td"));
  const bottomSpacer = h("tr", { class: "spacer", "aria-hidden": "true" }, h("td"));
  const tbody = h("tbody", {}, topSpacer, bottomSpacer);
  table.append(colgroup, thead, tbody);
  let pool = []; // [{tr, th, tds: []}]
  let headerButtons = new Map();

  function setColumns(next) {
    const same = next.length === columns.length && next.every((c, i) => c === columns[i]);
    if (same && headerButtons.size) return;
    columns = [...next];
    if (sort.column !== KEY && !columns.includes(sort.column)) sort = { column: KEY, direction: 1 };
    replace(colgroup, h("col", { class: "key-width" }), columns.map(() => h("col")));
    applyWidths();
    headerButtons = new Map();
    replace(headRow, [KEY, ...columns].map((column, index) => {
      const button = h("button", { type: "button", "data-column": column === KEY ? "" : column },
        h("span", {}, column === KEY ? "key" : column), h("span", { class: "sort-mark", "aria-hidden": "true" }));
      button.addEventListener("click", () => sortBy(column));
      headerButtons.set(column, button);
      return h("th", { scope: "col", class: index === 0 ? "key-col" : null, "aria-colindex": String(index + 1) }, button);
    }));
    table.setAttribute("aria-colcount", String(columns.length + 1));
    for (const entry of pool) entry.tr.remove();
    pool = [];
    topSpacer.firstChild.colSpan = columns.length + 1;
    bottomSpacer.firstChild.colSpan = columns.length + 1;
    markSort();
  }

  /** Columns whose values are all colours are narrow: a grid of them is a picture. */
  function applyWidths() {
    const colour = new Set(columns);
    let sampled = 0;
    for (const row of rows.values()) {
      for (const column of colour) {
        const value = row.cells[column];
        if (value !== null && value !== undefined && !(typeof value === "string" && COLOUR.test(value))) colour.delete(column);
      }
      if (++sampled >= 200 || !colour.size) break;
    }
    if (!sampled) colour.clear();
    picture = columns.length > 0 && colour.size === columns.length;
    pictureDirty = true;
    const widths = columns.map((column) => (colour.has(column) ? 30 : 150));
    const cols = [...colgroup.children];
    if (cols.length !== columns.length + 1) return;
    cols[0].style.width = "220px";
    widths.forEach((width, index) => { cols[index + 1].style.width = `${width}px`; });
    table.style.width = `${220 + widths.reduce((a, b) => a + b, 0)}px`;
    for (const [column, button] of headerButtons) {
      if (column === KEY) continue;
      button.title = colour.has(column) ? `${column} (colours)` : "";
      button.parentElement.classList.toggle("narrow", colour.has(column));
    }
  }

  function markSort() {
    for (const [column, button] of headerButtons) {
      const th = button.parentElement;
      const active = column === sort.column;
      if (active) th.setAttribute("aria-sort", sort.direction > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
      button.lastChild.textContent = active ? (sort.direction > 0 ? "▲" : "▼") : "";
    }
  }

  function sortBy(column) {
    sort = sort.column === column ? { column, direction: -sort.direction } : { column, direction: 1 };
    markSort();
    orderDirty = orderUrgent = true;
    schedule();
  }

  let filterTimer = null;
  filter.addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      needle = filter.value.trim().toLowerCase();
      orderDirty = orderUrgent = true;
      scroller.scrollTop = 0;
      schedule();
    }, 120);
  });

  csvButton.addEventListener("click", async () => {
    try {
      const response = await api.gridCSV(app, grid);
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      const link = h("a", { href: url, download: `${app}-${grid}.csv`, class: "visually-hidden" }, "download");
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (error) {
      toast(error.friendly || String(error), "error", 8);
    }
  });

  // ---- Order: filter and sort, at most a few times a second while cells tick

  function rowText(row) {
    if (row.text === null) {
      let text = String(row.key).toLowerCase();
      for (const column in row.cells) {
        const value = row.cells[column];
        if (value !== null && value !== undefined) text += "\u0001" + String(value).toLowerCase();
      }
      row.text = text;
    }
    return row.text;
  }

  function rebuildOrder() {
    const list = [];
    if (needle) {
      for (const row of rows.values()) if (rowText(row).includes(needle)) list.push(row);
    } else {
      for (const row of rows.values()) list.push(row);
    }
    const direction = sort.direction;
    if (sort.column === KEY) {
      list.sort((a, b) => direction * compareKeys(a.key, b.key));
    } else {
      const column = sort.column;
      list.sort((a, b) => {
        const x = a.cells[column];
        const y = b.cells[column];
        const xEmpty = x === null || x === undefined || x === "";
        const yEmpty = y === null || y === undefined || y === "";
        if (xEmpty || yEmpty) return xEmpty === yEmpty ? compareKeys(a.key, b.key) : xEmpty ? 1 : -1;
        const c = compareValues(x, y);
        return c !== 0 ? direction * c : compareKeys(a.key, b.key);
      });
    }
    order = list;
    orderDirty = orderUrgent = false;
    pictureDirty = true;
    lastOrder = performance.now();
    table.setAttribute("aria-rowcount", String(order.length + 1));
  }

  // ---- Drawing: only the rows in view

  let frame = 0;
  let orderTimer = null;
  let viewportHeight = scroller.clientHeight || 600;
  const resize = new ResizeObserver((entries) => {
    viewportHeight = entries[0].contentRect.height || viewportHeight;
    schedule();
  });
  resize.observe(scroller);
  scroller.addEventListener("scroll", schedule, { passive: true });

  function schedule() {
    if (!frame && !closed) frame = requestAnimationFrame(render);
  }

  let statusShown = 0;
  let statusTimer = null;

  function render() {
    frame = 0;
    const now = performance.now();
    if (orderDirty && (orderUrgent || now - lastOrder > 1000)) rebuildOrder();
    else if (orderDirty && !orderTimer) orderTimer = setTimeout(() => { orderTimer = null; schedule(); }, 1000 - (now - lastOrder));
    const showPicture = picture && !asTable;
    if (showPicture !== pictureShown) showAsPicture(showPicture);
    if (showPicture) drawPicture();
    else drawTable(now);
    if (now - statusShown > 400) {
      statusShown = now;
      showStatus();
    } else if (!statusTimer) {
      statusTimer = setTimeout(() => { statusTimer = null; schedule(); }, 450);
    }
  }

  // ---- A picture: the rows in view on a canvas, one rectangle a cell, no highlight

  let pictureShown = false;
  let geometry = "";
  let cellSize = 0;
  let firstDrawn = 0;
  let context2d = null;

  function showAsPicture(on) {
    pictureShown = on;
    table.hidden = on;
    pictureBox.hidden = !on;
    if (on) {
      for (const entry of pool) entry.tr.remove(); // no DOM cells to restyle while it plays
      pool = [];
      geometry = "";
      pictureDirty = true;
    }
  }

  pictureToggle.addEventListener("click", () => {
    asTable = !asTable;
    pictureToggle.textContent = asTable ? "Show as picture" : "Show as table";
    schedule();
  });

  function drawPicture() {
    const total = order.length;
    const cols = Math.max(1, columns.length);
    const width = Math.max(0, scroller.clientWidth - 2);
    let size = Math.floor(width / cols);
    const fitHeight = Math.floor(viewportHeight / Math.max(1, total));
    if (fitHeight >= 6) size = Math.min(size, fitHeight); // the whole picture in view when it can be
    size = Math.max(2, Math.min(24, size));
    const first = Math.min(total, Math.floor(scroller.scrollTop / size));
    const shown = Math.max(0, Math.min(total - first, Math.ceil(viewportHeight / size) + 1));
    const ratio = window.devicePixelRatio || 1;
    const shape = `${size} ${first} ${shown} ${cols} ${total} ${ratio}`;
    if (shape !== geometry) {
      geometry = shape;
      cellSize = size;
      firstDrawn = first;
      pictureBox.style.height = `${total * size}px`;
      pictureBox.style.width = `${cols * size}px`;
      canvas.style.width = `${cols * size}px`;
      canvas.style.height = `${shown * size}px`;
      canvas.style.transform = `translateY(${first * size}px)`;
      canvas.width = Math.round(cols * size * ratio);
      canvas.height = Math.round(shown * size * ratio);
      canvas.dataset.cell = String(size);
      canvas.dataset.first = String(first);
      context2d = canvas.getContext("2d", { alpha: false });
      context2d.setTransform(ratio, 0, 0, ratio, 0, 0);
      pictureDirty = true;
    }
    if (!pictureDirty || !context2d) return;
    pictureDirty = false;
    const ctx = context2d;
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, cols * size, shown * size);
    let fill = "#ffffff";
    for (let r = 0; r < shown; r++) {
      const cells = order[first + r].cells;
      const y = r * size;
      for (let c = 0; c < columns.length; c++) {
        const value = cells[columns[c]];
        if (typeof value !== "string") continue;
        if (value !== fill) {
          fill = value;
          ctx.fillStyle = value;
        }
        ctx.fillRect(c * size, y, size, size);
      }
    }
  }

  // The cell under the pointer, as a tooltip.
  canvas.addEventListener("mousemove", (event) => {
    if (!cellSize) return;
    const bounds = canvas.getBoundingClientRect();
    const column = columns[Math.floor((event.clientX - bounds.left) / cellSize)];
    const row = order[firstDrawn + Math.floor((event.clientY - bounds.top) / cellSize)];
    canvas.title = row && column ? `${row.key} · ${column}: ${row.cells[column] ?? "empty"}` : "";
  });

  function describePicture() {
    if (!order.length || !columns.length) return `${grid}, a picture of ${app} (empty)`;
    return `${grid}, a picture of ${app}: ${columns.length} by ${order.length} colour cells, ` +
      `columns ${columns[0]} to ${columns[columns.length - 1]}, rows ${order[0].key} to ${order[order.length - 1].key}. ` +
      `Choose "Show as table" for each cell's value.`;
  }

  // ---- A table: the rows in view as DOM rows from the pool

  function drawTable(now) {
    const total = order.length;
    const headerHeight = ROW_HEIGHT;
    const scrollTop = scroller.scrollTop;
    const first = Math.max(0, Math.floor((scrollTop - headerHeight) / ROW_HEIGHT) - OVERSCAN);
    const visible = Math.ceil(viewportHeight / ROW_HEIGHT) + 2 * OVERSCAN;
    const last = Math.min(total, first + visible);
    const wanted = last - first;
    while (pool.length < wanted) pool.push(newPoolRow());
    while (pool.length > wanted) pool.pop().tr.remove();
    topSpacer.firstChild.style.height = `${first * ROW_HEIGHT}px`;
    bottomSpacer.firstChild.style.height = `${(total - last) * ROW_HEIGHT}px`;
    for (let i = 0; i < wanted; i++) drawRow(pool[i], order[first + i], first + i, now);
  }

  function newPoolRow() {
    const th = h("th", { scope: "row", class: "key-col", "aria-colindex": "1" });
    const tds = columns.map((_, index) => h("td", { "aria-colindex": String(index + 2) }));
    const tr = h("tr", {}, th, tds);
    tbody.insertBefore(tr, bottomSpacer);
    return { tr, th, tds, row: null };
  }

  function drawRow(entry, row, index, now) {
    const { tr, th, tds } = entry;
    if (entry.row !== row) {
      entry.row = row;
      tr.dataset.key = String(row.key);
      th.textContent = String(row.key);
      for (const td of tds) td._t = now; // a row scrolled into view does not flash
    }
    tr.setAttribute("aria-rowindex", String(index + 2));
    for (let c = 0; c < columns.length; c++) {
      const column = columns[c];
      const td = tds[c];
      const value = row.cells[column];
      if (td._v !== value || td._row !== row) {
        setCell(td, column, value);
        td._row = row;
      }
      const changed = row.times[column];
      if (changed !== undefined && changed > (td._t ?? 0)) {
        td._t = changed;
        if (now - changed < FLASH_MS) {
          // Two animations by turns: a new class name restarts the highlight.
          td._flash = td._flash === "a" ? "b" : "a";
          td.className = `${td._kind} flash-${td._flash}`;
        }
      }
    }
  }

  function setKind(td, kind) {
    td._kind = kind;
    td.className = td._flash ? `${kind} flash-${td._flash}` : kind;
  }

  function setCell(td, column, value) {
    td._v = value;
    td.dataset.col = column;
    if (typeof value === "string" && COLOUR.test(value)) {
      setKind(td, "colour");
      td.style.backgroundColor = value;
      if (!td.firstChild || td.firstChild.nodeType !== 1) {
        td.textContent = "";
        td.append(h("span", { class: "visually-hidden" }));
      }
      td.firstChild.textContent = value;
      td.title = value;
      return;
    }
    if (td._kind === "colour") {
      td.style.backgroundColor = "";
      td.title = "";
    }
    if (value === null || value === undefined) {
      setKind(td, "null");
      td.textContent = "";
    } else if (typeof value === "number") {
      setKind(td, "num");
      td.textContent = String(value);
    } else if (typeof value === "boolean") {
      setKind(td, "bool");
      td.textContent = value ? "TRUE" : "FALSE";
    } else {
      setKind(td, "text");
      td.textContent = value;
    }
  }

  function showStatus() {
    if (!haveData) return;
    const parts = [`${count(rows.size)} ${rows.size === 1 ? "row" : "rows"}`];
    if (needle) parts.push(`${count(order.length)} matching`);
    parts.push(`${count(columns.length)} ${columns.length === 1 ? "column" : "columns"}`);
    if (updatedAt) parts.push(`updated ${clock(updatedAt.toISOString())}`);
    statusText.textContent = parts.join(" · ");
    table.dataset.rows = String(rows.size);
    pictureToggle.hidden = !picture;
    if (pictureShown) {
      const label = describePicture();
      if (canvas.getAttribute("aria-label") !== label) canvas.setAttribute("aria-label", label);
    }
    table.dataset.epoch = String(epoch);
    table.dataset.version = String(version);
    if (!rows.size && !messages.firstChild) {
      const empty = notice("info", "This grid is empty.", h("p", {}, "Rows show up here as the app writes them."));
      empty.classList.add("empty-grid");
      replace(messages, empty);
    } else if (rows.size && messages.querySelector(".empty-grid")) {
      replace(messages);
    }
  }

  // ---- The app's state, from discovery
  function showApp() {
    const current = session.apps.apps.get(app);
    if (!session.apps.loaded) return;
    if (!current) {
      replace(appState, h("strong", {}, `There is no app named ${app} (any more).`));
      return;
    }
    const stateName = current.state || "created";
    replace(appState, "The app is ", h("span", { class: `badge ${stateName}`, "data-state": stateName }, (STATE_TEXT[stateName] || stateName).toLowerCase()), ".");
  }
  showApp();
  const stopApps = session.apps.onChange((kind, name) => {
    if (name === null || name === app) showApp();
  });

  return () => {
    closed = true;
    clearTimeout(fallback);
    clearTimeout(filterTimer);
    cancelAnimationFrame(frame);
    clearTimeout(orderTimer);
    clearTimeout(statusTimer);
    resize.disconnect();
    unsubscribe();
    stopApps();
  };
}

function fetchGrid(app, grid) {
  return request("GET", `/api/v1/apps/${encodeURIComponent(app)}/grids/${encodeURIComponent(grid)}`);
}

/** The protocol's key order: integers first, in numeric order, then strings. */
export function compareKeys(a, b) {
  const an = typeof a === "number";
  const bn = typeof b === "number";
  if (an !== bn) return an ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

const TYPE_RANK = { number: 0, string: 1, boolean: 2 };

function compareValues(x, y) {
  const tx = typeof x;
  const ty = typeof y;
  if (tx !== ty) return (TYPE_RANK[tx] ?? 3) - (TYPE_RANK[ty] ?? 3);
  if (tx === "string") {
    const lx = x.toLowerCase();
    const ly = y.toLowerCase();
    return lx < ly ? -1 : lx > ly ? 1 : x < y ? -1 : x > y ? 1 : 0;
  }
  return x < y ? -1 : x > y ? 1 : 0;
}
