// The add-in's files without a server: functions.json and the script's
// CustomFunctions.associate calls match one to one; the manifest is well-formed and has what
// Office requires for custom functions in a shared runtime, every URL https once the server
// fills in its address; what the core makes of the shared stream client's grids, and the
// connection as the cells use it. The stream client itself: Tests/Shared/.
//
//   node --experimental-websocket --test Tests/Excel/

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test, describe } from "node:test";
import { createRequire } from "node:module";
import { ADDIN, Invocation, STREAM_CLIENT, loadAddin, plain } from "./excel-runtime.mjs";
import { BASE, checkManifest, substituted } from "./manifest.mjs";

const require = createRequire(import.meta.url);
const Core = require(path.join(ADDIN, "aerogrid-core.js"));
const Stream = require(STREAM_CLIENT);
const metadata = JSON.parse(fs.readFileSync(path.join(ADDIN, "functions.json"), "utf8"));

// --------------------------------------------------------------------------------------------
// functions.json and the script

describe("functions.json and functions.js", () => {
  test("every id in functions.json is associated once, and nothing else is", () => {
    const addin = loadAddin({ server: "http://127.0.0.1:9", token: "agt_x" });
    try {
      const ids = metadata.functions.map((f) => f.id);
      assert.deepEqual([...addin.functions.keys()].sort(), [...ids].sort());
      assert.equal(new Set(ids).size, ids.length, "an id twice in functions.json");
      // The source says the same: one associate call per id, with a literal id.
      const source = fs.readFileSync(path.join(ADDIN, "functions.js"), "utf8");
      const calls = [...source.matchAll(/CustomFunctions\.associate\(\s*"([^"]+)"/g)].map((m) => m[1]);
      assert.deepEqual([...calls].sort(), [...ids].sort());
      // Each function takes its parameters and then the invocation.
      for (const f of metadata.functions) {
        assert.equal(addin.functions.get(f.id).length, f.parameters.length + 1, `${f.id}'s arity`);
      }
    } finally {
      addin.close();
    }
  });

  test("the metadata: AEROGRID's GRID, VALUE and APPS, all streaming", () => {
    const byId = Object.fromEntries(metadata.functions.map((f) => [f.id, f]));
    assert.deepEqual(Object.keys(byId).sort(), ["APPS", "GRID", "VALUE"]);
    for (const f of metadata.functions) {
      assert.match(f.id, /^[A-Za-z0-9.]+$/);
      assert.equal(f.name, f.id);
      assert.ok(f.description, `${f.id} has a description`);
      assert.deepEqual(f.options, { stream: true }, `${f.id} streams (and is therefore not also cancelable/volatile)`);
      let optional = false;
      for (const p of f.parameters) {
        assert.ok(["string", "number", "boolean", "any"].includes(p.type), `${f.id}.${p.name} type`);
        if (optional) assert.ok(p.optional, `${f.id}: a required parameter after an optional one`);
        optional = optional || !!p.optional;
      }
    }
    assert.deepEqual(byId.GRID.parameters.map((p) => p.name), ["app", "grid", "columns"]);
    assert.equal(byId.GRID.result.dimensionality, "matrix");
    assert.ok(byId.GRID.parameters[2].optional);
    assert.deepEqual(byId.VALUE.parameters.map((p) => p.name), ["app", "grid", "key", "column"]);
    assert.equal(byId.VALUE.result.dimensionality, "scalar");
    assert.deepEqual(byId.APPS.parameters, []);
    assert.equal(byId.APPS.result.dimensionality, "matrix");
  });

  test("without a token or a server, cells say what to do, and nothing connects", () => {
    const addin = loadAddin({ server: "https://aerogrid.example.com:8443" });
    try {
      const grid = addin.invoke("GRID", "ordersapp", "product_sum", null);
      const value = addin.invoke("VALUE", "ordersapp", "product_sum", "Widget", "units_sold");
      const apps = addin.invoke("APPS");
      assert.match(grid.value[0][0], /^AeroGrid: no token set/);
      assert.equal(grid.value.length, 1);
      assert.match(value.value, /^AeroGrid: no token set/);
      assert.match(apps.value[0][0], /^AeroGrid: no token set/);
      assert.equal(addin.sockets.length, 0);
    } finally {
      addin.close();
    }
    const noServer = loadAddin({ token: "agt_x" });
    try {
      assert.match(noServer.invoke("GRID", "a", "b", null).value[0][0], /^AeroGrid: no server set/);
    } finally {
      noServer.close();
    }
  });

  test("missing arguments are messages in the cell", () => {
    const addin = loadAddin({ server: "http://127.0.0.1:9", token: "agt_x" });
    try {
      assert.deepEqual(addin.invoke("GRID", "", "product_sum", null).value, [["AeroGrid: the app's name is missing"]]);
      assert.deepEqual(addin.invoke("GRID", "ordersapp", null, null).value, [["AeroGrid: the grid's name is missing"]]);
      assert.equal(addin.invoke("VALUE", "ordersapp", "product_sum", "Widget", "").value, "AeroGrid: the column's name is missing");
    } finally {
      addin.close();
    }
  });
});

// --------------------------------------------------------------------------------------------
// The manifest

describe("manifest.xml", () => {
  test("is well-formed, has what Office needs for custom functions in a shared runtime, and every URL is https", () => {
    const { urls } = checkManifest(substituted());
    // Each file it names is in clients/excel.
    for (const url of urls) {
      const relative = url.slice(`${BASE}/excel/`.length);
      if (url === BASE || relative === "") continue;
      assert.ok(fs.existsSync(path.join(ADDIN, relative)), `${relative} is named by the manifest but missing`);
    }
  });

  test("names the server only through the placeholder", () => {
    const text = fs.readFileSync(path.join(ADDIN, "manifest.xml"), "utf8");
    const http = [...text.matchAll(/https?:\/\/[^"<\s]+/g)].map((m) => m[0]).filter((u) => !u.startsWith("http://schemas.") && !u.startsWith("http://www.w3.org/"));
    assert.deepEqual(http, [], "URLs written out instead of {{AEROGRID_BASE_URL}}");
  });

  test("the task pane page loads Office.js, the stream client, the core, the functions and the pane, with no inline script", () => {
    const html = fs.readFileSync(path.join(ADDIN, "taskpane.html"), "utf8");
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    assert.deepEqual(scripts.map((m) => /src="([^"]+)"/.exec(m[1])?.[1]),
      ["https://appsforoffice.microsoft.com/lib/1/hosted/office.js", "../shared/aerogrid-stream.js", "aerogrid-core.js", "functions.js",
        "taskpane.js"]);
    assert.equal(path.resolve(ADDIN, "../shared/aerogrid-stream.js"), STREAM_CLIENT, "served at /shared/ from clients/shared");
    for (const m of scripts) assert.equal(m[2].trim(), "", "an inline script (the server's CSP refuses it)");
    assert.ok(!/\son[a-z]+="/i.test(html), "an inline event handler (the CSP refuses it)");
  });
});

// --------------------------------------------------------------------------------------------
// The core without a server

describe("the core", () => {
  test("GRID's array from a replica: the server's key order, the declared columns then the others", () => {
    const replica = new Stream.GridReplica();
    replica.applySnapshot({ epoch: 1, version: 5, columns: ["a", "b"], rows: [[7, { a: 1 }], [42, { a: 2, b: "x" }], ["42", { a: 3 }]] });
    replica.applyDelta({ epoch: 1, version: 6, rows: [[-1, { a: 0 }], [7, { b: true }], [42, null], ["Zeta", { a: 4 }], ["alpha", { c: 9 }]] });
    assert.deepEqual(replica.sortedRows().map((r) => r.key), [-1, 7, "42", "Zeta", "alpha"]);
    assert.deepEqual(replica.row(7).cells, { a: 1, b: true });
    assert.equal(replica.row(42), null);
    assert.deepEqual(replica.row("42").cells, { a: 3 });
    assert.deepEqual(replica.allColumns(), ["a", "b", "c"]);
    const sub = { replica };
    assert.deepEqual(Core.gridMatrix(sub, null), [["key", "a", "b", "c"], [-1, 0, "", ""], [7, 1, true, ""], ["42", 3, "", ""],
      ["Zeta", 4, "", ""], ["alpha", "", "", 9]]);
    assert.deepEqual(Core.gridMatrix(sub, ["c", "nope"]), [["key", "c", "nope"], [-1, "", ""], [7, "", ""], ["42", "", ""], ["Zeta", "", ""], ["alpha", 9, ""]]);
    replica.applySnapshot({ epoch: 2, version: 1, columns: ["a"], rows: [] });
    assert.deepEqual(Core.gridMatrix(sub, null), [["key", "a"]]);
  });

  test("keys: Excel's numbers as either kind of key; the server's address and the settings", () => {
    assert.deepEqual(Core.keyCandidates(42), [42, "42"]);
    assert.deepEqual(Core.keyCandidates(4.5), ["4.5"]);
    assert.deepEqual(Core.keyCandidates("42"), ["42", 42]);
    assert.deepEqual(Core.keyCandidates("Widget"), ["Widget"]);
    assert.equal(Stream.streamUrl("https://h:8443/"), "wss://h:8443/api/v1/stream");
    assert.equal(Stream.streamUrl("http://127.0.0.1:8080"), "ws://127.0.0.1:8080/api/v1/stream");
    assert.equal(Stream.streamUrl("aerogrid.example.com"), "wss://aerogrid.example.com/api/v1/stream");
    assert.deepEqual(Core.readSettings(null, "https://h"), { server: "https://h", token: "", maxRate: 2 });
  });

  test("a connection (to a fake socket): shared subscriptions, linger, resubscription after a drop, no retry after a refusal", async () => {
    const sockets = [];
    class FakeSocket {
      constructor(url) { this.url = url; this.readyState = 0; this.sent = []; sockets.push(this); }
      send(text) { this.sent.push(JSON.parse(text)); }
      close() { this.readyState = 3; }
      open() { this.readyState = 1; this.onopen?.(); }
      receive(message) { this.onmessage?.({ data: JSON.stringify(message) }); }
      drop() { this.readyState = 3; this.onclose?.({ code: 1006 }); }
    }
    const connection = new Stream.Connection({ server: "https://h", token: "agt_t", maxRate: 2, WebSocket: FakeSocket, lingerMs: 20,
      backoff: { initial: 10, max: 20 } });
    const seen = [];
    const one = connection.subscribe({ app: "a", grid: "g" }, (sub) => seen.push(["one", sub.replica.version]));
    const two = connection.subscribe({ app: "a", grid: "g" }, (sub) => seen.push(["two", sub.replica.version]));
    const other = connection.subscribe({ app: "a", grid: "g", columns: ["x"] }, () => {});
    assert.equal(sockets.length, 1);
    assert.equal(sockets[0].url, "wss://h/api/v1/stream");
    sockets[0].open();
    const subscribes = () => sockets.at(-1).sent.filter((m) => m.op === "subscribe");
    assert.deepEqual(sockets[0].sent[0], { op: "auth", token: "agt_t" });
    assert.equal(subscribes().length, 2, "two cells alike share one subscription");
    assert.ok(subscribes().every((m) => m.max_rate === 2));
    const id = subscribes()[0].id;
    sockets[0].receive({ type: "ready", tenant: "t" });
    sockets[0].receive({ type: "subscribed", id });
    sockets[0].receive({ type: "snapshot", id, epoch: 1, version: 3, columns: ["x"], rows: [["k", { x: 1 }]] });
    assert.deepEqual(seen.filter((s) => s[1] !== null), [["one", 3], ["two", 3]]);
    one.close();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(sockets[0].sent.filter((m) => m.op === "unsubscribe").length, 0, "one cell still uses it");
    two.close();
    assert.equal(sockets[0].sent.filter((m) => m.op === "unsubscribe").length, 0, "lingers first");
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(sockets[0].sent.filter((m) => m.op === "unsubscribe"), [{ op: "unsubscribe", id }]);

    // A drop: a new socket after the backoff, with the remaining subscription again.
    sockets[0].drop();
    assert.equal(connection.state, "waiting");
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(sockets.length, 2);
    sockets[1].open();
    assert.deepEqual(subscribes().map((m) => m.columns), [["x"]]);

    // A refused token: no more sockets until the settings change.
    sockets[1].receive({ type: "error", code: "unauthorized", message: "the token is not valid (unknown or revoked)" });
    assert.equal(connection.state, "refused");
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(sockets.length, 2);
    assert.match(Core.statusMessage(connection, null, true), /refused the token/);
    connection.configure({ token: "agt_other" });
    assert.equal(sockets.length, 3);
    other.close();
    connection.close();
  });

  test("a subscription refused for the connection's limit of 100 gets the next free place", async () => {
    const sockets = [];
    class FakeSocket {
      constructor() { this.readyState = 0; this.sent = []; sockets.push(this); }
      send(text) { this.sent.push(JSON.parse(text)); }
      close() { this.readyState = 3; }
    }
    const connection = new Stream.Connection({ server: "https://h", token: "agt_t", WebSocket: FakeSocket, lingerMs: 0 });
    const first = connection.subscribe({ app: "a", grid: "g1" }, () => {});
    const seen = [];
    const second = connection.subscribe({ app: "a", grid: "g2" }, (sub) => seen.push(sub.error && sub.error.code));
    const socket = sockets[0];
    socket.readyState = 1;
    socket.onopen();
    const [one, two] = socket.sent.filter((m) => m.op === "subscribe");
    socket.onmessage({ data: JSON.stringify({ type: "error", id: two.id, code: "over_quota", message: "a connection may hold 100 subscriptions" }) });
    assert.equal(seen.at(-1), "over_quota");
    assert.match(Core.statusMessage(connection, second.subscription, false), /100 subscriptions \(over_quota\)/);
    first.close();
    assert.deepEqual(socket.sent.slice(-2).map((m) => [m.op, m.id === one.id ? "one" : m.grid]), [["unsubscribe", "one"], ["subscribe", "g2"]]);
    second.close();
    connection.close();
  });

  test("an invocation gets no value after onCanceled", () => {
    const invocation = new Invocation("GRID", []);
    invocation.setResult([[1]]);
    invocation.cancel();
    assert.throws(() => invocation.setResult([[2]]));
    assert.deepEqual(plain(invocation.value), [[1]]);
  });
});
