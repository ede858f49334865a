// The live grid viewer: one subscription on the stream, its rows in the shared stream client's
// grid replica (clients/shared/aerogrid-stream.js); a spreadsheet-like table that draws only
// the rows in view (a pool of <tr> reused as the user scrolls), updates cells in place,
// flashes the ones that changed, sorts and filters, and draws `#rrggbb` values as colour.
// 10,000 rows ticking stay well under a frame's budget.
// A grid made only of colours is a picture: it is drawn on a canvas (one rectangle a cell,
// redrawn at most once an animation frame), with "Show as table" for the cells themselves.
import "../shared/aerogrid-stream.js";
import { api, request } from "./api.js";
import { h, replace, notice, pageTitle, toast } from "./ui.js";
import { count, clock, STATE_TEXT } from "./format.js";

const { GridReplica, compareRows } = globalThis.AeroGridStream;

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

  // ---- The data: the subscription's replica (rows by key, each row one object for as long
  // as its key is in the grid), or the grid's last saved values from the API until the
  // stream has sent a snapshot.
  let columns = [];
  let saved = null; // a GridReplica of GET …/grids/GRID
  const shown = new WeakMap(); // a replica's row -> {times: {column: performance.now()}, text}
  let order = []; // the rows shown, filtered and sorted
  let orderDirty = true;
  let orderUrgent = true;
  let lastOrder = 0;
  let sort = { column: KEY, direction: 1 };
  let needle = "";
  let updatedAt = null;
  let closed = false;
  let picture = false; // every column's values are colours
  let asTable = false; // the user chose to see a picture's cells
  let pictureDirty = true;
  let errorShown = null;

  const NO_TIMES = {};
  const timesOf = (row) => {
    const view = shown.get(row);
    return view ? view.times : NO_TIMES;
  };

  /** A cell changed in a row that stays: it flashes (not on the first snapshot), the row's
   * filter text is made again, and the order if it sorts or filters by it. */
  function cellChanged(row, column, message) {
    let view = shown.get(row);
    if (view) view.text = null;
    pictureDirty = true;
    if (message.type === "snapshot") {
      if (!haveData()) return;
    } else {
      const value = row.cells[column];
      if (picture && value !== undefined && !(typeof value === "string" && COLOUR.test(value))) picture = false;
      if (column === sort.column || needle) orderDirty = true;
      if (!columns.includes(column)) setColumns([...columns, column]);
    }
    if (!view) {
      view = { times: {}, text: null };
      shown.set(row, view);
    }
    view.times[column] = performance.now();
  }

  // ---- The subscription (the connection asks for 30 updates a second: main.js)
  const subscription = session.stream.subscribe({ app, grid }, (sub, update) => {
    if (update) {
      if (update.type === "snapshot") {
        saved = null;
        errorShown = null;
        replace(messages);
        setColumns(sub.replica.columns);
        applyWidths();
        orderDirty = orderUrgent = true;
      } else if (update.keysChanged) {
        orderDirty = orderUrgent = true;
      }
      updatedAt = new Date();
      schedule();
    }
    if (sub.error !== errorShown) showError(sub.error);
  }, cellChanged);
  const streamed = () => subscription.subscription.replica;
  const haveData = () => !!saved || streamed().hasSnapshot;
  const replica = () => saved || streamed(); // `saved` goes when the first snapshot comes

  function showError(error) {
    errorShown = error;
    if (!error) return;
    if (error.code === "not_found" && !haveData()) {
      replace(messages, notice("info", "This grid does not exist yet.",
        h("p", {}, `${app} has no grid named ${grid} right now. It shows here as soon as the app writes it.`)));
      statusText.textContent = "Waiting for the grid";
    } else if (error.code === "over_quota") {
      replace(messages, notice("error", "Too many grids are open in this browser tab.", h("p", {}, "Close some grid pages (or reload this tab) and try again.")));
    } else if (error.code !== "not_found") {
      replace(messages, notice("error", "The grid could not be opened.", h("p", {}, error.message)));
    }
  }

  // A grid whose app has not run since the server started sends nothing on the stream:
  // show its last saved values from the API meanwhile.
  const fallback = setTimeout(async () => {
    if (haveData() || closed) return;
    try {
      const answer = await fetchGrid(app, grid);
      if (haveData() || closed || !answer) return;
      saved = new GridReplica();
      saved.applySnapshot({ columns: answer.columns, rows: Object.entries(answer.rows), epoch: answer.epoch, version: answer.version });
      setColumns(saved.columns);
      applyWidths();
      orderDirty = orderUrgent = true;
      updatedAt = null;
      replace(messages, notice("info", "These are the grid's last saved values.", h("p", {}, `${app} is not running, so nothing changes. Start it to see the grid live.`)));
      schedule();
    } catch (error) {
      if (!haveData() && error.code === "not_found") {
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
    for (const row of replica().rows.values()) {
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
    let view = shown.get(row);
    if (!view) {
      view = { times: {}, text: null };
      shown.set(row, view);
    }
    if (view.text === null) {
      let text = String(row.key).toLowerCase();
      for (const column in row.cells) {
        const value = row.cells[column];
        if (value !== null && value !== undefined) text += "\u0001" + String(value).toLowerCase();
      }
      view.text = text;
    }
    return view.text;
  }

  function rebuildOrder() {
    const rows = replica();
    const direction = sort.direction;
    let list;
    if (sort.column === KEY) {
      // The replica keeps its rows in the protocol's key order until the keys change.
      list = needle ? rows.sortedRows().filter((row) => rowText(row).includes(needle)) : rows.sortedRows().slice();
      if (direction < 0) list.reverse();
    } else {
      list = [];
      for (const row of rows.rows.values()) if (!needle || rowText(row).includes(needle)) list.push(row);
      const column = sort.column;
      list.sort((a, b) => {
        const x = a.cells[column];
        const y = b.cells[column];
        const xEmpty = x === null || x === undefined || x === "";
        const yEmpty = y === null || y === undefined || y === "";
        if (xEmpty || yEmpty) return xEmpty === yEmpty ? compareRows(a, b) : xEmpty ? 1 : -1;
        const c = compareValues(x, y);
        return c !== 0 ? direction * c : compareRows(a, b);
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
    const times = timesOf(row);
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
      const changed = times[column];
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
    if (!haveData()) return;
    const rows = replica();
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
    table.dataset.epoch = String(rows.epoch);
    table.dataset.version = String(rows.version);
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
    subscription.close();
    stopApps();
  };
}

function fetchGrid(app, grid) {
  return request("GET", `/api/v1/apps/${encodeURIComponent(app)}/grids/${encodeURIComponent(grid)}`);
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
